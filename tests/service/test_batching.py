from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.contract.errors import Overloaded
from service.serving.batching import MicroBatcher


def images(*values: int) -> np.ndarray:
    """One 1x1 image per value, so the forward pass can tell them apart."""
    return np.array(values, np.uint8).reshape(-1, 1, 1, 1)


class RecordingForward:
    """Returns each image's value as its row, and records every batch it was given."""

    def __init__(self, gate: threading.Event | None = None):
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self.gate = gate

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        self.batches.append(pixels.reshape(-1).tolist())
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        return pixels.reshape(-1, 1).astype(np.float32)


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.001)


def test_concurrent_requests_share_one_forward_pass():
    forward = RecordingForward()
    sizes = []
    batcher = MicroBatcher(
        forward,
        max_batch_size=4,
        max_delay_s=5.0,
        queue_size=8,
        on_batch=lambda size, seconds: sizes.append(size),
    )
    started = threading.Barrier(4)

    def request(value):
        with batcher.decoding():
            started.wait()  # all four are announced before any of them queues
            return batcher.predict(images(value))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(request, [10, 20, 30, 40]))
    # The leader waits (up to 5 s) for the announced requests: one pass of all four.
    assert len(forward.batches) == 1
    assert sorted(forward.batches[0]) == [10, 20, 30, 40]
    assert [row.tolist() for row in results] == [[[10.0]], [[20.0]], [[30.0]], [[40.0]]]
    assert sizes == [4]


def test_a_request_larger_than_the_batch_limit_runs_in_slices_in_order():
    forward = RecordingForward()
    batcher = MicroBatcher(forward, max_batch_size=4, max_delay_s=0, queue_size=8)
    rows = batcher.predict(images(*range(10)))
    assert [len(batch) for batch in forward.batches] == [4, 4, 2]
    assert rows.reshape(-1).tolist() == list(range(10))


def test_without_delay_a_lone_request_does_not_wait():
    forward = RecordingForward()
    batcher = MicroBatcher(forward, max_batch_size=16, max_delay_s=0, queue_size=8)
    for value in (1, 2, 3):
        assert batcher.predict(images(value)).tolist() == [[value]]
    assert forward.batches == [[1], [2], [3]]


def test_a_full_queue_raises_overloaded_and_the_queued_requests_still_complete():
    gate = threading.Event()
    forward = RecordingForward(gate)
    batcher = MicroBatcher(forward, max_batch_size=1, max_delay_s=0, queue_size=1)
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(batcher.predict, images(1))
        assert forward.started.wait(5)  # the first request is in the forward pass
        queued = pool.submit(batcher.predict, images(2))
        wait_until(lambda: len(batcher._waiting) == 1)
        with pytest.raises(Overloaded) as caught:
            batcher.predict(images(3))
        assert caught.value.status == 503
        assert caught.value.headers["Retry-After"] == "1"
        gate.set()
        assert running.result(5).tolist() == [[1]]
        assert queued.result(5).tolist() == [[2]]
    assert forward.batches == [[1], [2]]


def test_an_error_in_the_forward_pass_reaches_the_caller_and_the_batcher_recovers():
    calls = []

    def forward(pixels):
        calls.append(len(pixels))
        if len(calls) == 1:
            raise RuntimeError("device lost")
        return pixels.reshape(-1, 1).astype(np.float32)

    batcher = MicroBatcher(forward, max_batch_size=4, max_delay_s=0, queue_size=4)
    with pytest.raises(RuntimeError, match="device lost"):
        batcher.predict(images(1))
    assert batcher.predict(images(7)).tolist() == [[7]]


def test_many_concurrent_callers_each_get_their_own_rows():
    forward = RecordingForward()
    batcher = MicroBatcher(forward, max_batch_size=8, max_delay_s=0.002, queue_size=64)
    values = list(range(1, 101))
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda v: batcher.predict(images(v, v)), values))
    assert [row.reshape(-1).tolist() for row in results] == [[v, v] for v in values]
    assert all(len(batch) <= 8 for batch in forward.batches)
    assert sum(len(batch) for batch in forward.batches) == 200


