"""Gunicorn settings for ``gunicorn -c service/gunicorn.conf.py 'service.app:create_app()'``.

Runs from any working directory. Settings come from the ``KTL_*`` variables
(see service/config.py); a bad value stops the start with a message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# The folder holding the ``service`` package, so this file and the app (workers
# are forked from here and inherit sys.path) import from any working directory.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from models.errors import ConfigError  # noqa: E402
from models.jobqueue.job_runner import start_runner, stop_runner  # noqa: E402
from models.store.location import is_remote  # noqa: E402
from service.config import ServiceConfig  # noqa: E402

try:
    _config = ServiceConfig.from_env()
    _config.check_grpc()
except ConfigError as exc:
    print(f"ktl serve: {exc}", file=sys.stderr)
    sys.exit(2)

bind = [f"{_config.host}:{_config.port}"]
worker_class = "gthread"
workers = _config.workers
threads = _config.threads
# Workers load the app (and TensorFlow) after the fork: TensorFlow is not fork-safe.
preload_app = False
# Generous, because a worker loads and warms up every model before it answers.
timeout = 120
graceful_timeout = 30
keepalive = 5
accesslog = "-"
errorlog = "-"
logger_class = "service.gunicorn_logger.JsonLogger"
# gunicorn's control socket (gunicornc) is not used; it would need a writable $HOME.
control_socket_disable = True


def when_ready(server) -> None:
    """Say where the service is: the page to open, and the store it serves."""
    everywhere = _config.host in ("0.0.0.0", "::")
    shown = "127.0.0.1" if everywhere else _config.host
    where = f"every interface, port {_config.port}" if everywhere else "this address"
    server.log.info(
        "ktl serves the models of %s on %s: open http://%s:%d/ in a browser "
        "(the API is under /v1 and /v2; /openapi.json describes it)",
        _shown_store(),
        where,
        shown,
        _config.port,
    )
    if not _config.host.startswith("127.") and _config.host not in ("localhost", "::1"):
        server.log.info(
            "Clients of the network reach gunicorn directly unless a buffering proxy is in "
            "front (compose's proxy, a Kubernetes Ingress): without one, clients that stall "
            "halfway through a request tie up the request threads. Ship-ready nginx "
            "settings: deploy/nginx/ktl.conf (docs/operations.md)"
        )
    _start_job_runner(server)


# The training job runner beside gunicorn (models.jobqueue.job_runner starts it), when
# training is on.
_runner: list[subprocess.Popen] = []


def _start_job_runner(server) -> None:
    """Start the store's job runner as a child of the master when training is on
    (KTL_TRAINING=open or KTL_TRAIN_KEYS) and KTL_JOB_RUNNER is not none. It runs the
    queued jobs one at a time and dies with the master; ``on_exit`` stops it. A process
    of its own (``models.jobqueue.job_runner.start_runner``): the service never imports training."""
    if not _config.training_enabled or _config.job_runner == "none" or _runner:
        return
    if is_remote(_config.model_store):
        server.log.warning(
            "Training is on but the store %s is in object storage: the job queue stays on "
            "a local or shared disk (docs/scaling-out.md), so no job runner is started",
            _shown_store(),
        )
        return
    runner = start_runner(_config.model_store)
    _runner.append(runner)
    server.log.info(
        "Training is on: the job runner (pid %d, KTL_JOB_RUNNER=%s) runs the queued jobs of "
        "%s one at a time",
        runner.pid,
        _config.job_runner,
        _shown_store(),
    )


def _shown_store() -> str:
    """The store as the log names it: an object-storage URL as given, a folder resolved."""
    store = _config.model_store
    return store if isinstance(store, str) else str(Path(store).resolve())


def _stop_job_runner(server) -> None:
    while _runner:
        runner = _runner.pop()
        if stop_runner(runner):
            server.log.info("Stopped the job runner (pid %d)", runner.pid)


_METRICS = "PROMETHEUS_MULTIPROC_DIR"
_created_metrics_dirs: list[str] = []


def on_starting(server) -> None:
    """Counters and histograms of every worker in each scrape: prometheus-client's
    multiprocess mode. Its folder is set here, in the master before any worker forks
    (and imports prometheus_client), and starts empty: the operator's
    PROMETHEUS_MULTIPROC_DIR emptied of old figures, else a new temporary folder,
    removed at exit."""
    directory = os.environ.get(_METRICS)
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        for stale in Path(directory).glob("*.db"):
            stale.unlink()
        return
    directory = tempfile.mkdtemp(prefix="ktl-metrics-")
    _created_metrics_dirs.append(directory)
    os.environ[_METRICS] = directory


def child_exit(server, worker) -> None:
    """What the library asks of a multiprocess server when a worker exits."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    _stop_job_runner(server)
    for directory in _created_metrics_dirs:
        shutil.rmtree(directory, ignore_errors=True)


def post_fork(server, worker) -> None:
    """Share the CPUs among workers, so N workers do not each start one thread per core.

    TensorFlow reads these variables when its runtime starts, which is after
    this hook; importing TensorFlow here instead would delay the worker's own
    signal handlers by the length of the import. Values set by the operator win.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    per_worker = str(max(1, (cpus or 1) // server.cfg.workers))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", per_worker)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", per_worker)


# The Open Inference Protocol over gRPC (KTL_GRPC_PORT), one server in each worker:
# started once the worker has loaded the app, after the fork (the master never
# imports grpc, which does not survive a fork), every worker on the one port
# (SO_REUSEPORT). service/oip_grpc/server.py says why it runs in the workers.
_grpc_servers: list = []


def post_worker_init(worker) -> None:
    if _config.grpc_port is None:
        return
    from service.oip_grpc.server import serve

    _grpc_servers.append(serve(worker.wsgi, _config))
    worker.log.info(
        "Worker %d serves the Open Inference Protocol over gRPC on %s:%d",
        worker.pid,
        _config.host,
        _config.grpc_port,
    )


def worker_exit(server, worker) -> None:
    """Finish the gRPC calls under way (as gunicorn does its requests), then stop."""
    while _grpc_servers:
        _grpc_servers.pop().stop(grace=graceful_timeout).wait()
