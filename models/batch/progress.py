"""The scoring job's progress line on stderr: done, total, rate and ETA. Redrawn in
place on a terminal; on a log (a pod's), a line every ``log_every`` seconds."""

from __future__ import annotations

import time
from typing import TextIO


def eta(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class Progress:
    def __init__(
        self, total: int, stream: TextIO, *, log_every: float = 10.0, clock=time.monotonic
    ):
        self.total, self.done, self.errors = total, 0, 0
        self._stream, self._clock = stream, clock
        self._tty = stream.isatty()
        self._every = 0.2 if self._tty else log_every
        self._start = self._last = clock()

    def line(self) -> str:
        elapsed = max(self._clock() - self._start, 1e-9)
        rate = self.done / elapsed
        left = eta((self.total - self.done) / rate) if rate > 0 else "?"
        share = self.done / self.total if self.total else 1.0
        errors = f", {self.errors:,} errors" if self.errors else ""
        return (
            f"scored {self.done:,}/{self.total:,} ({share:.0%}) {rate:,.1f} images/s, "
            f"ETA {left}{errors}"
        )

    def update(self, done: int, errors: int) -> None:
        self.done += done
        self.errors += errors
        now = self._clock()
        if now - self._last >= self._every:
            self._last = now
            self._show()

    def finish(self) -> None:
        self._show()
        if self._tty:
            self._stream.write("\n")
        self._stream.flush()

    def _show(self) -> None:
        if self._tty:
            self._stream.write("\r" + self.line() + "\033[K")
        else:
            self._stream.write(self.line() + "\n")
        self._stream.flush()
