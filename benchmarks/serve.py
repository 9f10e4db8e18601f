"""Serving speed, side by side in one run: the engine limit (in-process compiled
forward pass), the ktl service over HTTP, and a naive Flask service calling
``model.predict`` per request (the common tutorial, kept here as the reference).

    .venv/bin/python benchmarks/serve.py [--models resnet50 vgg16] [--requests 96]

Everything listens on 127.0.0.1 only; every server started is stopped.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLIENTS = (1, 4, 16)


# -- the naive reference: what most tutorials deploy -----------------------------------


def naive_app():
    """Flask + ``model.predict`` per request; gunicorn calls this factory."""
    import keras
    from flask import Flask, jsonify, request

    import models.networks.layers  # noqa: F401  (the bundle's preprocessing layer)

    model = keras.saving.load_model(os.environ["NAIVE_MODEL"], compile=False)
    height, width = model.input_shape[1:3]
    app = Flask("naive")

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/predict")
    def predict():
        image = Image.open(request.files["image"].stream).convert("RGB").resize((width, height))
        probabilities = model.predict(np.asarray(image, np.float32)[None], verbose=0)[0]
        return jsonify({"probabilities": probabilities.tolist()})

    return app


# -- helpers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_bundle(store, backbone: str, name: str | None = None) -> Path:
    """A 10-class bundle of ``backbone`` at 224 with random weights (speed only)."""
    from models.bundle import save_bundle
    from models.metadata import BundleMetadata
    from models.networks.backbones import get_backbone
    from models.networks.classifier import build_backbone, build_classifier
    from models.preprocessing import RESIZE_POLICY

    spec = get_backbone(backbone)
    model = build_classifier(spec, build_backbone(spec, (224, 224), None), 10)
    metadata = BundleMetadata(
        name=name or backbone,
        labels=tuple(f"class{i}" for i in range(10)),
        image_size=(224, 224),
        backbone=backbone,
        resize=RESIZE_POLICY,
    )
    return save_bundle(store, model, metadata)[1]


def photo_jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def start(command: list[str], env: dict, url: str, cwd: Path | None = None) -> subprocess.Popen:
    process = subprocess.Popen(
        command,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {command}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return process
        except requests.RequestException:
            pass
        time.sleep(0.5)
    stop(process)
    raise RuntimeError(f"server did not become ready: {command}")


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def worker_rss_mb(master: subprocess.Popen) -> float:
    """Resident memory of the gunicorn worker (the master's child)."""
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    total = 0
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def load(url: str, images: list[bytes], clients: int, requests_total: int) -> dict:
    """``requests_total`` posts by ``clients`` concurrent clients; latencies in ms."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(requests_total))

    def client() -> None:
        nonlocal errors
        session = requests.Session()
        for i in counter:
            data = images[i % len(images)]
            start_time = time.perf_counter()
            try:
                response = session.post(
                    url, files={"image": ("p.jpg", data, "image/jpeg")}, timeout=120
                )
                ok = response.status_code == 200
            except requests.RequestException:
                ok = False
            elapsed = (time.perf_counter() - start_time) * 1000
            with lock:
                latencies.append(elapsed)
                errors += not ok

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(client)
    seconds = time.perf_counter() - started
    latencies.sort()
    return {
        "throughput": len(latencies) / seconds,
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "errors": errors,
    }


def engine(bundle_dir: Path) -> dict:
    """The compiled forward pass in-process: single-image latency and best img/s."""
    from models.bundle import load_bundle
    from models.engines.inference import Classifier

    classifier = Classifier(load_bundle(bundle_dir))
    results = {}
    for batch in (1, 4, 8, 16):
        pixels = np.random.default_rng(batch).integers(0, 255, (batch, 224, 224, 3), dtype=np.uint8)
        classifier.predict(pixels)
        runs = max(3, 48 // batch)
        start_time = time.perf_counter()
        for _ in range(runs):
            classifier.predict(pixels)
        per_batch = (time.perf_counter() - start_time) / runs
        results[batch] = {"ms_per_batch": per_batch * 1000, "img_s": batch / per_batch}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "vgg16"])
    parser.add_argument("--requests", type=int, default=96, help="requests per client level")
    args = parser.parse_args()
    images = [photo_jpeg(seed) for seed in range(8)]
    python = sys.executable
    from models.store import ModelStore

    with tempfile.TemporaryDirectory() as tmp:
        store = ModelStore(Path(tmp) / "store")
        for backbone in args.models:
            bundle_dir = make_bundle(store, backbone)
            limits = engine(bundle_dir)
            best = max(limits.values(), key=lambda r: r["img_s"])["img_s"]
            single_ms = limits[1]["ms_per_batch"]
            print(f"\n== {backbone} @224 (weights none) ==")
            print("engine (in-process compiled forward pass):")
            for batch, r in limits.items():
                print(
                    f"  batch {batch:>2}: {r['ms_per_batch']:7.1f} ms/batch  {r['img_s']:6.1f} img/s"
                )

            port = free_port()
            ours = start(
                [python, "-m", "gunicorn", "-c", str(ROOT / "service" / "gunicorn.conf.py"), "service.app:create_app()"],
                {"KTL_MODEL_STORE": str(store.root), "KTL_HOST": "127.0.0.1", "KTL_PORT": str(port), "KTL_RELOAD_INTERVAL": "0"},
                f"http://127.0.0.1:{port}/readyz",
            )  # fmt: skip
            ours_url = f"http://127.0.0.1:{port}/v1/models/{backbone}/predict"
            try:
                load(ours_url, images, 16, 64)  # warm-up at full concurrency
                rss_before = worker_rss_mb(ours)
                ktl = {c: load(ours_url, images, c, args.requests) for c in CLIENTS}
                rss_after = worker_rss_mb(ours)
            finally:
                stop(ours)

            naive = _start_naive(python, bundle_dir)
            try:
                load(naive["url"], images, 4, 16)
                reference = {c: load(naive["url"], images, c, args.requests) for c in CLIENTS}
            finally:
                stop(naive["process"])

            print(f"{'clients':>8}{'ktl req/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'naive req/s':>13}"
                  f"{'p50 ms':>9}{'p99 ms':>9}{'ktl/engine':>12}{'ktl/naive':>11}")  # fmt: skip
            for c in CLIENTS:
                k, n = ktl[c], reference[c]
                print(
                    f"{c:>8}{k['throughput']:>11.1f}{k['p50']:>9.0f}{k['p99']:>9.0f}{n['throughput']:>13.1f}"
                    f"{n['p50']:>9.0f}{n['p99']:>9.0f}{k['throughput'] / best:>12.2f}"
                    f"{k['throughput'] / n['throughput']:>11.2f}"
                )
            errors = sum(r["errors"] for r in ktl.values())
            print(f"engine limit {best:.1f} img/s; single image {single_ms:.0f} ms; "
                  f"ktl p50 at 1 client = engine + {ktl[1]['p50'] - single_ms:.0f} ms; "
                  f"ktl p99/p50 at 16 clients {ktl[16]['p99'] / ktl[16]['p50']:.2f}; "
                  f"ktl errors {errors}; worker RSS {rss_before:.0f} -> {rss_after:.0f} MB "
                  f"({(rss_after / rss_before - 1) * 100:+.1f} %)")  # fmt: skip


def _start_naive(python: str, bundle_dir: Path) -> dict:
    port = free_port()
    process = start(
        [python, "-m", "gunicorn", "-k", "gthread", "-w", "1", "--threads", "8",
         "-b", f"127.0.0.1:{port}", "--chdir", str(ROOT / "benchmarks"), "serve:naive_app()"],
        {"NAIVE_MODEL": str(bundle_dir / "model.keras"), "PYTHONPATH": str(ROOT)},
        f"http://127.0.0.1:{port}/health",
    )  # fmt: skip
    return {"process": process, "url": f"http://127.0.0.1:{port}/predict"}


if __name__ == "__main__":
    main()
