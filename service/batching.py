"""Dynamic micro-batching: concurrent requests for one model share a forward pass.

There is no batching thread. The first request thread to find the model idle
becomes the leader: while other requests are still being decoded (announced
with ``decoding()``) it waits for them, up to ``max_delay_s`` or until
``max_batch_size`` images wait, runs their images as one batch, hands every
request its rows and passes the lead on. Followers just wait for their rows. A
request alone goes at once: waiting for nobody would only add latency.
One forward pass per model at a time suits CPU inference, where a single pass
already uses every core TensorFlow was given.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

import numpy as np

from service.errors import Overloaded


class _Job:
    __slots__ = ("pixels", "rows", "error", "done")

    def __init__(self, pixels: np.ndarray):
        self.pixels = pixels
        self.rows: np.ndarray | None = None
        self.error: BaseException | None = None
        self.done = False


class MicroBatcher:
    def __init__(
        self,
        forward: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch_size: int,
        max_delay_s: float,
        queue_size: int,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        self._forward = forward
        self._max_batch_size = max_batch_size
        self._max_delay_s = max_delay_s
        self._queue_size = queue_size
        self._on_batch = on_batch
        self._cond = threading.Condition()
        self._waiting: deque[_Job] = deque()
        self._waiting_images = 0
        self._leader_active = False
        self._decoding = 0  # announced requests not yet queued
        self._local = threading.local()

    @contextlib.contextmanager
    def decoding(self) -> Iterator[None]:
        """Announce a request whose images are being decoded, so a leader waits for it.

        The announcement ends when the request queues (``predict`` inside the block)
        or when the block ends, whichever comes first.
        """
        with self._cond:
            self._decoding += 1
        self._local.announced = True
        try:
            yield
        finally:
            with self._cond:
                self._withdraw()
                self._cond.notify_all()

    def _withdraw(self) -> None:
        """End this thread's announcement, if it has one (lock held)."""
        if getattr(self._local, "announced", False):
            self._local.announced = False
            self._decoding -= 1

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """``(n, h, w, 3)`` uint8 in, ``(n, classes)`` out, batched with concurrent calls.

        Raises ``Overloaded`` when ``queue_size`` requests already wait.
        """
        job = _Job(pixels)
        with self._cond:
            if len(self._waiting) >= self._queue_size:
                raise Overloaded(
                    f"The server is busy: {len(self._waiting)} requests are queued for this "
                    "model; retry in a moment"
                )
            self._waiting.append(job)
            self._waiting_images += len(pixels)
            self._withdraw()
            self._cond.notify_all()
        while True:
            with self._cond:
                while self._leader_active and not job.done:
                    self._cond.wait()
                if job.done:
                    break
                self._leader_active = True
            # Batches are taken first come, first served, so a leader whose own
            # job did not fit in this batch goes round again.
            try:
                self._run(self._gather())
            finally:
                with self._cond:
                    self._leader_active = False
                    self._cond.notify_all()
        if job.error is not None:
            raise job.error
        assert job.rows is not None
        return job.rows

    def _gather(self) -> list[_Job]:
        deadline = time.monotonic() + self._max_delay_s
        with self._cond:
            while self._waiting_images < self._max_batch_size and self._decoding > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = [self._waiting.popleft()]
            size = len(batch[0].pixels)
            while self._waiting and size + len(self._waiting[0].pixels) <= self._max_batch_size:
                job = self._waiting.popleft()
                batch.append(job)
                size += len(job.pixels)
            self._waiting_images -= size
        return batch

    def _run(self, batch: list[_Job]) -> None:
        pixels = np.concatenate([job.pixels for job in batch])
        start = time.perf_counter()
        try:
            # A single request larger than the batch limit runs in slices of it.
            rows = np.concatenate(
                [
                    self._forward(pixels[i : i + self._max_batch_size])
                    for i in range(0, len(pixels), self._max_batch_size)
                ]
            )
        except BaseException as exc:
            for job in batch:
                job.error = exc
        else:
            offset = 0
            for job in batch:
                job.rows = rows[offset : offset + len(job.pixels)]
                offset += len(job.pixels)
        finally:
            elapsed = time.perf_counter() - start
            with self._cond:
                for job in batch:
                    job.done = True
        if self._on_batch is not None:
            self._on_batch(len(pixels), elapsed)