def test_a_request_alone_does_not_wait_for_the_batch_delay():
    forward = RecordingForward()
    batcher = MicroBatcher(forward, max_batch_size=16, max_delay_s=30.0, queue_size=8)
    waits: list[float | None] = []
    wait = batcher._cond.wait

    def recording_wait(timeout: float | None = None) -> bool:
        waits.append(timeout)
        return wait(timeout)

    batcher._cond.wait = recording_wait  # every wait of the batcher goes through here
    with batcher.decoding():
        rows = batcher.predict(images(7))
    assert waits == [], "nobody else was coming: the leader had no reason to wait"
    assert forward.batches == [[7]] and rows.tolist() == [[7.0]]


def test_a_leader_waits_for_a_request_still_being_decoded():
    forward = RecordingForward()
    batcher = MicroBatcher(forward, max_batch_size=16, max_delay_s=5.0, queue_size=8)
    decoding = threading.Event()
    decoded = threading.Event()

    def slow_request():
        with batcher.decoding():
            decoding.set()
            assert decoded.wait(5)
            return batcher.predict(images(2))

    with ThreadPoolExecutor(2) as pool:
        second = pool.submit(slow_request)
        assert decoding.wait(5)
        first = pool.submit(batcher.predict, images(1))
        time.sleep(0.2)  # the leader is waiting for the announced request
        decoded.set()
        assert first.result(10).tolist() == [[1.0]] and second.result(10).tolist() == [[2.0]]
    assert len(forward.batches) == 1 and sorted(forward.batches[0]) == [1, 2]


# --- work that cannot share a batch --------------------------------------------------


def test_work_run_alone_returns_its_result_and_its_error_and_the_batcher_recovers():
    batcher = MicroBatcher(RecordingForward(), max_batch_size=4, max_delay_s=0, queue_size=4)
    assert batcher.run_alone(lambda: "heatmap") == "heatmap"

    def broken():
        raise ValueError("no such layer")

    with pytest.raises(ValueError, match="no such layer"):
        batcher.run_alone(broken)
    assert batcher.predict(images(5)).tolist() == [[5.0]]


def test_work_waits_its_turn_in_the_queue_and_runs_by_itself():
    gate = threading.Event()
    forward = RecordingForward(gate)
    batcher = MicroBatcher(forward, max_batch_size=8, max_delay_s=0, queue_size=8)
    ran: list[object] = []

    def work():
        ran.append(("work", list(forward.batches)))  # what had run before it
        return "done"

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(batcher.predict, images(1))
        assert forward.started.wait(5)  # the model is busy with the first request
        before = pool.submit(batcher.predict, images(2))
        wait_until(lambda: len(batcher._waiting) == 1)
        alone = pool.submit(batcher.run_alone, work)
        wait_until(lambda: len(batcher._waiting) == 2)
        after = pool.submit(batcher.predict, images(3))
        wait_until(lambda: len(batcher._waiting) == 3)
        gate.set()
        assert [f.result(5).tolist() for f in (first, before, after)] == [[[1]], [[2]], [[3]]]
        assert alone.result(5) == "done"
    # Without the work between them, 2 and 3 would have shared one forward pass.
    assert forward.batches == [[1], [2], [3]]
    assert ran == [("work", [[1], [2]])]


def test_work_counts_against_the_queue_limit_like_predictions():
    gate = threading.Event()
    forward = RecordingForward(gate)
    batcher = MicroBatcher(forward, max_batch_size=1, max_delay_s=0, queue_size=1)
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(batcher.predict, images(1))
        assert forward.started.wait(5)
        queued = pool.submit(batcher.run_alone, lambda: "queued")
        wait_until(lambda: len(batcher._waiting) == 1)
        with pytest.raises(Overloaded):
            batcher.run_alone(lambda: "refused")
        with pytest.raises(Overloaded):
            batcher.predict(images(3))
        gate.set()
        assert running.result(5).tolist() == [[1]] and queued.result(5) == "queued"
