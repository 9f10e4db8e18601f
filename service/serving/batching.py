"""Dynamic micro-batching: concurrent requests for one model share a forward pass.

There is no batching thread. The first request thread to find the model idle
becomes the leader: while other requests are still being decoded (announced
with ``decoding()``) it waits for them, up to ``max_delay_s`` or until
``max_batch_size`` images wait, runs their images as one batch, hands every
request its rows and passes the lead on. Followers just wait for their rows. A
request alone goes at once: waiting for nobody would only add latency.
One computation per model at a time suits CPU inference, where a single pass
already uses every core TensorFlow was given; so work that cannot share a batch
(Grad-CAM, feature maps: ``run_alone``) waits in the same queue, in turn, and
runs by itself.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np

from service.contract.errors import Overloaded

T = TypeVar("T")


class _Job:
    """Images to classify (``pixels``) or a computation to run alone (``work``)."""

    __slots__ = ("pixels", "work", "result", "error", "done")

    def __init__(self, pixels: np.ndarray | None = None, work: Callable[[], Any] | None = None):
        self.pixels = pixels
        self.work = work
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False

    @property
    def images(self) -> int:
        return 0 if self.pixels is None else len(self.pixels)


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
        rows: np.ndarray = self._complete(_Job(pixels=pixels))
        return rows

    def run_alone(self, work: Callable[[], T]) -> T:
        """Run ``work`` when its turn in the queue comes, with nothing else on the model.

        For computations that cannot share a batch; raises ``Overloaded`` like
        ``predict`` when the queue is full, and whatever ``work`` raises.
        """
        result: T = self._complete(_Job(work=work))
        return result

    def _complete(self, job: _Job) -> Any:
        self._enqueue(job)
        while True:
            with self._cond:
                while self._leader_active and not job.done:
                    self._cond.wait()
                if job.done:
                    break
                self._leader_active = True
            # Jobs are taken first come, first served, so a leader whose own job
            # did not fit in this batch goes round again.
            try:
                self._run(self._gather())
            finally:
                with self._cond:
                    self._leader_active = False
                    self._cond.notify_all()
        if job.error is not None:
            raise job.error
        return job.result

    def _enqueue(self, job: _Job) -> None:
        with self._cond:
            if len(self._waiting) >= self._queue_size:
                raise Overloaded(
                    f"The server is busy: {len(self._waiting)} requests are queued for this "
                    "model; retry in a moment"
                )
            self._waiting.append(job)
            self._waiting_images += job.images
            self._withdraw()
            self._cond.notify_all()

    def _gather(self) -> list[_Job]:
        """The next batch: the first waiting job and, for images, those that fit after it."""
        deadline = time.monotonic() + self._max_delay_s
        with self._cond:
            if self._waiting[0].work is not None:
                return [self._waiting.popleft()]
            while self._waiting_images < self._max_batch_size and self._decoding > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = [self._waiting.popleft()]
            size = batch[0].images
            while (
                self._waiting
                and self._waiting[0].work is None
                and size + self._waiting[0].images <= self._max_batch_size
            ):
                job = self._waiting.popleft()
                batch.append(job)
                size += job.images
            self._waiting_images -= size
        return batch

    def _run(self, batch: list[_Job]) -> None:
        work = batch[0].work
        if work is not None:
            self._settle(batch, work)
            return
        pixels = np.concatenate([job.pixels for job in batch if job.pixels is not None])
        start = time.perf_counter()
        self._settle(batch, lambda: self._forward_in_slices(pixels))
        if self._on_batch is not None:
            self._on_batch(len(pixels), time.perf_counter() - start)

    def _forward_in_slices(self, pixels: np.ndarray) -> np.ndarray:
        # A single request larger than the batch limit runs in slices of it.
        return np.concatenate(
            [
                self._forward(pixels[i : i + self._max_batch_size])
                for i in range(0, len(pixels), self._max_batch_size)
            ]
        )

    def _settle(self, batch: list[_Job], compute: Callable[[], Any]) -> None:
        """Run ``compute`` and hand each job its share of the result, or the error."""
        try:
            result = compute()
        except BaseException as exc:
            for job in batch:
                job.error = exc
        else:
            if batch[0].work is not None:
                batch[0].result = result
            else:
                offset = 0
                for job in batch:
                    job.result = result[offset : offset + job.images]
                    offset += job.images
        finally:
            with self._cond:
                for job in batch:
                    job.done = True
