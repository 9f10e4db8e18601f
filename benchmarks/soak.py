"""Load and soak test of the HTTP service, on 127.0.0.1 only.

Starts gunicorn (service/gunicorn.conf.py) on a free port with a store holding a
tiny model, or takes ``--url`` of a running service; runs ``--clients``
concurrent clients for ``--requests`` requests (bounded by ``--max-seconds``
too) mixing valid and invalid inputs; prints status mismatches, p50/p99
latency, throughput and each gunicorn worker's RSS before and after.

    .venv/bin/python benchmarks/soak.py                      # 2,000 requests, 16 clients
    .venv/bin/python benchmarks/soak.py --requests 20000 --workers 2
    .venv/bin/python benchmarks/soak.py --url http://127.0.0.1:8000 --model demo

Exit status 0 when every request got the status it should (200 for valid ones).
The tests import ``Gunicorn``, ``worker_pids`` and ``run_soak`` from here.
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: benchmarks/ is sys.path[0]
    sys.path.insert(0, str(ROOT))

CONF = ROOT / "service" / "gunicorn.conf.py"
TINY_LABELS = ["cat", "dog", "fox"]
TINY_SIZE = (32, 32)


# --- the server ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_pids(master_pid: int) -> list[int]:
    """The gunicorn master's child processes (its workers), from /proc."""
    try:
        text = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text()
    except OSError:
        return []
    return sorted(int(pid) for pid in text.split())


def rss_kib(pid: int) -> int | None:
    """VmRSS of a process in KiB (/proc/<pid>/status), None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def tiny_model(seed: int = 0, labels: list[str] = TINY_LABELS):
    """An untrained smallcnn classifier at 32x32 (random weights from ``seed``)."""
    import keras

    from models.backbones import get_backbone
    from models.classifier import build_backbone, build_classifier

    keras.utils.set_random_seed(seed)
    spec = get_backbone("smallcnn")
    return build_classifier(spec, build_backbone(spec, TINY_SIZE, None), len(labels))


def tiny_metadata(labels: list[str] = TINY_LABELS) -> dict:
    """Metadata for ``tiny_model``'s bundle, as ``ktl train`` would write it (no figures)."""
    from models.preprocessing import RESIZE_POLICY

    return {
        "labels": labels,
        "image_size": list(TINY_SIZE),
        "backbone": "smallcnn",
        "input": "RGB uint8 0..255",
        "resize": RESIZE_POLICY,
        "metrics": {},
        "training": {},
        "dataset": {},
        "created_at": "2024-01-01T00:00:00Z",
    }


def make_tiny_store(root: Path, name: str = "tiny", seed: int = 0) -> Path:
    """A store holding ``name`` version 1: smallcnn at 32x32, 3 labels (untrained)."""
    from models.bundle import save_bundle
    from models.store import ModelStore

    save_bundle(ModelStore(root), name, tiny_model(seed), tiny_metadata())
    return root


