"""The store's one atomic writer: temporary file in the same folder, fsync, rename,
fsync the folder; a failure leaves the old file and no temporary. Every record of the
store (labels, metadata, job records, a job's state) is written through it."""

from __future__ import annotations

import json
import os
import stat

import pytest

from models.jobqueue.jobs import JobQueue
from models.store import (
    ModelStore,
    write_atomically,
    write_json_atomically,
    write_text_atomically,
)
from models.store.labels import LabelMove, update_labels
from training.jobs.state import JobState


@pytest.fixture
def fsyncs(monkeypatch):
    """What each os.fsync call synced: "file" or "dir"."""
    synced: list[str] = []
    real = os.fsync

    def counting(fd):
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return synced


def test_writes_the_file_and_fsyncs_it_and_its_folder(tmp_path, fsyncs):
    path = tmp_path / "record.json"
    write_json_atomically(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert path.read_text().endswith("}\n")
    assert fsyncs == ["file", "dir"]
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_replaces_an_existing_file_whole(tmp_path, fsyncs):
    path = tmp_path / "note.txt"
    path.write_text("old and longer than the new text")
    write_text_atomically(path, "new")
    assert path.read_text() == "new"
    assert fsyncs == ["file", "dir"]


@pytest.mark.parametrize("failing", ["fsync", "rename"])
@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failure_mid_write_leaves_the_old_file_and_no_temporary(
    tmp_path, monkeypatch, failing, error
):
    path = tmp_path / "record.json"
    path.write_text('{"old": true}\n')

    def fail(*args):
        raise error

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(type(error)):
        write_json_atomically(path, {"new": True, "padding": "x" * 100_000})
    assert path.read_text() == '{"old": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_a_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(OSError, match="I/O error"):
        write_json_atomically(tmp_path / "record.json", [1, 2, 3])
    assert list(tmp_path.iterdir()) == []


def test_job_records_are_written_durably(tmp_path, fsyncs):
    queue = JobQueue(tmp_path)
    job_id, folder = queue.reserve()
    queue.submit(job_id, options={"name": "flowers"}, data=folder, source="data_root", limit=8)
    assert fsyncs == ["file", "dir"]
    queue.update(job_id, phase="head")
    assert fsyncs == ["file", "dir"] * 2
    assert queue.get(job_id).phase == "head"


def test_a_jobs_state_is_written_durably(tmp_path, fsyncs):
    state = JobState(tmp_path, tmp_path / "pixels.npy")
    state.write("epochs_head.json", [{"loss": 1.0}])
    assert fsyncs == ["file", "dir"]
    assert state.read("epochs_head.json") == [{"loss": 1.0}]


def test_labels_and_metadata_are_written_durably(tmp_path, fsyncs):
    move = LabelMove(at="2026-01-01T00:00:00.000Z", label="stable", version=1, action="set")
    update_labels(tmp_path, lambda labels: labels.moved(move))
    assert fsyncs == ["file", "dir"]
    store = ModelStore(tmp_path / "store")
    staging = store.staging_dir("flowers")
    fsyncs.clear()
    store.publish(staging, "flowers", {"name": "flowers"})
    assert fsyncs[:2] == ["file", "dir"], "metadata.json through the atomic writer"
    assert "dir" in fsyncs[2:], "then the bundle and the store's folder"


def test_a_writer_given_a_temporary_keeps_its_suffix_and_a_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "head.weights.h5"
    path.write_bytes(b"old")
    seen: list[str] = []

    def write(temporary):
        seen.append(temporary.name)
        temporary.write_bytes(b"new")

    write_atomically(path, write)
    assert path.read_bytes() == b"new"
    assert seen[0].endswith(".weights.h5") and seen[0] != path.name

    def cut_off(temporary):
        temporary.write_bytes(b"\x89HDF")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, cut_off)
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["head.weights.h5"]
