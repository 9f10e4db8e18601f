"""One process against several workers, side by side in one run: the same
``ktl train`` job (same data, same seed) in one process and as ``--workers``
workers of a TF_CONFIG cluster on 127.0.0.1, with accuracy, wall time and
the share of images both models label alike.

    .venv/bin/python benchmarks/distributed.py [--data DIR] [--workers 2] [-- ktl train flags]

Without ``--data`` it generates the 1,200 images of the shapes demo. On one machine the
workers share its cores, so this measures what distribution costs and whether
it changes the model, not the speed-up of real machines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tests.support.cli import KTL, start_workers  # noqa: E402


def _labels(path: str, files: list[Path]):
    import numpy as np

    from models.bundle import load_bundle
    from models.preprocessing import load_image

    bundle = load_bundle(path)
    pixels = np.stack([load_image(f, bundle.image_size) for f in files])
    return bundle.classifier.predict(pixels).argmax(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="an image folder (default: generated shapes)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("train_flags", nargs="*", help="after --: flags for ktl train")
    args = parser.parse_args()
    flags = args.train_flags or [
        "--backbone", "smallcnn", "--weights", "none", "--image-size", "32", "--no-augment",
        "--epochs", "30", "--patience", "8", "--batch-size", "32", "--seed", "7",
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.data:
            data = Path(args.data)
        else:
            from training.dataset.demo import make_shapes_dataset

            data = make_shapes_dataset(root / "data", per_class=400, size=64, seed=0)
        common = ["train", str(data), "--name", "bench", "--json", *flags]

        start = time.perf_counter()
        single = subprocess.run(
            [sys.executable, "-c", KTL, *common, "--store", str(root / "one")],
            capture_output=True,
            text=True,
            check=True,
        )
        single_s = time.perf_counter() - start
        start = time.perf_counter()
        workers = start_workers(
            args.workers, root / "logs", *common, "--store", str(root / "many"),
            "--strategy", "multiworker",
        )  # fmt: skip
        for worker in workers:
            if worker.wait() != 0:
                sys.exit(f"a worker failed:\n{worker.stderr_path.read_text()[-3000:]}")
        many_s = time.perf_counter() - start
        one = json.loads(single.stdout)
        chief = json.loads(workers[0].stdout_path.read_text())

        files = sorted(p for p in data.rglob("*") if p.suffix.lower() in (".png", ".jpg"))
        same = (_labels(one["path"], files) == _labels(chief["path"], files)).mean()
        print(f"{'run':<22}{'val accuracy':>13}{'val loss':>10}{'val images':>12}{'wall s':>9}")
        for name, summary, wall in (
            ("one process", one, single_s),
            (f"{args.workers} workers", chief, many_s),
        ):
            metrics = summary["metrics"]
            print(
                f"{name:<22}{metrics['accuracy']:>13.3f}{metrics['loss']:>10.3f}"
                f"{summary['dataset']['val_images']:>12}{wall:>9.1f}"
            )
        print(f"wall time ratio (workers / one process): {many_s / single_s:.2f}")
        print(f"images labelled alike by both models: {same:.1%} of {len(files)}")


if __name__ == "__main__":
    main()
