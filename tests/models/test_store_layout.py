"""The store's typed accessors: every path of the documented layout comes from
``models.store``, and names and job ids are checked before a path is built."""

from __future__ import annotations

import json
import shutil

import pytest

from models.jobqueue.jobs import JobQueue, UnknownJob
from models.metadata import BundleError, BundleMetadata
from models.store import InvalidName, ModelNotFound, ModelStore, QueuePaths, read_metadata_file
from models.store.labels import LabelMove
from models.store.progress import PROGRESS_FILE, JobProgress, epochs_file

METADATA = {"name": "flowers", "labels": ["a", "b"], "image_size": [32, 32], "files": {}}


def published(store: ModelStore, name: str = "flowers") -> int:
    staging = store.staging_dir(name)
    (staging / "model.keras").write_text("weights")
    return store.publish(staging, name, {**METADATA, "name": name})


def test_version_paths_are_the_documented_layout(tmp_path):
    store = ModelStore(tmp_path)
    assert store.model_dir("flowers") == tmp_path / "flowers"
    assert store.version_dir("flowers", 3) == tmp_path / "flowers" / "3"
    version = published(store)
    assert store.resolve("flowers") == (version, store.version_dir("flowers", version))


@pytest.mark.parametrize("name", ["../outside", ".jobs", "A"])
def test_names_are_checked_before_a_path_is_built(tmp_path, name):
    store = ModelStore(tmp_path)
    for accessor in (store.model_dir, store.job_dir, store.job_lock_path):
        with pytest.raises(InvalidName):
            accessor(name)
    with pytest.raises(InvalidName):
        store.version_dir(name, 1)


def test_read_metadata_is_typed_and_names_what_failed(tmp_path):
    store = ModelStore(tmp_path)
    version = published(store)
    metadata = store.read_metadata("flowers", version)
    assert isinstance(metadata, BundleMetadata)
    assert (metadata.name, metadata.version, list(metadata.labels)) == ("flowers", 1, ["a", "b"])
    assert store.has_version("flowers", version) and not store.has_version("flowers", 2)
    with pytest.raises(BundleError, match="cannot read metadata.json"):
        store.read_metadata("flowers", 2)
    (store.version_dir("flowers", version) / "metadata.json").write_text("{not json")
    with pytest.raises(BundleError, match=r"flowers/1: cannot read metadata.json"):
        store.read_metadata("flowers", version)


def test_read_metadata_file_reads_a_copied_bundle(tmp_path):
    store = ModelStore(tmp_path / "store")
    version = published(store)
    copy = shutil.copytree(store.version_dir("flowers", version), tmp_path / "copy")
    assert read_metadata_file(copy).version == version


def test_job_state_and_its_lock_are_hidden_beside_the_models(tmp_path):
    store = ModelStore(tmp_path)
    assert store.job_dir("flowers") == tmp_path / ".jobs" / "flowers"
    assert store.job_dir("flowers", 2) == tmp_path / ".jobs" / "flowers.worker2"
    assert store.job_lock_path("flowers") == tmp_path / ".jobs" / "flowers.lock"
    assert store.job_lock_path("flowers", 2) == tmp_path / ".jobs" / "flowers.worker2.lock"


def test_update_labels_writes_beside_the_versions(tmp_path):
    store = ModelStore(tmp_path)
    move = LabelMove(at="2026-01-01T00:00:00.000Z", label="stable", version=1, action="set")
    with pytest.raises(ModelNotFound, match="No model named 'flowers'"):
        store.update_labels("flowers", lambda labels: labels.moved(move))
    published(store)
    store.update_labels("flowers", lambda labels: labels.moved(move))
    saved = json.loads((tmp_path / "flowers" / "labels.json").read_text())
    assert saved["labels"] == {"stable": 1}
    assert store.labels("flowers").version_of("stable") == 1


def test_queue_paths_are_the_documented_layout(tmp_path):
    paths = QueuePaths(tmp_path)
    job = "20260101-120000-a1b2c3"
    assert paths.root == tmp_path / ".queue"
    assert paths.record(job) == tmp_path / ".queue" / job / "job.json"
    assert paths.log(job) == tmp_path / ".queue" / job / "log.txt"
    assert paths.dataset(job) == tmp_path / ".queue" / job / "dataset"
    assert paths.state_owned(job) == tmp_path / ".queue" / job / "state-owned"
    assert (paths.lock, paths.runner_lock) == (
        tmp_path / ".queue" / ".lock",
        tmp_path / ".queue" / ".runner.lock",
    )


def test_the_queue_checks_job_ids_before_building_paths(tmp_path):
    queue = JobQueue(tmp_path)
    for accessor in (queue.log_path, queue.dataset_dir, queue.owns_state, queue.folder):
        with pytest.raises(UnknownJob):
            accessor("../../etc")
    job_id, _ = queue.reserve()
    assert not queue.owns_state(job_id)
    queue.mark_state_owned(job_id)
    assert queue.owns_state(job_id)


def test_progress_records_by_phase(tmp_path):
    assert epochs_file("head") == "epochs_head.json" and PROGRESS_FILE == "progress.json"
    (tmp_path / epochs_file("head")).write_text(json.dumps([{"loss": 1.0}]))
    (tmp_path / epochs_file("fine_tune")).write_text(json.dumps([{"loss": 0.5}]))
    (tmp_path / epochs_file("broken")).write_text("{not json")
    (tmp_path / epochs_file("odd")).write_text('{"not": "a list"}')
    progress = JobProgress(tmp_path)
    assert progress.by_phase() == {"head": [{"loss": 1.0}], "fine_tune": [{"loss": 0.5}]}
    assert JobProgress(tmp_path / "missing").by_phase() == {}
    assert progress.epochs("head") == [{"loss": 1.0}] and progress.epochs("odd") == []


def test_progress_is_written_and_read_through_job_progress(tmp_path):
    progress = JobProgress(tmp_path)
    assert not progress.started() and progress.phases() == {"done": [], "history": []}
    progress.record_epochs("fine_tune", [{"loss": 0.5}])
    progress.record_epochs("head", [{"loss": 1.0}, {"loss": float("nan")}])
    progress.record_epochs("other", [{"loss": 2.0}, "not a row"])
    assert progress.started()
    shown = [(row["phase"], row["epoch"], row["loss"]) for row in progress.rows()]
    assert shown == [("head", 1, 1.0), ("head", 2, None), ("fine_tune", 1, 0.5), ("other", 1, 2.0)]
    progress.record_phases(["head"], [{"phase": "head", "epoch": 1}])
    assert progress.phases() == {"done": ["head"], "history": [{"phase": "head", "epoch": 1}]}
