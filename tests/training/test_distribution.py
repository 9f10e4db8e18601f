"""The multi-worker seam (``training.distribution``): a job on one device gets ``Local``,
whose every step is the plain call, and no step of a job reaches
``training.multiworker`` except through the seam; ``Workers`` wraps ``tf.distribute``.
The multi-worker job itself is tests/e2e/test_distributed_train.py."""

from __future__ import annotations

import ast
import contextlib
import json
from pathlib import Path

import numpy as np
import pytest

from training.config import ConfigError, build_config
from training.distribution import Local, choose
from training.evaluation.evaluate import Validation

ROOT = Path(__file__).resolve().parents[2]
TWO_WORKERS = json.dumps(
    {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}
)


def _config(**flags):
    return build_config({}, {"data": "d", "name": "n", **flags})


def _scored() -> Validation:
    rows = np.arange(2)
    return Validation(np.eye(2, dtype=np.float32), rows, ["a.png", "b.png"], None, rows)


def test_one_device_gets_the_local_distribution():
    assert isinstance(choose(_config(), lambda message: None, environ={}), Local)


def test_resume_with_several_workers_is_refused_before_any_worker_connects():
    environ = {"TF_CONFIG": TWO_WORKERS}
    with pytest.raises(ConfigError, match="--resume is not available with more than one"):
        choose(_config(strategy="multiworker", resume=True), lambda message: None, environ)


def test_each_local_step_is_the_plain_call():
    local, scored = Local(), _scored()
    assert (local.workers, local.index, local.is_chief, local.one_device) == (1, 0, True, True)
    assert local.gather(scored, (8, 8)) is scored
    assert local.joined(["x", "y"]) == ["x", "y"]
    assert local.publish(lambda: (3, Path("/store/n/3"))) == (3, Path("/store/n/3"))
    assert local.per_replica_batch(32) == 32
    assert local.distribute(lambda batch, pad_to: (batch, pad_to), 10, 4) == ((4, None), None)
    arrays = [np.arange(3.0)]
    assert local.mean(arrays) is arrays
    assert local.describe(2) == [] and local.details(2) is None
    assert isinstance(local.scope(), contextlib.nullcontext)


def test_mirrored_training_goes_through_the_workers_wrapper():
    import tensorflow as tf

    from training.multiworker.cluster import Cluster
    from training.multiworker.distributed import Workers

    workers = Workers(Cluster(tf.distribute.MirroredStrategy(["/cpu:0"])))
    assert not workers.one_device and (workers.workers, workers.is_chief) == (1, True)
    details = {"kind": "mirrored", "workers": 1, "replicas": 1, "global_batch_size": 10}
    assert workers.details(10) == details
    assert workers.describe(2)[0].startswith("Training on mirrored: 1 replicas")
    assert "raise --batch-size" in workers.describe(2)[1]
    scored = _scored()
    assert workers.gather(scored, (8, 8)) is scored  # one worker: nothing to gather
    assert workers.publish(lambda: (1, Path("p"))) == (1, Path("p"))


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_only_the_seam_reaches_the_multiworker_code():
    reaching = sorted(
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "training").rglob("*.py")
        if "multiworker" not in path.parts
        and any(name.startswith("training.multiworker") for name in _imports(path))
    )
    assert reaching == ["training/distribution.py"]
