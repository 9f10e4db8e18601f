"""``ktl train --strategy``: two real worker processes on 127.0.0.1 (CPU, TF_CONFIG)
against a single-process run of the same data and seed, the transfer recipe
on two workers, mirrored replicas on two logical CPUs, and the failures a
cluster adds: a shard missing a class, a worker that dies, --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from models.bundle import load_bundle, read_metadata
from models.engines.inference import Classifier
from models.networks.backbones import get_backbone
from models.preprocessing import load_image
from tests.support.cli import ktl_here, start_workers
from tests.support.data import make_colour_dataset
from tests.support.server import free_port
from training.publishing.report import WORST_COUNT

pytestmark = pytest.mark.slow

SCRATCH = (
    "--backbone", "smallcnn", "--weights", "none", "--image-size", "24",
    "--epochs", "12", "--patience", "12", "--batch-size", "8", "--seed", "3", "--json",
)  # fmt: skip


def _finish(workers, timeout: float = 300) -> list[tuple[int, dict | None, str]]:
    """Wait for every worker: (exit code, --json output or None, stderr). Workers
    still running at the deadline are killed, so none outlives its test."""
    deadline = time.monotonic() + timeout
    try:
        codes = [w.wait(max(1.0, deadline - time.monotonic())) for w in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    results = []
    for code, worker in zip(codes, workers, strict=True):
        out = worker.stdout_path.read_text()
        output = json.loads(out) if out.strip() else None
        results.append((code, output, worker.stderr_path.read_text()))
    return results


def _wait_for(worker, text: str, timeout: float) -> None:
    """Until ``text`` shows in the worker's stderr; it must keep running meanwhile."""
    deadline = time.monotonic() + timeout
    while text not in worker.stderr_path.read_text():
        assert time.monotonic() < deadline and worker.poll() is None, text
        time.sleep(0.2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same job in this process and on two workers, each with its own store."""
    root = tmp_path_factory.mktemp("distributed")
    data = make_colour_dataset(root / "data", per_class=16, size=24)
    single = ktl_here(
        "train", str(data), "--name", "colours", "--store", str(root / "one"), *SCRATCH
    )
    assert single.returncode == 0, single.stderr
    workers = start_workers(
        2, root / "logs", "train", str(data), "--name", "colours", "--store", str(root / "two"),
        "--strategy", "multiworker", *SCRATCH,
    )  # fmt: skip
    results = _finish(workers)
    for code, _, stderr in results:
        assert code == 0, stderr
    return data, root, json.loads(single.stdout), results


def test_two_workers_publish_exactly_one_version(runs):
    _, root, _, results = runs
    (_, chief, chief_err), (_, other, other_err) = results
    assert chief["version"] == 1 and "worker" in chief and chief["worker"]["index"] == 0
    assert other["version"] == 1 and other["worker"] == {"index": 1, "workers": 2}
    assert other["path"] == chief["path"] == str(root / "two" / "colours" / "1")
    assert sorted(p.name for p in (root / "two" / "colours").iterdir()) == ["1"]
    assert list((root / "two" / ".jobs").iterdir()) == []  # both workers' state removed
    assert "This worker's shard: 24 of 48 files" in chief_err
    assert "This worker's shard: 24 of 48 files" in other_err
    assert "Decoding 24 training and validation images" in other_err  # its own shard only


def test_the_bundle_records_the_cluster_and_covers_every_shard(runs):
    data, root, single, results = runs
    chief = results[0][1]
    metadata = read_metadata(Path(chief["path"])).to_json()
    assert metadata["training"]["strategy"] == "multiworker"
    assert metadata["training"]["distribution"] == {
        "kind": "multiworker", "workers": 2, "replicas": 2, "global_batch_size": 8,
    }  # fmt: skip
    assert metadata["dataset"]["shards"] == 2
    seen = metadata["dataset"]["train_images"] + metadata["dataset"]["val_images"]
    assert seen == single["dataset"]["train_images"] + single["dataset"]["val_images"] == 48
    support = sum(c["support"] for c in chief["metrics"]["per_class"].values())
    assert support == metadata["dataset"]["val_images"]  # the chief evaluated all shards
    worst = json.loads((Path(chief["path"]) / "reports" / "worst.json").read_text())
    wrong = round((1 - chief["metrics"]["accuracy"]) * support)  # of every shard's images
    assert len(worst) == min(WORST_COUNT, wrong)
    assert all((data / e["file"]).is_file() and e["true"] != e["predicted"] for e in worst)


def test_two_workers_classify_like_one_process(runs):
    data, _, single, results = runs
    chief = results[0][1]
    assert chief["metrics"]["accuracy"] >= 0.8, chief["metrics"]  # chance is 1/3
    assert abs(chief["metrics"]["accuracy"] - single["metrics"]["accuracy"]) <= 0.15
    files = sorted(data.glob("*/*.png"))
    pixels = np.stack([load_image(f, (24, 24)) for f in files])
    answers = [
        Classifier(load_bundle(summary["path"])).predict(pixels).argmax(axis=1)
        for summary in (single, chief)
    ]
    truth = np.array([["blue", "green", "red"].index(f.parent.name) for f in files])
    assert (answers[1] == truth).mean() >= 0.85
    assert (answers[0] == answers[1]).mean() >= 0.85


def test_the_transfer_recipe_on_two_workers_keeps_the_frozen_layers(tmp_path):
    data = make_colour_dataset(tmp_path / "data", per_class=10, size=24)
    weights = tmp_path / "smallcnn.weights.h5"
    backbone = get_backbone("smallcnn").build((24, 24, 3), None)
    backbone.save_weights(weights)
    workers = start_workers(
        2, tmp_path / "logs", "train", str(data), "--name", "transfer", "--store",
        str(tmp_path / "store"), "--strategy", "multiworker", "--backbone", "smallcnn",
        "--weights", str(weights), "--image-size", "24", "--epochs", "2", "--min-steps", "0",
        "--fine-tune-epochs", "2", "--fine-tune-lr", "1e-3", "--unfreeze-from", "block3_conv1",
        "--no-augment", "--batch-size", "8", "--json",
    )  # fmt: skip
    (code, chief, err), (code1, _, err1) = _finish(workers)
    assert code == 0 and code1 == 0, err + err1
    assert [p["name"] for p in chief["training"]["phases"]] == ["head", "fine_tune"]
    assert chief["training"]["cached_features"] is True
    trained = load_bundle(chief["path"]).model.get_layer("smallcnn")
    names = [layer.name for layer in trained.layers]
    for layer in trained.layers:
        frozen = names.index(layer.name) < names.index("block3_conv1") or "_bn" in layer.name
        if frozen and layer.weights:
            for got, want in zip(
                layer.weights, backbone.get_layer(layer.name).weights, strict=True
            ):
                np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=layer.name)


def test_a_shard_missing_a_class_stops_every_worker_with_the_reason(tmp_path):
    data = make_colour_dataset(tmp_path / "data", per_class=6, size=8)
    for extra in sorted((data / "blue").iterdir())[2:]:  # 2 blue images: one per shard
        extra.unlink()
    workers = start_workers(
        2, tmp_path / "logs", "train", str(data), "--name", "x", "--store", str(tmp_path / "s"),
        "--strategy", "multiworker", "--backbone", "smallcnn", "--weights", "none",
        "--image-size", "8", "--epochs", "1",
    )  # fmt: skip
    for code, _, stderr in _finish(workers, timeout=180):
        assert code == 2, stderr
        assert "worker 0: every class needs at least 2 images; too few in: blue" in stderr
        assert "worker 1: every class needs" in stderr
    assert not (tmp_path / "s" / "x").exists()


def test_workers_started_with_different_settings_all_stop_and_say_which(tmp_path):
    """Different epochs would mean different numbers of collective steps, and
    workers waiting for each other forever."""
    data = make_colour_dataset(tmp_path / "data", per_class=6, size=8)
    common = (
        "train", str(data), "--name", "x", "--store", str(tmp_path / "s"), "--strategy",
        "multiworker", "--backbone", "smallcnn", "--weights", "none", "--image-size", "8",
    )  # fmt: skip
    hosts = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    workers = [
        *start_workers(2, tmp_path / "logs", *common, "--epochs", "1", only=0, hosts=hosts),
        *start_workers(2, tmp_path / "logs", *common, "--epochs", "2", only=1, hosts=hosts),
    ]
    for code, _, stderr in _finish(workers, timeout=120):
        assert code == 2, stderr
        assert "the workers were started with different settings (epochs)" in stderr


def _training_without_end(tmp_path: Path, name: str) -> list:
    """Two workers in their second epoch of 500."""
    data = make_colour_dataset(tmp_path / "data", per_class=10, size=24)
    workers = start_workers(
        2, tmp_path / "logs", "train", str(data), "--name", name, "--store",
        str(tmp_path / "store"), "--strategy", "multiworker", "--backbone", "smallcnn",
        "--weights", "none", "--image-size", "24", "--epochs", "500", "--patience", "500",
    )  # fmt: skip
    for worker in workers:
        _wait_for(worker, "Epoch 2/", timeout=180)
    return workers


def test_a_lost_worker_stops_the_others_and_nothing_is_published(tmp_path):
    workers = _training_without_end(tmp_path, "lost")
    os.kill(workers[1].pid, signal.SIGKILL)
    killed = time.monotonic()
    (code, _, stderr), _ = _finish(workers, timeout=180)
    assert code == 1, stderr
    assert "another worker failed or could not be reached" in stderr
    assert "nothing was published" in stderr and "Traceback" not in stderr
    assert time.monotonic() - killed < 120
    assert not (tmp_path / "store" / "lost").exists()


def test_resume_is_refused_with_several_workers(tmp_path, colour_dataset, monkeypatch):
    config = {
        "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
        "task": {"type": "worker", "index": 0},
    }
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))  # refused before any cluster starts
    result = ktl_here(
        "train", str(colour_dataset), "--name", "x", "--store", str(tmp_path / "s"),
        "--weights", "none", "--backbone", "smallcnn", "--resume",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "--resume is not available with more than one worker" in result.stderr


TWO_CPUS = (
    "import sys, tensorflow as tf; "
    "cpu = tf.config.list_physical_devices('CPU')[0]; "
    "two = [tf.config.LogicalDeviceConfiguration()] * 2; "
    "tf.config.set_logical_device_configuration(cpu, two); "
    "from cli import main; sys.exit(main(sys.argv[1:]))"
)


def test_mirrored_replicas_on_two_logical_cpus(tmp_path):
    data = make_colour_dataset(tmp_path / "data", per_class=16, size=24)
    result = subprocess.run(
        [sys.executable, "-c", TWO_CPUS, "train", str(data), "--name", "mirrored", "--store",
         str(tmp_path / "store"), "--strategy", "mirrored", *SCRATCH],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["training"]["distribution"] == {
        "kind": "mirrored", "workers": 1, "replicas": 2, "global_batch_size": 8,
    }  # fmt: skip
    assert "worker" not in summary and summary["version"] == 1
    assert summary["metrics"]["accuracy"] >= 0.8, summary["metrics"]
    assert "ran out of data" not in result.stderr  # the epoch's steps are the global ones


def test_a_worker_waiting_for_its_peers_stops_at_ctrl_c(tmp_path, colour_dataset):
    """TensorFlow waits for the other workers inside C++, holding the interpreter,
    so Python's handler could never run: Ctrl-C must end the process at once."""
    (worker,) = start_workers(
        2, tmp_path / "logs", "train", str(colour_dataset), "--name", "alone", "--store",
        str(tmp_path / "store"), "--strategy", "multiworker", "--weights", "none",
        "--backbone", "smallcnn", only=0,
    )  # fmt: skip
    _wait_for(worker, "waiting for all 2 workers", timeout=60)
    time.sleep(1)  # well inside TensorFlow's wait
    worker.send_signal(signal.SIGINT)
    try:
        assert worker.wait(15) == -signal.SIGINT
    finally:
        if worker.poll() is None:
            worker.kill()
    assert not (tmp_path / "store" / "alone").exists()


def test_sigterm_during_multiworker_training_stops_the_job_cleanly(tmp_path):
    """TensorFlow's own SIGTERM handler (preemption notices) must not swallow a
    stop request: the chief exits as any interrupted job does, the other worker
    reports the lost peer, and nothing is published."""
    workers = _training_without_end(tmp_path, "stopped")
    workers[0].send_signal(signal.SIGTERM)
    (code, _, stderr), (code1, _, stderr1) = _finish(workers, timeout=180)
    assert code == 130, stderr
    assert "interrupted; nothing was published" in stderr
    assert "--resume is not available with several workers" in stderr  # not "use --resume"
    assert code1 == 1 and "another worker failed or could not be reached" in stderr1
    assert not (tmp_path / "store" / "stopped").exists()