class Gunicorn:
    """gunicorn with service/gunicorn.conf.py on 127.0.0.1, in its own process group.

    ``with Gunicorn(store, workers=2) as server:`` waits for /readyz, and stops it
    on exit: SIGTERM, a wait, then SIGKILL to the whole group.
    """

    def __init__(
        self,
        store: Path,
        *,
        workers: int = 1,
        threads: int = 4,
        reload_interval: float = 0,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        ready_timeout: float = 120,
    ):
        self.store = Path(store)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="ktl-gunicorn-", suffix=".log")[1])
        self.ready_timeout = ready_timeout
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("KTL_") and key != "PYTHONPATH"
        }
        self.env.update(
            KTL_MODEL_STORE=str(self.store),
            KTL_HOST="127.0.0.1",
            KTL_PORT=str(self.port),
            KTL_WORKERS=str(workers),
            KTL_THREADS=str(threads),
            KTL_RELOAD_INTERVAL=str(reload_interval),
            TF_CPP_MIN_LOG_LEVEL="2",
            **(env or {}),
        )
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def workers(self) -> list[int]:
        return worker_pids(self.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def access_log(self) -> list[dict]:
        """The JSON access log entries written so far."""
        entries = []
        for line in self.log().splitlines():
            if line.startswith('{"time"'):
                try:
                    entries.append(json.loads(line))
                except ValueError:
                    pass  # a line cut short by a killed worker
        return entries

    def start(self) -> Gunicorn:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", str(CONF), "service.app:create_app()"],
                cwd=self.log_path.parent,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.wait_ready(self.ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({self.process.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn not ready in {timeout:g} s:\n{self.log()[-4000:]}")
            try:
                if requests.get(f"{self.base}/readyz", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass  # not listening yet, or the worker is still loading
            time.sleep(0.2)

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- the load -----------------------------------------------------------------------------


def _encode(fmt: str, seed: int, size: tuple[int, int] = (64, 48)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


@dataclass(frozen=True)
class Kind:
    """One kind of request of the mix, with the status it must get."""

    name: str
    valid: bool
    expected: int
    weight: int
    method: str
    path: str  # "{model}" is filled in
    kwargs: dict = field(default_factory=dict)


def request_mix() -> list[Kind]:
    png, jpeg = _encode("PNG", 1), _encode("JPEG", 2)
    b64 = base64.b64encode(_encode("PNG", 3)).decode()
    predict = "/v1/models/{model}/predict"
    return [
        Kind("multipart png", True, 200, 30, "post", predict, {"files": {"image": ("a.png", png)}}),
        Kind(
            "raw jpeg top_k=2",
            True,
            200,
            20,
            "post",
            predict + "?top_k=2",
            {"data": jpeg, "headers": {"Content-Type": "image/jpeg"}},
        ),
        Kind(
            "tf-serving json",
            True,
            200,
            15,
            "post",
            "/v1/models/{model}:predict",
            {"json": {"instances": [{"b64": b64}]}},
        ),
        Kind("model list", True, 200, 5, "get", "/v1/models"),
        Kind("healthz", True, 200, 5, "get", "/healthz"),
        Kind(
            "corrupt image",
            False,
            400,
            8,
            "post",
            predict,
            {"data": png[: len(png) // 3], "headers": {"Content-Type": "image/png"}},
        ),
        Kind(
            "bad top_k",
            False,
            400,
            5,
            "post",
            predict + "?top_k=zero",
            {"data": png, "headers": {"Content-Type": "image/png"}},
        ),
        Kind(
            "unknown model",
            False,
            404,
            5,
            "post",
            "/v1/models/no-such-model/predict",
            {"data": png, "headers": {"Content-Type": "image/png"}},
        ),
        Kind(
            "text body",
            False,
            415,
            4,
            "post",
            predict,
            {"data": b"hello", "headers": {"Content-Type": "text/plain"}},
        ),
        Kind(
            "bad base64",
            False,
            400,
            3,
            "post",
            "/v1/models/{model}:predict",
            {"json": {"instances": [{"b64": "***"}]}},
        ),
    ]


@dataclass
class Outcome:
    kind: str
    valid: bool
    expected: int
    status: int | None  # None: no HTTP response (connection error, timeout)
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == self.expected


@dataclass
class SoakResult:
    outcomes: list[Outcome]
    seconds: float
    rss_before: dict[int, int | None]
    rss_after: dict[int, int | None]
    requested: int

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def valid_failures(self) -> list[Outcome]:
        return [o for o in self.failures if o.valid]

    @property
    def throughput(self) -> float:
        return len(self.outcomes) / self.seconds if self.seconds else 0.0


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _plan(requests_total: int, kinds: list[Kind], seed: int) -> list[Kind]:
    """A shuffled sequence of ``requests_total`` kinds in proportion to their weights."""
    weights = np.array([k.weight for k in kinds], np.float64)
    picks = np.random.default_rng(seed).choice(
        len(kinds), requests_total, p=weights / weights.sum()
    )
    return [kinds[i] for i in picks]


def run_load(
    base: str,
    *,
    model: str = "tiny",
    requests_total: int = 2000,
    clients: int = 16,
    max_seconds: float = 300,
    timeout: float = 30,
    seed: int = 0,
) -> tuple[list[Outcome], float]:
    """Send the mix from ``clients`` threads; stops early at ``max_seconds``."""
    host = urlsplit(base).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"{base}: the soak test only talks to 127.0.0.1")
    plan = _plan(requests_total, request_mix(), seed)
    counter = itertools.count()
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds

    def client() -> None:
        with requests.Session() as session:
            while time.monotonic() < deadline:
                index = next(counter)
                if index >= len(plan):
                    return
                kind = plan[index]
                url = base + kind.path.format(model=model)
                start = time.perf_counter()
                status, error = None, None
                try:
                    response = session.request(kind.method, url, timeout=timeout, **kind.kwargs)
                    status = response.status_code
                    if status != kind.expected:
                        error = response.text[:200]
                except requests.RequestException as exc:
                    error = f"{type(exc).__name__}: {exc}"[:200]
                outcome = Outcome(
                    kind.name, kind.valid, kind.expected, status, time.perf_counter() - start, error
                )
                with lock:
                    outcomes.append(outcome)

    threads = [threading.Thread(target=client, name=f"soak-{i}") for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes, time.perf_counter() - start


def run_soak(
    *,
    url: str | None = None,
    model: str = "tiny",
    requests_total: int = 2000,
    clients: int = 16,
    workers: int = 1,
    max_seconds: float = 300,
    pids: list[int] | None = None,
    seed: int = 0,
) -> SoakResult:
    """Start a server unless ``url`` is given, warm it up, measure RSS, load it."""
    with _server(url, workers, clients) as (base, server_pids):
        pids = pids or server_pids()
        run_load(base, model=model, requests_total=20, clients=2, seed=seed + 1)  # warm-up
        before = {pid: rss_kib(pid) for pid in pids}
        outcomes, seconds = run_load(
            base,
            model=model,
            requests_total=requests_total,
            clients=clients,
            max_seconds=max_seconds,
            seed=seed,
        )
        after = {pid: rss_kib(pid) for pid in pids}
    return SoakResult(outcomes, seconds, before, after, requests_total)


@contextmanager
def _server(
    url: str | None, workers: int, clients: int
) -> Iterator[tuple[str, Callable[[], list[int]]]]:
    if url is not None:
        yield url.rstrip("/"), lambda: []
        return
    with tempfile.TemporaryDirectory(prefix="ktl-soak-") as tmp:
        store = make_tiny_store(Path(tmp) / "store")
        # Enough threads that all clients are in the server at once.
        threads = max(4, -(-clients // workers))
        with Gunicorn(
            store, workers=workers, threads=threads, log_path=Path(tmp) / "server.log"
        ) as s:
            yield s.base, s.workers


def report(result: SoakResult) -> str:
    rows = [("kind", "expected", "count", "wrong", "p50 ms", "p99 ms")]
    by_kind: dict[str, list[Outcome]] = {}
    for outcome in result.outcomes:
        by_kind.setdefault(outcome.kind, []).append(outcome)
    for kind in request_mix():
        items = by_kind.get(kind.name, [])
        times = [o.seconds * 1000 for o in items]
        rows.append(
            (
                kind.name,
                str(kind.expected),
                str(len(items)),
                str(sum(not o.ok for o in items)),
                f"{_percentile(times, 50):.1f}",
                f"{_percentile(times, 99):.1f}",
            )
        )
    for label, valid in (("all valid", True), ("all invalid", False)):
        items = [o for o in result.outcomes if o.valid == valid]
        times = [o.seconds * 1000 for o in items]
        rows.append(
            (
                label,
                "",
                str(len(items)),
                str(sum(not o.ok for o in items)),
                f"{_percentile(times, 50):.1f}",
                f"{_percentile(times, 99):.1f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.insert(len(lines) - 2, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(
        f"{len(result.outcomes)} of {result.requested} requests in {result.seconds:.1f} s: "
        f"{result.throughput:.1f} requests/s; {len(result.valid_failures)} valid requests failed, "
        f"{len(result.failures) - len(result.valid_failures)} invalid ones got a wrong status"
    )
    for pid in sorted(result.rss_before):
        before, after = result.rss_before[pid], result.rss_after.get(pid)
        text = (
            f"{before / 1024:.1f} MiB -> {after / 1024:.1f} MiB ({(after - before) / 1024:+.1f})"
            if before is not None and after is not None
            else f"{before} -> {after} KiB (worker gone?)"
        )
        lines.append(f"worker {pid} RSS {text}")
    if not result.rss_before:
        lines.append("worker RSS: not measured (--url without --pid)")
    for outcome in result.failures[:10]:
        lines.append(
            f"  wrong: {outcome.kind}: got {outcome.status}, expected {outcome.expected}: "
            f"{outcome.error}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests in all (2000)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (16)")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers to start (1)")
    parser.add_argument("--max-seconds", type=float, default=300, help="stop after this (300)")
    parser.add_argument("--url", help="a running service on 127.0.0.1 instead of starting one")
    parser.add_argument("--model", default="tiny", help="model to call with --url (tiny)")
    parser.add_argument(
        "--pid", type=int, action="append", help="with --url: a worker pid whose RSS to read"
    )
    args = parser.parse_args(argv)
    if args.requests < 1 or args.clients < 1:
        parser.error("--requests and --clients must be at least 1")
    result = run_soak(
        url=args.url,
        model=args.model,
        requests_total=args.requests,
        clients=args.clients,
        workers=args.workers,
        max_seconds=args.max_seconds,
        pids=args.pid,
    )
    print(report(result))
    return 0 if not result.failures and len(result.outcomes) == args.requests else 1


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
