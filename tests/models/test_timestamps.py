"""models/timestamps.py: the one format ktl records times in, and reading the older ones."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from models.timestamps import format_time, parse, utc_now

FORMAT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def test_now_is_utc_iso_8601_to_the_second_with_a_z():
    before = datetime.now(UTC).replace(microsecond=0)
    stamp = utc_now()
    after = datetime.now(UTC)
    assert FORMAT.match(stamp), stamp
    assert before <= parse(stamp) <= after


def test_another_zone_is_written_in_utc():
    moment = datetime(2026, 1, 31, 14, 0, 0, 999_000, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(moment) == "2026-01-31T12:00:00Z"


@pytest.mark.parametrize(
    "recorded",
    [
        "2026-01-31T12:00:00Z",  # this format: bundles' created_at all along
        "2026-01-31T12:00:00+00:00",  # job records before it
        "2026-01-31T12:00:00.000Z",  # label moves before it
        "2026-01-31T13:00:00+01:00",
        "2026-01-31T12:00:00",  # no zone: UTC
    ],
)
def test_every_older_format_still_reads(recorded):
    assert parse(recorded) == datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert format_time(parse(recorded)) == "2026-01-31T12:00:00Z"


def test_what_is_no_time_is_refused():
    with pytest.raises(ValueError):
        parse("yesterday")
