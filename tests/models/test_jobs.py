"""The training job queue in the store (models.jobqueue.jobs): records, limits, claims, options."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

import models.jobqueue.jobs
from models.jobqueue.jobs import (
    DATASET_DIR,
    InvalidOptions,
    JobFinished,
    JobQueue,
    Outcome,
    QueueFull,
    RunnerBusy,
    UnknownJob,
    check_options,
)
from models.options import http_options


@pytest.fixture
def queue(tmp_path: Path) -> JobQueue:
    return JobQueue(tmp_path / "store")


def _submit(queue: JobQueue, name: str = "flowers", limit: int = 8, upload: bool = True):
    job_id, folder = queue.reserve()
    (folder / DATASET_DIR / "a").mkdir(parents=True)
    return queue.submit(
        job_id,
        options={"name": name},
        data=folder / DATASET_DIR,
        source="upload" if upload else "data_root",
        limit=limit,
    )


def test_a_submitted_job_is_queued_and_listed_newest_first(queue):
    first = _submit(queue, "one")
    second = _submit(queue, "two")
    assert first.state == "queued" and first.attempts == 0
    assert [job.id for job in queue.jobs()] == [second.id, first.id]
    assert queue.get(first.id).name == "one"
    record = json.loads((queue.root / first.id / "job.json").read_text())
    assert record["options"] == {"name": "one"}


def test_a_reserved_job_is_not_listed_until_submitted(queue):
    job_id, folder = queue.reserve()
    assert folder.is_dir() and queue.jobs() == []
    with pytest.raises(UnknownJob):
        queue.get(job_id)


def test_a_full_queue_refuses_with_its_figures_and_removes_the_folder(queue):
    _submit(queue, limit=1)
    job_id, folder = queue.reserve()
    with pytest.raises(QueueFull) as caught:
        queue.submit(job_id, options={"name": "x"}, data=folder, source="upload", limit=1)
    assert (caught.value.status, caught.value.waiting, caught.value.limit) == (503, 1, 1)
    assert caught.value.headers == {}, "HTTP headers are the service's to add"
    assert "KTL_JOB_QUEUE_SIZE=1" in caught.value.message
    assert not folder.exists()
    assert len(queue.jobs()) == 1


def test_finished_jobs_do_not_count_against_the_limit(queue):
    job = _submit(queue, limit=1)
    queue.finish(job.id, "failed", error="boom")
    assert _submit(queue, limit=1).state == "queued"


@pytest.mark.parametrize("bad", ["../x", "20261202-120000-zzzzzz", "", "a/b", 7])
def test_ids_that_are_not_job_ids_are_unknown_without_touching_paths(queue, bad):
    with pytest.raises(UnknownJob):
        queue.get(bad)


def test_claim_takes_the_oldest_queued_job_and_counts_attempts(queue):
    first, second = _submit(queue, "one"), _submit(queue, "two")
    claimed = queue.claim("local")
    assert claimed.id == first.id and claimed.state == "running"
    assert claimed.attempts == 1 and claimed.started and claimed.runner == {"kind": "local"}
    queue.finish(first.id, "succeeded", version=1)
    assert queue.claim("local").id == second.id
    queue.finish(second.id, "failed", error="x")
    assert queue.claim("local") is None


def test_a_running_job_left_by_a_dead_runner_is_claimed_first_to_resume(queue):
    running = _submit(queue, "one")
    queue.claim("local")
    _submit(queue, "two")
    again = queue.claim("local")  # a new runner after a crash
    assert again.id == running.id and again.attempts == 2


def test_cancel_a_queued_job_at_once_and_its_upload_goes(queue):
    job = _submit(queue)
    cancelled = queue.cancel(job.id)
    assert cancelled.state == "cancelled" and cancelled.finished
    assert not (queue.root / job.id / DATASET_DIR).exists()
    with pytest.raises(JobFinished) as caught:
        queue.cancel(job.id)
    assert caught.value.status == 409


def test_cancel_a_running_job_asks_the_runner(queue):
    job = _submit(queue)
    queue.claim("local")
    asked = queue.cancel(job.id)
    assert asked.state == "running" and asked.cancel_requested


def test_finish_keeps_a_data_root_folder(queue, tmp_path):
    job = _submit(queue, upload=False)
    queue.finish(job.id, "succeeded", version=3)
    assert Path(job.data).is_dir()
    assert queue.get(job.id).version == 3


def test_update_and_log_tail(queue):
    job = _submit(queue)
    queue.update(job.id, phase="head", epoch=2, epochs=[{"phase": "head", "epoch": 1}])
    assert queue.get(job.id).epochs == [{"phase": "head", "epoch": 1}]
    for number in range(30):
        queue.append_log(job.id, f"line {number}")
    assert queue.log_tail(job.id, 3) == ["line 27", "line 28", "line 29"]


def test_the_queue_speaks_no_http():
    source = Path(models.jobqueue.jobs.__file__).read_text()
    for http in ("Retry-After", "GET /", "POST /", "headers="):
        assert http not in source


def test_an_outcome_is_reported_once_and_read_back(queue):
    job = _submit(queue)
    assert queue.outcome(job.id) is None
    rows = [{"phase": "head", "epoch": 1, "loss": 0.5}]
    queue.report_outcome(job.id, Outcome("succeeded", version=3, epochs=rows))
    assert queue.outcome(job.id) == Outcome("succeeded", 3, None, rows)
    assert queue.get(job.id).state == "queued", "an outcome is a report, not the record"
    queue.paths.outcome(job.id).write_text('{"state": "half')
    assert queue.outcome(job.id) is None
    with pytest.raises(AssertionError):
        Outcome("cancelled")


def test_progress_is_recorded_only_when_it_changed(queue):
    job = _submit(queue)
    rows = [{"phase": "head", "epoch": 1}, {"phase": "fine_tune", "epoch": 1}]
    recorded = queue.record_progress(job.id, rows)
    assert (recorded.phase, recorded.epoch, recorded.epochs) == ("fine_tune", 1, rows)
    mtime = queue.paths.record(job.id).stat().st_mtime_ns
    assert queue.record_progress(job.id, rows).epochs == rows
    assert queue.record_progress(job.id, []).epochs == rows, "no rows (state gone) keep them"
    assert queue.paths.record(job.id).stat().st_mtime_ns == mtime


def _hold_runner_lock(root: str, ready, release) -> None:
    with JobQueue(root).runner_lock():
        ready.set()
        release.wait(10)


def test_one_runner_per_store(queue):
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    other = context.Process(target=_hold_runner_lock, args=(str(queue.root.parent), ready, release))
    other.start()
    try:
        assert ready.wait(30)
        with pytest.raises(RunnerBusy), queue.runner_lock():
            pass
    finally:
        release.set()
        other.join(10)
    with queue.runner_lock():
        pass


@pytest.mark.parametrize(
    ("options", "word"),
    [
        ({"name": "x", "store": "/etc"}, "store"),
        ({"name": "x", "cache_dir": "/tmp"}, "cache_dir"),
        ({"name": "x", "tensorboard": "/tmp/tb"}, "tensorboard"),
        ({"name": "x", "resume": True}, "resume"),
        ({"name": "x", "strategy": "multiworker"}, "strategy"),
        ({"name": "x", "ood": "/data"}, "ood"),
        ({"name": "x", "exclude": "/a.csv"}, "exclude"),
        ({"name": "x", "data": "/data"}, "data"),
        ({"name": "x", "weights": "/root/w.h5"}, "weights"),
        ({"name": "x", "weights": "model:../x"}, "weights"),
        ({"name": "x", "epochs": "10"}, "epochs"),
        ({"name": "x", "epochs": True}, "epochs"),
        ({"name": "x", "augment": 1}, "augment"),
        ({"backbone": "vgg16"}, "name"),
        (["name"], "JSON object"),
    ],
)
def test_options_from_http_are_an_allow_list_of_training_settings(options, word):
    with pytest.raises(InvalidOptions, match=word):
        check_options(options)


def test_an_invalid_model_name_is_refused():
    with pytest.raises(InvalidOptions, match="options.name: Invalid model name"):
        check_options({"name": "../../etc"})


def test_good_options_pass_with_dashes_read_as_underscores():
    options = {
        "name": "bees",
        "image-size": 64,
        "lr": "auto",
        "dropout": 0,
        "weights": "model:bees:stable",
        "randaugment": True,
    }
    assert check_options(options) == {
        "name": "bees",
        "image_size": 64,
        "lr": "auto",
        "dropout": 0,
        "weights": "model:bees:stable",
        "randaugment": True,
    }


def test_the_allow_list_is_the_options_marked_for_http():
    """No second list: what HTTP may set is a property of each TrainOptions field, and
    nothing that names a path of the server is among them."""
    allowed = http_options()
    assert {"name", "backbone", "epochs", "seed", "calibrate"} <= set(allowed)
    assert not {"data", "store", "cache_dir", "tensorboard", "ood", "exclude", "relabel"} & set(
        allowed
    )
    assert not {"resume", "restart", "strategy"} & set(allowed)
    for key in allowed:
        with pytest.raises(InvalidOptions, match=f"options.{key}"):
            check_options({"name": "bees", key: ["a list is no option"]})


def test_a_misspelt_option_gets_the_closest_suggestion():
    with pytest.raises(InvalidOptions, match="did you mean 'epochs'"):
        check_options({"name": "bees", "epoch": 3})
    with pytest.raises(InvalidOptions, match="did you mean 'batch_size'"):
        check_options({"name": "bees", "batchsize": 3})


def test_http_checks_every_rule_ktl_train_checks_before_the_job_is_queued():
    with pytest.raises(InvalidOptions, match="options.promote and options.promote_if_better"):
        check_options({"name": "bees", "promote": True, "promote_if_better": True})
    with pytest.raises(InvalidOptions, match="Unknown backbone 'resnt50'.*resnet50"):
        check_options({"name": "bees", "backbone": "resnt50"})


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("lr", float("inf"), "finite"),
        ("lr", float("nan"), "finite"),
        ("fine_tune_lr", float("-inf"), "finite"),
        ("lr", 1e300, "more than 0 and at most 10"),
        ("epochs", 10**400, "from 1 to 10,000"),
        ("image_size", 4, "from 8 to 1,024"),
        ("dropout", 1.5, "at least 0 and less than 1"),
        ("seed", -1, "from 0 to"),
    ],
)
def test_numbers_out_of_range_or_not_finite_are_refused(key, value, says):
    with pytest.raises(InvalidOptions, match=says) as caught:
        check_options({"name": "bees", key: value})
    assert key in caught.value.message
