"""Where a job trains: one device, or several devices or machines through
``tf.distribute``, and the collective operations its workers share.

``--strategy`` chooses how (see :func:`connect`). With more than one worker
every worker lists the same files, decodes only its own shard of them, and
trains a copy of the model; gradients are averaged after every step, so all
copies stay equal. Collective operations wait for every worker, so every worker
must run the same number of steps: shards are padded to the largest one.
Worker 0 (the ``chief`` task if the cluster names one) publishes the bundle.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from models.errors import ConfigError, OperationalError
from training.config import STRATEGIES

_TRAINING_TASKS = ("chief", "worker")


class ClusterError(ConfigError):
    """A cluster (``TF_CONFIG``) or strategy that cannot train; says what to fix."""


class WorkerLost(OperationalError):
    """Another worker stopped or could not be reached; the job cannot go on."""

    code = "worker_lost"


def read_tf_config(text: str | None) -> tuple[int, int] | None:
    """``(workers, this worker's position)`` from a ``TF_CONFIG`` value, or None
    when it is unset. Position 0 is the chief task, or worker 0 without one."""
    if not text:
        return None
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        kind, index = task["type"], int(task["index"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ClusterError(
            'TF_CONFIG must be JSON like {"cluster": {"worker": ["host0:port", "host1:port"]}, '
            f'"task": {{"type": "worker", "index": 0}}}}: {exc!r}'
        ) from None
    extra = sorted(set(cluster) - {*_TRAINING_TASKS, "evaluator"})
    if extra:
        raise ClusterError(
            f"TF_CONFIG names {', '.join(extra)} tasks; ktl trains with synchronous workers "
            "only (chief and worker tasks, no parameter servers)"
        )
    if kind not in _TRAINING_TASKS:
        raise ClusterError(f"TF_CONFIG task type {kind!r}: this process must be a chief or worker")
    if not 0 <= index < len(cluster.get(kind, [])):
        raise ClusterError(f"TF_CONFIG task index {index} is not in the cluster's {kind} list")
    chiefs = len(cluster.get("chief", []))
    if chiefs > 1:
        raise ClusterError("TF_CONFIG may name one chief task at most")
    workers = chiefs + len(cluster.get("worker", []))
    return workers, index if kind == "chief" else index + chiefs


@dataclass
class Cluster:
    """Where this process trains: ``strategy`` None means one device, no ``tf.distribute``."""

    strategy: tf.distribute.Strategy | None = None
    workers: int = 1
    index: int = 0

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync if self.strategy else 1

    def scope(self):
        """Variables created in this scope are mirrored on every replica."""
        return self.strategy.scope() if self.strategy else contextlib.nullcontext()

    def describe(self) -> str:
        if self.strategy is None:
            return "one device"
        kind = "multi-worker" if self.workers > 1 else "mirrored"
        return (
            f"{kind}: {self.replicas} replicas, worker {self.index} of {self.workers}"
            f"{' (chief, publishes)' if self.is_chief else ''}"
        )

    @contextlib.contextmanager
    def failures(self):
        """With several workers: TensorFlow's errors from a collective whose peer is
        gone become ``WorkerLost``, and an interruption says how to start again."""
        if self.workers == 1:
            yield
            return
        try:
            yield
        except tf.errors.OpError as exc:
            if not _peer_lost(exc):
                raise
            lines = [line for line in exc.message.splitlines() if line.strip()]
            reason = next((line for line in lines if "task" in line), lines[0] if lines else "")
            raise WorkerLost(
                f"worker {self.index}: the job stopped because another worker failed or could "
                f"not be reached ({reason.strip()}); nothing was published. Start every "
                "worker again (their logs say why one stopped)"
            ) from exc
        except KeyboardInterrupt:
            raise KeyboardInterrupt(
                "interrupted; nothing was published. Start every worker of the job again "
                "(--resume is not available with several workers)"
            ) from None

    def farewell(self) -> None:
        """A last exchange after the outcome: a worker leaves only once every other has
        received it, so none sees the chief go before its answer arrived."""
        with contextlib.suppress(tf.errors.OpError):
            self.allgather_json(True)

    # Collectives: every worker must make the same calls in the same order.

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        """Every worker's ``data``, in worker order."""
        if self.workers == 1:
            return [data]
        padded = np.frombuffer(data + b"\0" * (-len(data) % 4), np.int32)
        local = self.replicas // self.workers
        strategy = self.strategy
        assert strategy is not None  # several workers always have one

        def per_replica(values: np.ndarray, empty: np.ndarray):
            # One copy per worker: the other local replicas contribute nothing.
            return strategy.experimental_distribute_values_from_function(
                lambda ctx: tf.constant(
                    values if ctx.replica_id_in_sync_group % local == 0 else empty
                )
            )

        with _no_retracing_warnings():  # each new length traces TensorFlow's gather anew
            lengths = strategy.gather(
                per_replica(np.array([len(data)], np.int64), np.zeros(0, np.int64)), axis=0
            ).numpy()
            joined = strategy.gather(per_replica(padded, np.zeros(0, np.int32)), axis=0)
        joined = joined.numpy().tobytes()
        parts, start = [], 0
        for length in lengths:
            parts.append(joined[start : start + int(length)])
            start += int(length) + (-int(length) % 4)
        return parts

    def allgather_json(self, value) -> list:
        return [json.loads(part) for part in self.allgather_bytes(json.dumps(value).encode())]

    def allgather_array(self, array: np.ndarray) -> list[np.ndarray]:
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(array), allow_pickle=False)
        return [np.load(io.BytesIO(part)) for part in self.allgather_bytes(buffer.getvalue())]

    def per_replica_batch(self, batch_size: int) -> int:
        """Each replica's share of a global batch (what its BatchNorm layers see)."""
        return math.ceil(batch_size / self.replicas)

    def distribute(
        self, make: Callable[[int, int | None], tf.data.Dataset], count: int, batch_size: int
    ) -> tuple[object, int | None]:
        """Batches for ``fit`` and the steps of one epoch (None: the dataset's length).

        ``make(batch, pad_to)`` builds this worker's dataset of its ``count`` items,
        padded to ``pad_to`` (None: not padded) with items of weight 0. Distributed,
        ``batch_size`` is the global batch; every replica gets its share, and the data
        repeats, the steps telling ``fit`` where an epoch ends (Keras would count per
        replica)."""
        if self.strategy is None:
            return make(batch_size, None), None
        per_replica = self.per_replica_batch(batch_size)
        local = self.replicas // self.workers
        longest = max(self.allgather_json(count))
        steps = math.ceil(longest / (per_replica * local))
        # One replica per worker: pad to the longest shard, the last batch may be short.
        # Several: every replica needs a batch every step, so pad to whole steps.
        pad_to = longest if local == 1 else steps * per_replica * local
        data = self.strategy.distribute_datasets_from_function(
            lambda context: make(per_replica, pad_to).repeat()
        )
        return data, steps

    @property
    def model_class(self) -> type[keras.Model]:
        """The class of the models ``fit`` trains (see ``_WorkerSynced``)."""
        return _WorkerSynced if self.workers > 1 else keras.Model

    def fit_scope(self):
        """Where the models ``fit`` trains are built. With several workers, outside
        the strategy's scope on purpose: Keras 3.15 then builds them in the traced
        step instead of first averaging a batch of data across workers, which fails
        (keras-team/keras#20585). With one worker, Keras' documented way: inside."""
        return contextlib.nullcontext() if self.workers > 1 else self.scope()

    def mean(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Element-wise means over the workers of each array."""
        gathered = self.allgather_array(np.concatenate([np.ravel(a) for a in arrays]))
        flat = np.mean(gathered, axis=0)
        out, start = [], 0
        for a in arrays:
            out.append(flat[start : start + a.size].reshape(a.shape).astype(a.dtype))
            start += a.size
        return out


def _peer_lost(exc: tf.errors.OpError) -> bool:
    """Whether a TensorFlow error comes from another worker being gone."""
    lost = (
        tf.errors.UnavailableError,
        tf.errors.CancelledError,
        tf.errors.AbortedError,
        tf.errors.DeadlineExceededError,
    )
    return isinstance(exc, lost) or "Collective ops is aborted" in (exc.message or "")


@contextlib.contextmanager
def _no_retracing_warnings():
    def keep(record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()

    logger = logging.getLogger("tensorflow")
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


class _WorkerSynced(keras.Model):
    """Keras 3.15 averages a multi-worker step's scalar logs with ``axis=0`` and
    fails ("Invalid reduction dimension 0", tensorflow/tensorflow#72388); a
    length-1 axis makes that average the intended one."""

    def train_step(self, data):
        return {k: tf.reshape(v, [1]) for k, v in super().train_step(data).items()}

    def test_step(self, data):
        return {k: tf.reshape(v, [1]) for k, v in super().test_step(data).items()}


def plan(strategy: str, environ=os.environ) -> tuple[str, int, int]:
    """What ``connect`` would set up, starting nothing: ``(kind, workers, index)``,
    kind being ``one``, ``mirrored`` or ``multiworker``.

    ``auto``: every worker of ``TF_CONFIG`` when it names more than one, else every
    local GPU when there are several, else one device. ``mirrored``: one copy per
    local GPU (the CPU when there is no GPU). ``multiworker``: the workers of
    ``TF_CONFIG``, required.
    """
    if strategy not in STRATEGIES:
        raise ClusterError(f"--strategy must be one of {', '.join(STRATEGIES)}")
    found = read_tf_config(environ.get("TF_CONFIG"))
    if strategy == "auto":
        if found and found[0] > 1:
            strategy = "multiworker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            strategy = "mirrored"
        else:
            return "one", 1, 0
    if strategy == "mirrored":
        if found and found[0] > 1:
            raise ClusterError(
                f"--strategy mirrored trains on this machine alone, but TF_CONFIG names "
                f"{found[0]} workers (each would publish its own version): use --strategy "
                "multiworker, or unset TF_CONFIG"
            )
        return "mirrored", 1, 0
    if found is None:
        raise ClusterError(
            "--strategy multiworker needs TF_CONFIG: the cluster's workers and this process's "
            'task, e.g. {"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}, '
            '"task": {"type": "worker", "index": 0}} (README: Scaling out)'
        )
    return "multiworker", *found


def connect(
    strategy: str, environ=os.environ, log: Callable[[str], None] = lambda message: None
) -> Cluster:
    """The cluster ``plan`` describes; call before any other TensorFlow work. With
    several workers this waits until every one of them has started."""
    kind, workers, index = plan(strategy, environ)
    if kind == "one":
        return Cluster()
    if kind == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
        return Cluster(tf.distribute.MirroredStrategy(devices))
    if workers > 1:
        log(f"Worker {index}: waiting for all {workers} workers of TF_CONFIG to start ...")
    with _signal_handlers_kept():
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    return Cluster(strategy, workers, index)


@contextlib.contextmanager
def _signal_handlers_kept():
    """Keep this process's handlers of Ctrl-C and SIGTERM through the strategy's creation.

    The strategy waits inside TensorFlow until every worker has started, holding
    the interpreter, so Python's handlers cannot run: Ctrl-C ends the process at
    once meanwhile (nothing has been written). TensorFlow also puts a handler of
    its own on SIGTERM (for preemption notices) that would swallow a stop request
    for the rest of the job; Python's handler is put back after.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)


def shard(items: list, cluster: Cluster) -> list:
    """This worker's share: every ``workers``-th item, so each class (listed in
    order) is split evenly."""
    return items[cluster.index :: cluster.workers]
