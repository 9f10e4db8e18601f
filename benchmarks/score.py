"""``ktl score`` against the ktl service on the same images, the same model and the
same engine, in one run: images/s of each and their ratio.

    .venv/bin/python benchmarks/score.py [--backbone mobilenetv3small] [--images 512]
                                         [--clients 8] [--rounds 2]

The scoring job's rate is the one it reports (from its first batch to its last write,
the model already loaded); the service's is the clients' (``--clients`` concurrent
one-image posts to the native predict route, as a "write your own client" batch job
would send them, after a warm-up). Weights are random (speed does not depend on
them). The service listens on 127.0.0.1 only and is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import ROOT, free_port, load, make_bundle, photo_jpeg, start, stop  # noqa: E402

sys.path.insert(0, str(ROOT))
from tests.support.cli import KTL  # noqa: E402

# Both sides run the Keras engine: the bundle's weights are random, so it has no INT8
# engine (that needs calibration data: ktl quantize; docs/int8.md compares the engines).
ENGINE = "keras"


def score_rate(store: Path, name: str, images: Path, out: Path, engine: str) -> dict:
    """``ktl score`` as a user runs it: its summary and its wall time."""
    command = [
        sys.executable,
        "-c",
        KTL,
        "score",
        name,
        str(images),
        "--out",
        str(out),
        "--store",
        str(store),
        "--engine",
        engine,
        "--json",
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return {**json.loads(done.stdout), "wall": time.perf_counter() - started}


def service_rate(store: Path, name: str, jpegs: list[bytes], clients: int, engine: str) -> dict:
    port = free_port()
    env = {
        "KTL_MODEL_STORE": str(store),
        "KTL_HOST": "127.0.0.1",
        "KTL_PORT": str(port),
        "KTL_RELOAD_INTERVAL": "0",
        "KTL_ENGINE": engine,
    }
    gunicorn = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(ROOT / "service" / "gunicorn.conf.py"),
        "service.app:create_app()",
    ]
    server = start(gunicorn, env, f"http://127.0.0.1:{port}/readyz", cwd=ROOT)
    url = f"http://127.0.0.1:{port}/v1/models/{name}/predict"
    try:
        load(url, jpegs, clients, 4 * clients)  # warm-up at full concurrency
        return load(url, jpegs, clients, len(jpegs))
    finally:
        stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mobilenetv3small")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each")
    args = parser.parse_args()
    from models.store import ModelStore

    jobs, served = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_bundle(ModelStore(work / "store"), args.backbone)
        jpegs = [photo_jpeg(seed) for seed in range(args.images)]
        (work / "images").mkdir()
        for i, data in enumerate(jpegs):
            (work / "images" / f"{i:05d}.jpg").write_bytes(data)
        for index in range(args.rounds):  # alternating, so a change in load hits both
            out = work / f"out{index}.jsonl"
            jobs.append(score_rate(work / "store", args.backbone, work / "images", out, ENGINE))
            served.append(service_rate(work / "store", args.backbone, jpegs, args.clients, ENGINE))
    print(
        f"{args.backbone} @224, {args.images} JPEGs of 640x480, {ENGINE} engine "
        f"({jobs[0]['engine']} in ktl score), {args.rounds} alternating rounds"
    )
    for job, service in zip(jobs, served, strict=True):
        print(
            f"  ktl score {job['images_per_second']:7.1f} images/s ({job['seconds']:.1f} s "
            f"scoring, {job['wall']:.1f} s with start-up); service {service['throughput']:7.1f} "
            f"images/s ({args.clients} clients, p50 {service['p50']:.0f} ms, "
            f"{service['errors']} errors)"
        )
    scored = statistics.mean(job["images_per_second"] for job in jobs)
    serving = statistics.mean(service["throughput"] for service in served)
    print(
        f"  mean: ktl score {scored:.1f} images/s, service {serving:.1f} images/s; "
        f"ratio ktl score / service: {scored / serving:.2f}"
    )


if __name__ == "__main__":
    main()
