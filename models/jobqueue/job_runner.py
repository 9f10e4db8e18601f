"""How the job runner (``training.jobs.runner``) and its training processes are started:
their command lines, built in one place, and the start and stop of a runner beside
gunicorn.

The runner is a process of its own, ``python -m training.jobs.runner``, so that the
service never imports training (and TensorFlow) and a runner can also run on
another machine that mounts the store. Whoever starts one asks here for its argv:
gunicorn's master when training is on (service/gunicorn.conf.py calls
``start_runner``), the local launcher and the Kubernetes Job for each job's
training process (``runner_argv(..., job_id=ID)``). ``training.jobs.runner.main``
parses what this builds (tests/training/test_runner.py checks they agree).
No Flask, no training, no TensorFlow: it names the module, it does not import it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

RUNNER_MODULE = "training.jobs.runner"
# The folder holding the ktl packages: a runner started from any working directory
# imports the same code as its parent.
_ROOT = str(Path(__file__).resolve().parents[2])
STOP_GRACE_S = 10.0


def runner_argv(
    store: str | Path,
    *,
    job_id: str | None = None,
    parent: int | None = None,
    python: str = sys.executable,
) -> list[str]:
    """``python -m training.jobs.runner``: the runner of ``store``; with ``job_id``, that
    job's training process; with ``parent``, a runner that dies with that process."""
    argv = [python, "-m", RUNNER_MODULE]
    if job_id is not None:
        argv += ["--run-job", job_id]
    argv += ["--store", str(store)]
    if parent is not None:
        argv += ["--parent", str(parent)]
    return argv


def with_ktl_path(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with the ktl packages' folder first on ``PYTHONPATH``."""
    path = env.get("PYTHONPATH")
    return {**env, "PYTHONPATH": f"{_ROOT}{os.pathsep}{path}" if path else _ROOT}


def start_runner(store: str | Path) -> subprocess.Popen:
    """Start the runner of ``store`` as a child of this process (gunicorn's master),
    tied to it: it dies with this process, even on SIGKILL (``--parent``,
    PR_SET_PDEATHSIG). ``stop_runner`` stops it."""
    argv = runner_argv(Path(store).resolve(), parent=os.getpid())
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=with_ktl_path(os.environ))


def stop_runner(runner: subprocess.Popen, grace: float = STOP_GRACE_S) -> bool:
    """SIGTERM (its job stops, and resumes when a runner starts again), then SIGKILL
    after ``grace`` seconds; False when it had already ended."""
    if runner.poll() is not None:
        return False
    runner.terminate()
    try:
        runner.wait(grace)
    except subprocess.TimeoutExpired:
        runner.kill()
        runner.wait()
    return True
