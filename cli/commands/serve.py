"""``ktl serve``: the HTTP service under gunicorn."""

from __future__ import annotations

import argparse
import os
import sys

from cli.common import add_store


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "serve",
        help="run the HTTP service under gunicorn",
        description="Run the HTTP classification service under gunicorn "
        "(KTL_* variables configure it). With training on (KTL_TRAIN_KEYS set, or "
        "KTL_TRAINING=open on a service only you reach), gunicorn also starts the job "
        "runner that trains what POST /v1/jobs and the /train page queue (docs/jobs.md).",
    )
    parser.add_argument(
        "--host",
        help="address to bind (default $KTL_HOST or 127.0.0.1, this machine only; 0.0.0.0 "
        "listens on every interface: put a proxy in front, see docs/security.md)",
    )
    parser.add_argument("--port", type=int, help="port (default $KTL_PORT or 8000)")
    parser.add_argument(
        "--workers", type=int, help="gunicorn worker processes (default $KTL_WORKERS or 1)"
    )
    add_store(parser, default=None)
    return parser


def run(args: argparse.Namespace) -> int:
    from service import GUNICORN_CONF

    env = {
        "KTL_HOST": args.host,
        "KTL_PORT": args.port,
        "KTL_WORKERS": args.workers,
        "KTL_MODEL_STORE": args.store,
    }
    for key, value in env.items():
        if value is not None:
            os.environ[key] = str(value)
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(GUNICORN_CONF),
        "service.app:create_app()",
    ]
    os.execv(sys.executable, command)
    return 1  # not reached: execv replaces this process
