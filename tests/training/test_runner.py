"""The job runner (training.jobs.runner, training.jobs.runner_child): its loop with a fake
launcher (progress, cancel, a child that dies, stop and resume), the child's config
and outcome, the local launcher's processes, the gunicorn hooks that start it, and
two real jobs: one run to the end, one whose runner is killed in the middle."""

from __future__ import annotations

import json
import logging
import os
import re
import runpy
import signal
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

import service
import training.jobs
from models.errors import ConfigError, OperationalError
from models.jobqueue.job_runner import runner_argv
from models.jobqueue.jobs import DATASET_DIR, InvalidOptions, Job, JobQueue, Outcome, RunnerBusy
from models.store import ModelStore
from models.store.progress import JobProgress
from tests.support.data import make_colour_dataset
from tests.support.tiny import publish_metadata_only
from training.jobs import runner_child
from training.jobs.runner import (
    LocalLauncher,
    Runner,
    build_parser,
    describe_status,
    main,
    make_launcher,
)
from training.jobs.runner_child import job_config, run_child

TINY = {
    "backbone": "smallcnn",
    "weights": "none",
    "image_size": 32,
    "batch_size": 8,
    "augment": False,
}
CONF = Path(service.__file__).parent / "gunicorn.conf.py"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    (tmp_path / "store").mkdir()
    return tmp_path / "store"


def submit(store: Path, name: str = "flowers", dataset: bool = False, **options) -> Job:
    queue = JobQueue(store)
    job_id, folder = queue.reserve()
    data = folder / DATASET_DIR
    if dataset:
        make_colour_dataset(data)
    else:
        data.mkdir()
    return queue.submit(
        job_id, options={"name": name, **options}, data=data, source="upload", limit=8
    )


def interrupted_state(store: Path, name: str, rows: int = 1) -> Path:
    """State of a job of ``name`` that finished ``rows`` epochs, as training.jobs.state keeps it."""
    root = ModelStore(store).job_dir(name)
    root.mkdir(parents=True)
    (root / "config.json").write_text("{}")
    epochs = [{"phase": "scratch", "epoch": i + 1, "loss": 1.0 / (i + 1)} for i in range(rows)]
    (root / "epochs_scratch.json").write_text(json.dumps(epochs))
    (root.parent / f"{name}.lock").touch()
    return root


Step = Callable[[Job], "int | None"]  # gets the job last started


class FakeLauncher:
    """Each poll runs the next step (what the child did meanwhile) and answers its
    status; without steps left the child runs on; once stopped it has ended."""

    kind = "fake"

    def __init__(self, *steps: Step):
        self.steps = list(steps)
        self.started: list[Job] = []
        self.stopped: list[str] = []

    def start(self, job: Job) -> str:
        self.started.append(job)
        return f"handle-{len(self.started)}"

    def poll(self, handle: str) -> int | None:
        if handle in self.stopped:
            return -signal.SIGTERM
        return self.steps.pop(0)(self.started[-1] if self.started else None) if self.steps else None

    def stop(self, handle: str) -> None:
        self.stopped.append(handle)

    def alive(self, handle: str) -> bool:
        return False


def running(job: Job) -> int | None:
    return None


def runner_for(store: Path, launcher) -> Runner:
    return Runner(store, launcher, poll=0.01, log=lambda message: None)


def report(store: Path, job: Job, state: str = "succeeded", **fields) -> int:
    """What a child does when it ends: report its outcome (never write the record)."""
    JobQueue(store).report_outcome(job.id, Outcome(state, **fields))
    return 0 if state == "succeeded" else 1


def test_a_job_the_child_finished_keeps_its_outcome(store):
    job = submit(store)
    rows = [{"phase": "head", "epoch": 1, "loss": 0.5}]

    def succeed(job: Job) -> int:
        assert JobQueue(store).get(job.id).state == "running"
        return report(store, job, version=3, epochs=rows)

    launcher = FakeLauncher(running, succeed)
    assert runner_for(store, launcher).serve(once=True) == 0
    done = JobQueue(store).get(job.id)
    assert (done.state, done.version, done.attempts) == ("succeeded", 3, 1)
    assert (done.epochs, done.phase, done.epoch) == (rows, "head", 1), "the outcome's epochs"
    assert done.runner == {"kind": "fake", "pid": None, "k8s_job": "handle-1"}
    assert "starting attempt 1" in JobQueue(store).log_tail(job.id)[0]


