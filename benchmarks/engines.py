"""The INT8 engine against the Keras engine, side by side in one run: each
engine's limit in-process (batch 8), then the ktl service on each engine under
wrk (a C load generator, raw ``image/jpeg`` bodies to the native route) at 1 and 8
connections, with the ratios and the GFLOP/s each achieves next to this CPU's
float32 peak.

    .venv/bin/python benchmarks/engines.py [--models resnet50 vgg16] [--seconds 20]

Weights are random (speed does not depend on their values); agreement is measured
on trained models by `ktl quantize` (docs/int8.md). Needs wrk (apt-get install wrk).
Everything listens on 127.0.0.1; every server started is stopped.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import ROOT, free_port, make_bundle, photo_jpeg, start, stop  # noqa: E402

BATCH = 8
CONNECTIONS = (1, 8)
LUA = """local f = io.open(os.getenv("KTL_BENCH_BODY"), "rb")
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "image/jpeg"
"""


def macs(model) -> int:
    """Multiply-adds of one image through the conv and dense layers (nested models too)."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += macs(layer)
        elif isinstance(layer, keras.layers.Conv2D | keras.layers.Dense):
            kernel = layer.kernel.shape
            outputs = np.prod(layer.output.shape[1:-1]) if len(layer.output.shape) > 2 else 1
            per_output = np.prod(kernel[:-1])
            total += int(outputs * per_output * kernel[-1])
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            kernel = layer.kernel.shape
            total += int(np.prod(layer.output.shape[1:]) * kernel[0] * kernel[1])
    return total


def peak_gflops() -> float:
    """float32 peak: cores x GHz x 32 (two 8-wide FMA units, AVX2) or 64 (AVX-512)."""
    info = Path("/proc/cpuinfo").read_text()
    mhz = max(float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", info))
    per_cycle = 64 if "avx512f" in info else 32
    return (os.cpu_count() or 1) * mhz / 1000 * per_cycle


def limit(engine, size: int) -> float:
    """Best of three timed rounds, img/s, at batch 8."""
    pixels = np.random.default_rng(0).integers(0, 255, (BATCH, size, size, 3), dtype=np.uint8)
    engine.predict(pixels)
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(3):
            engine.predict(pixels)
        best = max(best, 3 * BATCH / (time.perf_counter() - started))
    return best


def wrk(url: str, connections: int, seconds: int, body: Path, script: Path) -> dict:
    """Requests/s and latency percentiles (ms) from ``wrk --latency``."""
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "60s", "--latency",
         "-s", str(script), url],
        capture_output=True, text=True, env={**os.environ, "KTL_BENCH_BODY": str(body)},
        check=True,
    )  # fmt: skip
    out = done.stdout
    rate = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
    percentiles = {}
    for name in ("50", "99"):
        value, unit = re.search(rf"\s{name}%\s+([\d.]+)(us|ms|s)", out).groups()
        percentiles[name] = float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    return {"rps": rate, "p50": percentiles["50"], "p99": percentiles["99"],
            "errors": int(bad.group(1)) if bad else 0}  # fmt: skip


def serve(store: Path, engine: str, name: str, seconds: int, body: Path, script: Path) -> dict:
    port = free_port()
    process = start(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "service" / "gunicorn.conf.py"),
         "service.app:create_app()"],
        {"KTL_MODEL_STORE": str(store), "KTL_HOST": "127.0.0.1", "KTL_PORT": str(port),
         "KTL_RELOAD_INTERVAL": "0", "KTL_ENGINE": engine},
        f"http://127.0.0.1:{port}/readyz",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1/models/{name}/predict"
    try:
        wrk(url, 8, 3, body, script)  # warm-up
        return {c: wrk(url, c, seconds, body, script) for c in CONNECTIONS}
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "vgg16"])
    parser.add_argument("--seconds", type=int, default=20, help="per wrk run")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("benchmarks/engines.py needs wrk: apt-get install wrk")
    from models.bundle import load_bundle
    from models.engines import int8
    from models.metadata import Engine
    from models.store import ModelStore

    peak = peak_gflops()
    print(f"CPU float32 peak (cores x clock x FMA width): {peak:.0f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        body, script = work / "photo.jpg", work / "post.lua"
        body.write_bytes(photo_jpeg(0))
        script.write_text(LUA)
        for backbone in args.models:
            store = ModelStore(work / backbone)
            bundle = load_bundle(make_bundle(store, backbone))
            calibration = np.stack([
                np.random.default_rng(seed).integers(0, 255, (224, 224, 3), dtype=np.uint8)
                for seed in range(32)
            ])  # fmt: skip
            started = time.monotonic()
            made = int8.quantize(bundle.model, (224, 224), calibration, work / int8.INT8_FILE)
            took = time.monotonic() - started
            metadata = bundle.metadata.replace(
                version=None, files={}, engines={"int8": Engine(**made).model_dump()}
            )
            from models.bundle import save_bundle

            save_bundle(store, bundle.model, metadata, {}, {int8.INT8_FILE: work / int8.INT8_FILE})
            quantized = load_bundle(store.root / backbone / "2")
            flop = 2 * macs(bundle.model) / 1e9
            limits = {"keras": limit(quantized.engine("keras"), 224),
                      "int8": limit(quantized.engine("int8"), 224)}  # fmt: skip
            served = {e: serve(store.root, e, backbone, args.seconds, body, script)
                      for e in ("keras", "int8")}  # fmt: skip
            _report(backbone, flop, peak, took, limits, served)


def _report(backbone, flop, peak, took, limits, served) -> None:
    print(f"\n== {backbone} @224, {flop:.1f} GFLOP per image; quantized in {took:.0f} s ==")
    for engine, rate in limits.items():
        print(f"{engine:>6} engine limit (batch {BATCH}): {rate:6.1f} img/s = "
              f"{rate * flop:6.1f} GFLOP/s ({rate * flop / peak:.0%} of the float32 peak)")  # fmt: skip
    print(f"{'engine':>8}{'conns':>7}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'p99/p50':>9}"
          f"{'errors':>8}")  # fmt: skip
    for engine, runs in served.items():
        for c, r in runs.items():
            print(f"{engine:>8}{c:>7}{r['rps']:>8.1f}{r['p50']:>9.0f}{r['p99']:>9.0f}"
                  f"{r['p99'] / r['p50']:>9.2f}{r['errors']:>8}")  # fmt: skip
    keras_limit = limits["keras"]
    print(
        f"int8 limit / keras limit {limits['int8'] / keras_limit:.2f}; "
        f"int8 service at 8 / keras limit {served['int8'][8]['rps'] / keras_limit:.2f}; "
        f"int8 p50 / keras p50 at 1 {served['int8'][1]['p50'] / served['keras'][1]['p50']:.2f}"
    )


if __name__ == "__main__":
    main()
