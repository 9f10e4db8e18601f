"""How many wrong labels ``ktl doctor`` finds in real photos, and how many of its
label issues are really wrong: hymenoptera (all 398 photos as class folders) with
10 % of the labels flipped in a copy, probed on EfficientNet-Lite0's ImageNet
features (the weights that ship with ktl), over several seeds.

    nice -n 5 .venv/bin/python benchmarks/doctor_flips.py [--seeds 1,2,3]
        [--share 0.1] [--backbone efficientnet_lite0] [--data ../shared/datasets/hymenoptera]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tests.support.cli import KTL  # noqa: E402
from tests.support.patterns import flip_labels  # noqa: E402


def as_class_folders(data: Path, out: Path) -> Path:
    """Every photo of ``data/train`` and ``data/val`` in ``out/<class>/``."""
    for split in ("train", "val"):
        for folder in sorted((data / split).iterdir()):
            (out / folder.name).mkdir(parents=True, exist_ok=True)
            for file in sorted(folder.iterdir()):
                shutil.copy(file, out / folder.name / f"{split}_{file.name}")
    return out


def doctor(data: Path, out: Path, backbone: str) -> tuple[dict, float]:
    started = time.perf_counter()
    args = ["doctor", str(data), "--out", str(out), "--backbone", backbone, "--json"]
    done = subprocess.run([sys.executable, "-c", KTL, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"ktl doctor failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/datasets/hymenoptera"))
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--share", type=float, default=0.1)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for seed in (int(s) for s in args.seeds.split(",")):
            data = as_class_folders(Path(args.data), Path(work) / f"data{seed}")
            flipped = flip_labels(data, args.share, seed)
            found, seconds = doctor(data, Path(work) / f"out{seed}", args.backbone)
            issues = {row["path"] for row in found["suspects"] if row["kind"] == "label_issue"}
            right = len(issues & flipped)
            row = {
                "seed": seed,
                "images": sum(1 for _ in data.rglob("*.jpg")),
                "flipped": len(flipped),
                "flagged": len(issues),
                "precision": right / len(issues) if issues else None,
                "recall": right / len(flipped),
                "seconds": round(seconds, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    precision = [r["precision"] for r in rows if r["precision"] is not None]
    recall = [r["recall"] for r in rows]
    print(
        f"mean over {len(rows)} seeds: precision {sum(precision) / len(precision):.3f}, "
        f"recall {sum(recall) / len(recall):.3f}"
    )


if __name__ == "__main__":
    main()