def test_finished_epochs_are_copied_into_the_record_in_phase_order(store):
    job = submit(store)
    root = ModelStore(store).job_dir("flowers")
    root.mkdir(parents=True)
    seen: list[list[dict]] = []

    def epoch(phase: str, rows: list[dict]) -> Step:
        def step(job: Job) -> None:
            seen.append(JobQueue(store).get(job.id).epochs)
            (root / f"epochs_{phase}.json").write_text(json.dumps(rows))

        return step

    head = [
        {"phase": "head", "epoch": 1, "loss": 0.9},
        {"phase": "head", "epoch": 2, "loss": float("nan")},
    ]
    launcher = FakeLauncher(
        epoch("head", head[:1]),
        epoch("head", head),
        epoch("fine_tune", [{"loss": 0.5}]),
        running,
        lambda job: 1,
    )
    runner_for(store, launcher).serve(once=True)
    done = JobQueue(store).get(job.id)
    assert seen[1] == [{"phase": "head", "epoch": 1, "loss": 0.9}]
    assert [(r["phase"], r["epoch"], r["loss"]) for r in done.epochs] == [
        ("head", 1, 0.9),
        ("head", 2, None),
        ("fine_tune", 1, 0.5),
    ]
    assert (done.phase, done.epoch) == ("fine_tune", 1)
    assert done.state == "failed", "the child ended without recording an outcome"


def test_epoch_rows_order_the_phases_as_a_job_trains_them(tmp_path):
    for phase in ("fine_tune", "head", "other"):
        (tmp_path / f"epochs_{phase}.json").write_text(json.dumps([{"epoch": 1}]))
    (tmp_path / "epochs_broken.json").write_text("{not json")
    assert [row["phase"] for row in JobProgress(tmp_path).rows()] == ["head", "fine_tune", "other"]
    assert JobProgress(tmp_path / "missing").rows() == []


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (3, "the training process ended with status 3; see the log"),
        (-9, "killed by SIGKILL (out of memory?)"),
        (0, "ended with status 0"),
    ],
)
def test_a_child_that_ends_without_an_outcome_fails_the_job(store, status, message):
    job = submit(store)
    JobQueue(store).mark_state_owned(job.id)
    root = interrupted_state(store, "flowers")
    runner_for(store, FakeLauncher(lambda job: status)).serve(once=True)
    done = JobQueue(store).get(job.id)
    assert done.state == "failed" and message in done.error
    assert message in JobQueue(store).log_tail(job.id)[-1]
    assert not root.exists() and not (root.parent / "flowers.lock").exists(), "its own state goes"
    assert not JobQueue(store).dataset_dir(job.id).exists()


def test_a_job_killed_after_publishing_is_not_trained_again(store):
    job = submit(store)
    started = JobQueue(store).claim("fake")  # a runner that died after its child published
    assert started is not None
    publish_metadata_only(
        store, "flowers", created_at="2000-01-01T00:00:00Z", training={"data": job.data}
    )  # an older version: not this job's
    version = publish_metadata_only(
        store, "flowers", created_at="2999-01-01T00:00:00Z", training={"data": job.data}
    )
    runner_for(store, FakeLauncher(lambda job: -9)).serve(once=True)
    done = JobQueue(store).get(job.id)
    assert (done.state, done.version) == ("succeeded", version)


def test_cancelling_a_running_job_stops_it_and_removes_its_state(store):
    job = submit(store)
    queue = JobQueue(store)

    def train_then_cancel(job: Job) -> None:
        queue.mark_state_owned(job.id)
        interrupted_state(store, "flowers", rows=2)
        queue.cancel(job.id)

    launcher = FakeLauncher(train_then_cancel)
    runner_for(store, launcher).serve(once=True)
    done = queue.get(job.id)
    assert launcher.stopped == ["handle-1"]
    assert done.state == "cancelled" and len(done.epochs) == 2
    assert not ModelStore(store).job_dir("flowers").exists()
    assert not (store / ".jobs" / "flowers.lock").exists()
    assert "nothing was published" in queue.log_tail(job.id)[-1]
    assert ModelStore(store).versions("flowers") == []


