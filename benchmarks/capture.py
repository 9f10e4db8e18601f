"""The cost of capture, side by side in one run: the same service with capture off
and with ``KTL_CAPTURE_DIR`` set and ``KTL_CAPTURE=sample:0.05``, both up at once,
loaded in turn by wrk (raw ``image/jpeg`` bodies to the native route), rounds
alternating so that load from elsewhere falls on both alike; prints each round's
requests/s and the ratio of the medians.

    .venv/bin/python benchmarks/capture.py [--backbone smallcnn] [--seconds 10] [--rounds 3]

Weights are random (speed does not depend on them). Needs wrk (apt-get install wrk).
Everything listens on 127.0.0.1; both servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engines import LUA, wrk  # noqa: E402
from serve import ROOT, free_port, make_bundle, photo_jpeg, start, stop  # noqa: E402

CONNECTIONS = 8


def _server(store: Path, extra: dict[str, str]):  # type: ignore[no-untyped-def]
    port = free_port()
    process = start(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "service" / "gunicorn.conf.py"),
         "service.app:create_app()"],
        {"KTL_MODEL_STORE": str(store), "KTL_HOST": "127.0.0.1", "KTL_PORT": str(port),
         "KTL_RELOAD_INTERVAL": "0", **extra},
        f"http://127.0.0.1:{port}/readyz",
    )  # fmt: skip
    return process, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="smallcnn")
    parser.add_argument("--seconds", type=int, default=10, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("benchmarks/capture.py needs wrk: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        body, script = work / "photo.jpg", work / "post.lua"
        body.write_bytes(photo_jpeg(0))
        script.write_text(LUA)
        from models.store import ModelStore

        make_bundle(ModelStore(work / "store"), args.backbone, "bench")
        capture = work / "capture"
        settings = {"off": {}, "sample:0.05": {"KTL_CAPTURE_DIR": str(capture),
                                                "KTL_CAPTURE": "sample:0.05"}}  # fmt: skip
        servers = {name: _server(work / "store", extra) for name, extra in settings.items()}
        rates: dict[str, list[float]] = {name: [] for name in servers}
        try:
            for _, port in servers.values():  # warm-up
                wrk(
                    f"http://127.0.0.1:{port}/v1/models/bench/predict", CONNECTIONS, 3, body, script
                )
            for round_ in range(args.rounds):
                for name, (_, port) in servers.items():
                    url = f"http://127.0.0.1:{port}/v1/models/bench/predict"
                    result = wrk(url, CONNECTIONS, args.seconds, body, script)
                    assert result["errors"] == 0, result
                    rates[name].append(result["rps"])
                    print(f"round {round_ + 1} {name:>12}: {result['rps']:8.1f} req/s, "
                          f"p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms")  # fmt: skip
        finally:
            for process, _ in servers.values():
                stop(process)
        images = len(list(capture.glob("bench/images/*.json")))
        lines = sum(len(p.read_text().splitlines()) for p in capture.glob("bench/log/*.jsonl"))
    off, on = (statistics.median(rates[name]) for name in settings)
    print(f"{args.backbone}, {CONNECTIONS} connections, {args.rounds} rounds of {args.seconds} s")
    print(f"median req/s: off {off:.1f}, sample:0.05 {on:.1f}; ratio on/off {on / off:.3f}")
    print(f"capture wrote {lines} log lines and {images} images")


if __name__ == "__main__":
    main()
