"""The real ``ktl`` command line, run as a process as the console script runs it
(``ktl``), or in this process (``ktl_here``) where a test checks a refusal, an exit
code or a message rather than what only a process shows (signals, pipes, its
environment, TensorFlow's log lines): importing TensorFlow again costs seconds."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.server import free_port

# What the console script does, for ``python -c``: the test's interpreter and checkout.
KTL = "import sys; from cli import main; sys.exit(main(sys.argv[1:]))"


def ktl(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``ktl ARGS...``: its exit code, stdout and stderr. A variable that ``env``
    maps to None is left out (``TF_CPP_MIN_LOG_LEVEL``: None runs ktl as a user
    does, without the quieting the tests otherwise add)."""
    merged = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", KTL, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={key: value for key, value in merged.items() if value is not None},
    )


def ktl_here(*args: str) -> subprocess.CompletedProcess:
    """``ktl ARGS...`` run by ``cli.main`` in this process: its exit code (argparse's
    too), stdout and stderr, as ``ktl`` gives them, without starting Python and
    importing TensorFlow again."""
    from cli import main

    out, err = io.StringIO(), io.StringIO()
    sigterm = signal.getsignal(signal.SIGTERM)  # main() turns SIGTERM into an interrupt
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    except SystemExit as exc:  # argparse's refusals
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    return subprocess.CompletedProcess(["ktl", *args], code, out.getvalue(), err.getvalue())


def offline(keras_home: Path) -> dict[str, str]:
    """An environment in which nothing can be downloaded and no weights are cached."""
    proxies = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
    return {"KERAS_HOME": str(keras_home), **{proxy: "http://127.0.0.1:9" for proxy in proxies}}


def start_workers(
    count: int, logs: Path, *args: str, only: int | None = None, hosts: list[str] | None = None
) -> list[subprocess.Popen]:
    """``ktl ARGS...`` as ``count`` workers of one TF_CONFIG cluster on 127.0.0.1
    (or just worker ``only`` of them, ``hosts`` naming the cluster's addresses).
    Each process's output goes to files (``stdout_path``, ``stderr_path``) that
    can be read while it runs; the caller waits for them."""
    logs.mkdir(parents=True, exist_ok=True)
    hosts = hosts or [f"127.0.0.1:{free_port()}" for _ in range(count)]
    workers = []
    for index in range(count) if only is None else [only]:
        config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
        out, err = logs / f"worker{index}.out", logs / f"worker{index}.err"
        with open(out, "w") as stdout, open(err, "w") as stderr:
            worker = subprocess.Popen(
                [sys.executable, "-c", KTL, *args],
                stdout=stdout,
                stderr=stderr,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_CONFIG": json.dumps(config)},
            )
        worker.stdout_path, worker.stderr_path = out, err  # type: ignore[attr-defined]
        workers.append(worker)
    return workers