def test_cancel_leaves_state_the_job_did_not_make(store):
    job = submit(store)
    root = interrupted_state(store, "flowers")  # a `ktl train` of the same name
    launcher = FakeLauncher(lambda job: JobQueue(store).cancel(job.id) and None)
    runner_for(store, launcher).serve(once=True)
    assert JobQueue(store).get(job.id).state == "cancelled"
    assert (root / "epochs_scratch.json").is_file()


def test_a_job_cancelled_while_no_runner_ran_is_not_started(store):
    job = submit(store)
    queue = JobQueue(store)
    queue.claim("fake")
    queue.cancel(job.id)  # running: only asked to stop
    launcher = FakeLauncher()
    runner_for(store, launcher).serve(once=True)
    assert launcher.started == [] and queue.get(job.id).state == "cancelled"


def test_a_stopped_runner_leaves_its_job_running_and_the_next_one_resumes_it(store):
    job = submit(store)
    first = runner_for(store, FakeLauncher())
    first.launcher.steps = [lambda job: first.stop()]  # SIGTERM while the job runs
    assert first.serve(once=False) == 0
    assert first.launcher.stopped == ["handle-1"]
    left = JobQueue(store).get(job.id)
    assert (left.state, left.attempts) == ("running", 1)

    launcher = FakeLauncher(lambda job: report(store, job, version=1))
    runner_for(store, launcher).serve(once=True)
    assert launcher.started[0].attempts == 2
    assert "starting attempt 2 (resumed)" in JobQueue(store).log_tail(job.id)[-1]


def test_a_job_still_running_from_a_dead_runner_is_followed_not_started(store):
    job = submit(store)
    queue = JobQueue(store)
    queue.claim("fake")
    queue.update(job.id, runner={"kind": "fake", "pid": None, "k8s_job": "old"})
    launcher = FakeLauncher(lambda _: report(store, job, version=1))
    launcher.alive = lambda handle: handle == "old"  # type: ignore[method-assign]
    runner_for(store, launcher).serve(once=True)
    assert launcher.started == [] and queue.get(job.id).state == "succeeded"


def test_a_job_that_cannot_start_fails_and_the_runner_goes_on(store):
    first, second = submit(store, "one"), submit(store, "two")

    class Broken(FakeLauncher):
        def start(self, job: Job) -> str:
            if job.id == first.id:
                raise OperationalError("no Kubernetes API to submit jobs to")
            return super().start(job)

    launcher = Broken(lambda job: report(store, job, version=1))
    runner_for(store, launcher).serve(once=True)
    failed = JobQueue(store).get(first.id)
    assert failed.state == "failed" and "no Kubernetes API" in failed.error
    assert JobQueue(store).get(second.id).state == "succeeded"


def test_one_runner_per_store(store, monkeypatch, capsys):
    handlers: list[int] = []
    monkeypatch.setattr(signal, "signal", lambda signum, handler: handlers.append(signum))
    with JobQueue(store).runner_lock():
        with pytest.raises(RunnerBusy):
            runner_for(store, FakeLauncher()).serve(once=True)
        assert main(["--store", str(store), "--once"]) == 1
        assert "Another job runner is already running" in capsys.readouterr().err
    assert main(["--store", str(store), "--once", "--poll", "0.01"]) == 0
    assert set(handlers) == {signal.SIGTERM, signal.SIGINT}


