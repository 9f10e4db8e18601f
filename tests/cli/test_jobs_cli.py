"""``ktl jobs``: list, show, follow and cancel the training jobs of a store."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from cli import main
from cli.commands.jobs import follow
from models.jobqueue.jobs import DATASET_DIR, Job, JobQueue
from tests.support.cli import ktl_here

ROWS = [
    {"phase": "head", "epoch": 1, "loss": 0.9, "accuracy": 0.5, "val_loss": 0.8},
    {"phase": "head", "epoch": 2, "loss": 0.4, "accuracy": 0.9, "val_loss": None},
]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    (tmp_path / "store").mkdir()
    return tmp_path / "store"


def submit(store: Path, name: str = "flowers") -> Job:
    queue = JobQueue(store)
    job_id, folder = queue.reserve()
    (folder / DATASET_DIR).mkdir()
    return queue.submit(
        job_id,
        options={"name": name, "epochs": 2},
        data=folder / DATASET_DIR,
        source="upload",
        limit=8,
    )


def succeeded(store: Path, name: str = "flowers") -> Job:
    queue = JobQueue(store)
    job = submit(store, name)
    queue.claim("local")
    queue.update(job.id, epochs=ROWS, phase="head", epoch=2)
    queue.append_log(job.id, "Phase head: up to 2 epochs")
    return queue.finish(job.id, "succeeded", version=4)


def test_the_list_shows_every_job_newest_first(store, capsys):
    done, queued = succeeded(store, "bees"), submit(store, "wasps")
    assert main(["jobs", "--store", str(store)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "name", "state", "phase", "epoch", "version", "created"]
    assert lines[1].split()[:6] == [queued.id, "wasps", "queued", "-", "-", "-"]
    assert lines[2].split()[:6] == [done.id, "bees", "succeeded", "head", "2", "4"]

    assert main(["jobs", "--store", str(store), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [job["id"] for job in listed] == [queued.id, done.id]
    assert listed[1]["epochs"] == ROWS


def test_an_empty_store_says_how_jobs_come(store, capsys):
    assert main(["jobs", "--store", str(store)]) == 0
    assert "No training job" in capsys.readouterr().out


def test_one_job_shows_its_epochs_outcome_and_log(store, capsys):
    job = succeeded(store)
    assert main(["jobs", job.id, "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert f"job       {job.id}" in out and "state     succeeded" in out
    assert "version   4" in out and "options   epochs=2" in out
    assert "head epoch 1: loss 0.9, accuracy 0.5, val_loss 0.8" in out
    assert "head epoch 2: loss 0.4, accuracy 0.9, val_loss None" in out
    assert "  Phase head: up to 2 epochs" in out

    assert main(["jobs", job.id, "--store", str(store), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 4 and shown["log"] == ["Phase head: up to 2 epochs"]


def test_following_a_finished_job_prints_its_epochs_then_its_end(store, capsys):
    job = succeeded(store)
    assert main(["jobs", job.id, "--follow", "--store", str(store)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "  head epoch 1: loss 0.9, accuracy 0.5, val_loss 0.8",
        "  head epoch 2: loss 0.4, accuracy 0.9, val_loss None",
        f"Job {job.id}: succeeded, published flowers version 4",
    ]


def test_following_a_running_job_prints_each_change_until_it_fails(store, capsys):
    queue = JobQueue(store)
    job = submit(store)

    def train() -> None:
        for change in (
            lambda: queue.claim("local"),
            lambda: queue.update(job.id, epochs=ROWS[:1]),
            lambda: queue.update(job.id, epochs=ROWS),
            lambda: queue.finish(job.id, "failed", error="out of memory"),
        ):
            time.sleep(0.4)  # longer than a look at the record (0.25 s)
            change()

    trainer = threading.Thread(target=train)
    trainer.start()
    try:
        assert follow(queue, job.id, as_json=True, wait=5) == 1
    finally:
        trainer.join()
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["event"], e.get("state"), e.get("epoch")) for e in events] == [
        ("state", "queued", None),
        ("state", "running", None),
        ("epoch", None, 1),
        ("epoch", None, 2),
        ("state", "failed", None),
    ]
    assert events[-1]["error"] == "out of memory" and "epochs" not in events[-1]


def test_cancelling_a_queued_job(store, capsys):
    job = submit(store)
    assert main(["jobs", job.id, "--cancel", "--store", str(store)]) == 0
    assert f"Job {job.id} cancelled" in capsys.readouterr().err
    assert JobQueue(store).get(job.id).state == "cancelled"
    assert main(["jobs", job.id, "--cancel", "--store", str(store)]) == 2
    assert "has already cancelled" in capsys.readouterr().err


def test_cancelling_a_running_job_asks_the_runner(store, capsys):
    job = submit(store)
    JobQueue(store).claim("local")
    assert main(["jobs", job.id, "--cancel", "--store", str(store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cancel_requested"] is True
    assert main(["jobs", "--store", str(store)]) == 0
    assert "cancelling" in capsys.readouterr().out


def test_an_unknown_job_or_store_is_a_usage_error(store, tmp_path):
    result = ktl_here("jobs", "20990101-000000-abcdef", "--store", str(store))
    assert result.returncode == 2 and "No job '20990101-000000-abcdef'" in result.stderr
    assert main(["jobs", "not-an-id", "--store", str(store)]) == 2
    assert main(["jobs", "--store", str(tmp_path / "nowhere")]) == 2
    assert main(["jobs", "--follow", "--store", str(store)]) == 2
