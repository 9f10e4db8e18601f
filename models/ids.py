"""Prediction ids: unique and sortable by time, in the shape of a ULID (26 characters
of Crockford's base32: 48 bits of milliseconds since the epoch, then 80 random bits).
The time is read back from an id alone, so a record can be found by its minute."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32: no I, L, O, U
_DECODE = {character: value for value, character in enumerate(_ALPHABET)}
ID_PATTERN = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


def new_id(now_ms: int | None = None) -> str:
    """A fresh id; ``now_ms`` (milliseconds since the epoch) for tests."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    number = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    characters = []
    for _ in range(26):
        number, digit = divmod(number, 32)
        characters.append(_ALPHABET[digit])
    return "".join(reversed(characters))


def is_id(value: str) -> bool:
    return bool(ID_PATTERN.fullmatch(value))


def id_time(identifier: str) -> datetime:
    """When the id was made (UTC, to the millisecond); ``ValueError`` for a non-id."""
    if not is_id(identifier):
        raise ValueError(f"{identifier!r} is not a prediction id (26 characters of base32)")
    ms = 0
    for character in identifier[:10]:
        ms = ms * 32 + _DECODE[character]
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