def test_the_launcher_is_chosen_by_ktl_job_runner(store, monkeypatch):
    assert isinstance(make_launcher(store), LocalLauncher)
    with pytest.raises(ConfigError, match="KTL_JOB_RUNNER='docker'"):
        make_launcher(store, "docker")
    monkeypatch.setitem(sys.modules, "training.jobs.kube", None)  # not installed
    # and not imported by an earlier test either (the package keeps a loaded submodule)
    monkeypatch.delattr(training.jobs, "kube", raising=False)
    with pytest.raises(ConfigError, match="needs training.jobs.kube"):
        make_launcher(store, "kubernetes")
    monkeypatch.setenv("KTL_JOB_NICE", "25")
    with pytest.raises(ConfigError, match="KTL_JOB_NICE='25'"):
        make_launcher(store, "local")


def test_describe_status_names_the_signal():
    assert "SIGTERM" in describe_status(-15) and "out of memory" not in describe_status(-15)
    assert describe_status(2).endswith("status 2; see the log")


# --- the child ----------------------------------------------------------------------------


def test_options_data_and_store_make_the_config(store):
    job = submit(store, epochs=3, lr="auto", backbone="smallcnn", promote=True)
    config = job_config(JobQueue(store), job, store)
    assert (config.name, config.data, config.store) == ("flowers", job.data, str(store))
    assert (config.epochs, config.lr, config.promote) == (3, "auto", True)
    assert not config.resume and not config.restart
    assert config.confine_to_data, "a link out of the job's folder is not followed"
    assert JobQueue(store).owns_state(job.id), "its state is its own now"


def test_a_record_with_options_http_refuses_fails_the_check_again(store):
    job = submit(store)
    job = JobQueue(store).update(job.id, options={"name": "flowers", "cache_dir": "/etc"})
    with pytest.raises(InvalidOptions, match="cache_dir"):
        job_config(JobQueue(store), job, store)


def test_a_later_attempt_resumes_only_state_the_job_made(store):
    job = submit(store)
    queue = JobQueue(store)
    queue.claim("fake")
    again = queue.claim("fake")  # the runner died: claimed again
    assert again is not None and again.attempts == 2
    interrupted_state(store, "flowers")
    with pytest.raises(ConfigError, match=r"not this one is waiting.*phase scratch: 1 epochs"):
        job_config(queue, again, store)  # a `ktl train`'s, not this job's
    queue.mark_state_owned(job.id)  # the first attempt trained
    assert job_config(queue, again, store).resume


def test_the_first_attempt_never_takes_over_an_interrupted_ktl_train(store):
    job = submit(store)
    root = interrupted_state(store, "flowers")
    with pytest.raises(ConfigError, match=r"ktl train --resume.*another name"):
        job_config(JobQueue(store), job, store)
    assert (root / "epochs_scratch.json").is_file()
    assert not JobQueue(store).owns_state(job.id)


def test_a_name_being_trained_elsewhere_is_refused(store):
    import fcntl

    job = submit(store)
    lock_path = ModelStore(store).job_lock_path("flowers")
    lock_path.parent.mkdir(parents=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(ConfigError, match="another training job for 'flowers' is running"):
            job_config(JobQueue(store), job, store)


@pytest.fixture
def fake_training(monkeypatch):
    """``training.job`` replaced: ``calls`` gets each config, ``outcome`` says what to do."""
    calls: list = []
    fake = types.ModuleType("training.job")
    fake.outcome = lambda config: SimpleNamespace(version=7)  # type: ignore[attr-defined]

    def run_job(config, log):
        calls.append(config)
        log("training ...")
        return fake.outcome(config)  # type: ignore[attr-defined]

    fake.run_job = run_job  # type: ignore[attr-defined]
    fake.calls = calls  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "training.job", fake)
    monkeypatch.setattr(runner_child.signal, "signal", lambda *args: None)
    return fake


class InProcessLauncher(FakeLauncher):
    """Runs the child in this process when started."""

    def __init__(self, store: Path):
        super().__init__()
        self.store, self.status = store, 0

    def start(self, job: Job) -> str:
        super().start(job)
        self.status = run_child(job.id, str(self.store))
        return "child"

    def poll(self, handle: str) -> int | None:
        return self.status


