from __future__ import annotations

from datetime import UTC, datetime

import pytest

from models.ids import id_time, is_id, new_id


def test_ids_are_unique_and_sort_by_time():
    ids = [new_id(now_ms=1_700_000_000_000 + step) for step in range(50) for _ in range(20)]
    assert len(set(ids)) == len(ids)
    earlier, later = new_id(now_ms=1_000), new_id(now_ms=1_001)
    assert earlier < later
    assert all(is_id(identifier) for identifier in ids)


def test_the_time_reads_back_from_the_id():
    when = datetime(2026, 12, 7, 22, 45, 1, 123000, tzinfo=UTC)
    identifier = new_id(now_ms=int(when.timestamp() * 1000))
    assert id_time(identifier) == when


@pytest.mark.parametrize("bad", ["", "not-an-id", "0" * 25, "I" * 26, "u" * 26])
def test_a_non_id_is_refused(bad):
    assert not is_id(bad)
    with pytest.raises(ValueError, match="not a prediction id"):
        id_time(bad)
