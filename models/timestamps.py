"""The one clock format of everything ktl records: bundles' ``created_at``, label
moves' ``at``, job records' ``created``, ``started`` and ``finished``. UTC, ISO 8601,
to the second, with a ``Z``: ``2026-01-31T12:00:00Z``.

Older records wrote ``+00:00`` (job records) or milliseconds (label moves); ``parse``
reads every one of them, so records written before this format still load.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> str:
    """The current time: ``2026-01-31T12:00:00Z``."""
    return format_time(datetime.now(UTC))


def format_time(moment: datetime) -> str:
    """``moment`` (aware) in the one format; to the second, in UTC."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse(text: str) -> datetime:
    """A recorded time, in this format or an older one, as an aware UTC datetime;
    ``ValueError`` when it is none of them (a time without its zone counts as UTC)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