def test_a_job_resumed_after_a_restart_asks_build_config_to_resume(store, fake_training):
    job = submit(store, **TINY)
    queue = JobQueue(store)
    queue.claim("fake")  # attempt 1 started, trained, and its runner died
    queue.mark_state_owned(job.id)
    runner_for(store, InProcessLauncher(store)).serve(once=True)
    (config,) = fake_training.calls
    assert config.resume and not config.restart
    done = queue.get(job.id)
    assert (done.state, done.version, done.attempts) == ("succeeded", 7, 2)
    log = queue.log_tail(job.id, 50)
    assert any("(attempt 2)" in line for line in log) and "training ..." in log


def test_a_failing_job_records_its_message_and_leaves_no_state(store, fake_training):
    job = submit(store, **TINY)

    def fail(config):
        interrupted_state(store, "flowers", rows=2)
        raise ConfigError("--image-size 16 is out of range")

    fake_training.outcome = fail
    runner_for(store, InProcessLauncher(store)).serve(once=True)
    done = JobQueue(store).get(job.id)
    assert (done.state, done.error) == ("failed", "--image-size 16 is out of range")
    assert not ModelStore(store).job_dir("flowers").exists()
    assert "Traceback" not in "\n".join(JobQueue(store).log_tail(job.id, 50))


def test_a_bug_in_a_job_leaves_its_traceback_in_the_log(store, fake_training):
    job = submit(store, **TINY)
    fake_training.outcome = lambda config: 1 / 0
    assert run_child(JobQueue(store).claim("fake").id, str(store)) == 1  # type: ignore[union-attr]
    outcome = JobQueue(store).outcome(job.id)
    assert outcome is not None and outcome.state == "failed"
    assert "ZeroDivisionError" in str(outcome.error)
    assert JobQueue(store).get(job.id).state == "running", "the runner records it, not the child"
    assert "Traceback (most recent call last):" in JobQueue(store).log_tail(job.id, 50)


def test_an_interrupted_child_leaves_the_job_running(store, fake_training):
    job = submit(store, **TINY)

    def interrupted(config):
        raise KeyboardInterrupt

    fake_training.outcome = interrupted
    assert run_child(JobQueue(store).claim("fake").id, str(store)) == 130  # type: ignore[union-attr]
    assert JobQueue(store).get(job.id).state == "running"
    assert JobQueue(store).outcome(job.id) is None, "nothing to report: the next runner resumes"


def test_the_child_never_writes_the_record_and_reports_its_last_epochs(store, fake_training):
    job = submit(store, **TINY)
    queue = JobQueue(store)
    claimed = queue.claim("fake")
    assert claimed is not None
    record = queue.paths.record(job.id)
    before = (record.read_bytes(), record.stat().st_mtime_ns)
    rows = [{"loss": 0.5}, {"loss": 0.25}]

    def trains_then_publishes(config):
        progress = JobProgress(ModelStore(store).job_dir("flowers"))
        progress.root.mkdir(parents=True)
        progress.record_epochs("scratch", rows)
        fake_training.calls[-1] = config
        return SimpleNamespace(version=7)

    def run_job(config, log):  # epochs recorded, a line logged, then the state goes
        fake_training.calls.append(config)
        trains_then_publishes(config)
        log("Published flowers version 7")
        ModelStore(store).job_dir("flowers").joinpath("epochs_scratch.json").unlink()
        return SimpleNamespace(version=7)

    fake_training.run_job = run_job
    assert run_child(claimed.id, str(store)) == 0
    assert (record.read_bytes(), record.stat().st_mtime_ns) == before, "only the runner writes"
    outcome = queue.outcome(job.id)
    assert outcome is not None and (outcome.state, outcome.version) == ("succeeded", 7)
    assert [(r["phase"], r["epoch"], r["loss"]) for r in outcome.epochs] == [
        ("scratch", 1, 0.5),
        ("scratch", 2, 0.25),
    ]
    runner_for(store, FakeLauncher(lambda job: 0)).serve(once=True)
    done = queue.get(job.id)
    assert (done.state, done.version, done.phase, done.epoch) == ("succeeded", 7, "scratch", 2)


