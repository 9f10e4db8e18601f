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
The server harness and the tiny model come from ``tests.support``; the soak test
imports ``run_soak`` from here.
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import os
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

from tests.support.server import Gunicorn, rss_kib  # noqa: E402
from tests.support.tiny import make_tiny_store  # noqa: E402

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