def test_no_module_of_training_but_the_runner_writes_a_job_record():
    """The record's writes are the queue's methods (or its record file's path); only
    training/jobs/runner.py calls them. The child reports through ``report_outcome``."""
    methods = "finish|update|record_progress|claim|submit|cancel|_write"
    writes = re.compile(rf"queue\.({methods})\(|paths\.record\(|JOB_RECORD")
    package = Path(training.__file__).parent
    writers = {
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if writes.search(path.read_text())
    }
    assert writers == {"jobs/runner.py"}


def test_an_outcome_left_by_a_runner_that_died_is_recorded_without_training_again(store):
    job = submit(store)
    queue = JobQueue(store)
    queue.claim("fake")
    queue.report_outcome(job.id, Outcome("failed", error="out of disk"))  # then the runner died
    launcher = FakeLauncher()
    runner_for(store, launcher).serve(once=True)
    done = queue.get(job.id)
    assert launcher.started == [] and (done.state, done.error) == ("failed", "out of disk")


def test_a_job_that_ended_as_it_was_cancelled_keeps_its_outcome(store):
    job = submit(store)
    queue = JobQueue(store)

    def publish_then_cancelled(job: Job) -> None:
        report(store, job, version=5)
        queue.cancel(job.id)  # before the runner saw the child end

    runner_for(store, FakeLauncher(publish_then_cancelled)).serve(once=True)
    assert (queue.get(job.id).state, queue.get(job.id).version) == ("succeeded", 5)


# --- real processes -----------------------------------------------------------------------


def gone(pid: int) -> bool:
    """The process has ended (a zombie nobody reaped counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.1)


SLEEPER = (
    "import os, time; e = os.environ\n"
    "print('nice', os.nice(0), 'threads', e['TF_NUM_INTRAOP_THREADS'], e['TF_NUM_INTEROP_THREADS'],"
    " e['OMP_NUM_THREADS'], 'leader', os.getpgid(0) == os.getpid(), flush=True)\n"
    "time.sleep(120)\n"
)


class Sleeper(LocalLauncher):
    """The local launcher with a child that reports its settings and sleeps."""

    def command(self, job: Job) -> list[str]:
        return [sys.executable, "-c", SLEEPER, "--run-job", job.id, "--store", str(self.store)]


def test_the_local_child_is_niced_capped_logged_and_stopped_with_its_group(store, monkeypatch):
    monkeypatch.setenv("KTL_JOB_NICE", "5")
    monkeypatch.setenv("KTL_JOB_THREADS", "3")
    job = submit(store)
    log = JobQueue(store).log_path(job.id)
    log.write_text("earlier line\n")
    launcher = Sleeper(store, grace=2.0)
    handle = launcher.start(job)
    wait_for(lambda: "leader" in log.read_text(), 20, "the child's first line")
    expected = f"nice {min(19, os.nice(0) + 5)} threads 3 2 3 leader True"
    assert log.read_text().splitlines() == ["earlier line", expected]
    assert launcher.alive(handle) and launcher.poll(handle) is None
    assert not launcher.alive(str(os.getpid())), "not a training process of this store"
    launcher.stop(handle)
    assert launcher.poll(handle) == -signal.SIGTERM and not launcher.alive(handle)
    launcher.stop(handle)  # idempotent


PARENT = (
    "import sys\nfrom pathlib import Path\n"
    "from models.jobqueue.jobs import JobQueue\n"
    "from tests.training.test_runner import Sleeper\n"
    "store = Path(sys.argv[1])\n"
    "print(Sleeper(store).start(JobQueue(store).get(sys.argv[2])), flush=True)\n"
    "import time; time.sleep(120)\n"
)


def test_the_local_child_dies_with_its_runner(store):
    job = submit(store)
    with subprocess.Popen(
        [sys.executable, "-c", PARENT, str(store), job.id],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    ) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert not gone(child)
        parent.kill()
    wait_for(lambda: gone(child), 10, "the child to die with its parent (PR_SET_PDEATHSIG)")


@pytest.fixture
def gunicorn_settings(store, monkeypatch):
    for name in ("KTL_TRAIN_KEYS", "KTL_JOB_RUNNER", "KTL_TRAINING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KTL_MODEL_STORE", str(store))

    def load(**env: str) -> dict:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return runpy.run_path(str(CONF))

    return load


def test_gunicorn_starts_the_runner_when_training_is_on_and_stops_it(
    store, gunicorn_settings, caplog
):
    settings = gunicorn_settings(KTL_TRAINING="open")
    server = SimpleNamespace(log=logging.getLogger("ktl.test"))
    with caplog.at_level(logging.INFO, "ktl.test"):
        settings["when_ready"](server)
        (runner,) = settings["_runner"]
        try:
            wait_for(lambda: _runner_holds_lock(store), 20, "the runner to take its lock")
            assert f"job runner (pid {runner.pid}" in caplog.text
        finally:
            settings["on_exit"](server)
    assert runner.returncode == 0 and settings["_runner"] == []
    assert "Stopped the job runner" in caplog.text


def _runner_holds_lock(store: Path) -> bool:
    try:
        with JobQueue(store).runner_lock():
            return False
    except RunnerBusy:
        return True


@pytest.mark.parametrize("env", [{}, {"KTL_TRAIN_KEYS": "k", "KTL_JOB_RUNNER": "none"}])
def test_gunicorn_starts_no_runner_without_training_or_with_runner_none(gunicorn_settings, env):
    settings = gunicorn_settings(**env)
    settings["when_ready"](SimpleNamespace(log=logging.getLogger("ktl.test")))
    assert settings["_runner"] == []


def test_the_runner_is_started_from_argv_the_runner_parses():
    runner = runner_argv("/srv/store", parent=42)
    assert runner[:3] == [sys.executable, "-m", "training.jobs.runner"]
    args = build_parser().parse_args(runner[3:])
    assert (args.store, args.parent, args.run_job) == ("/srv/store", 42, None)
    child = runner_argv("/srv/store", job_id="20261202-120000-a1b2c3", python="python")
    args = build_parser().parse_args(child[3:])
    assert (child[0], args.store, args.run_job) == ("python", "/srv/store", child[4])
    job = Job("20261202-120000-a1b2c3", "x", {}, ".", "upload")
    local = LocalLauncher("/srv/store").command(job)
    assert local == runner_argv(Path("/srv/store").resolve(), job_id=job.id)


def test_gunicorn_conf_holds_no_command_line_of_the_runner():
    source = CONF.read_text()
    assert "training.jobs.runner" not in source and '"-m"' not in source
    assert "Popen(" not in source and "start_runner(" in source


def test_the_runner_imports_no_tensorflow():
    probe = "import sys, training.jobs.runner; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


# --- real jobs ------------------------------------------------------------------------------


def start_runner(store: Path, *flags: str, cwd: Path, **popen) -> subprocess.Popen:
    command = [sys.executable, "-m", "training.jobs.runner", "--store", str(store), "--poll", "0.2"]
    env = {**os.environ, "KTL_JOB_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    return subprocess.Popen([*command, *flags], cwd=cwd, env=env, **popen)


@pytest.mark.slow
def test_a_real_job_runs_to_its_published_version(store, tmp_path):
    job = submit(store, dataset=True, epochs=2, **TINY)
    runner = start_runner(store, "--once", cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    _, stderr = runner.communicate(timeout=300)
    assert runner.returncode == 0, stderr
    done = JobQueue(store).get(job.id)
    assert (done.state, done.version, done.error) == ("succeeded", 1, None)
    assert ModelStore(store).versions("flowers") == [1]
    assert [(row["phase"], row["epoch"]) for row in done.epochs] == [("scratch", 1), ("scratch", 2)]
    assert {"loss", "val_loss"} <= done.epochs[-1].keys()
    log = (JobQueue(store).log_path(job.id)).read_text()
    assert "Phase scratch" in log and "succeeded: published flowers version 1" in log
    assert log.count("Decoding") == 1, "each line once"
    assert not Path(job.data).exists() and not ModelStore(store).job_dir("flowers").exists()
    assert f"job {job.id} (flowers) succeeded" in stderr
