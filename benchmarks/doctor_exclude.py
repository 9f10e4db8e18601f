"""Does ``ktl train --exclude`` on the doctor's list beat training on noisy labels?
Side by side in one run: the shapes demo with 10 % of its labels flipped, trained
as it is and with ``ktl doctor``'s suspects left out (and, for the ceiling, before
the flips), all scored by
``ktl evaluate`` on the same clean test images, and how many of the flips the
doctor found.

    .venv/bin/python benchmarks/doctor_exclude.py [--per-class 120] [--epochs 25]
        [--weights none|FILE] [--recipe demo --seeds 7,8 --no-clean]

The doctor probes with smallcnn trained from scratch k-fold (``--weights none``,
the default: nothing pretrained, and both trainings start from scratch), or a
linear probe on a weights file such as tests/fixtures/smallcnn_patterns.h5
(pretrained on generated shapes and textures, these three among them, as
ImageNet holds ants and bees), which both trainings then fine-tune.

``--recipe demo`` trains as ``ktl demo`` does without ImageNet weights (smallcnn
from scratch at 32 px, its epochs and patience, no augmentation), the doctor still
probing with ``--weights``: label noise hurts a network that learns every weight
from the labels more than a head on fixed features.
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
from training.dataset.demo import make_shapes_dataset  # noqa: E402


def ktl_json(*args: str) -> dict:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", KTL, *args, "--json"], capture_output=True,
                          text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"ktl {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout)
    result["_wall"] = time.monotonic() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=120)
    parser.add_argument("--test-per-class", type=int, default=60, help="clean test images")
    parser.add_argument("--fine-tune-epochs", default="5", help="with a weights file")
    parser.add_argument("--epochs", type=int, default=25, help="from scratch (--weights none)")
    parser.add_argument("--weights", default="none", help="the doctor's probe: none or FILE")
    parser.add_argument("--seeds", default="7", help="comma-separated: one dataset each")
    parser.add_argument("--recipe", choices=("probe", "demo"), default="probe")
    parser.add_argument("--no-clean", action="store_true", help="skip the ceiling run")
    args = parser.parse_args()
    for seed in (int(text) for text in args.seeds.split(",")):
        run_seed(args, seed)


def run_seed(args: argparse.Namespace, seed: int) -> None:
    args.seed = seed
    work = Path(tempfile.mkdtemp(prefix="doctor-bench-"))
    clean = make_shapes_dataset(work / "clean", args.per_class, 64, seed=args.seed)
    data = Path(shutil.copytree(clean, work / "data"))
    flipped = flip_labels(data, 0.1, args.seed + 1)
    test = make_shapes_dataset(work / "test", args.test_per_class, 64, seed=args.seed + 2)
    doctor = ktl_json("doctor", str(data), "--backbone", "smallcnn", "--weights", args.weights,
                      "--out", str(work / "doctor"))  # fmt: skip
    issues = {r["path"] for r in doctor["suspects"] if r["kind"] == "label_issue"}
    excluded = {r["path"] for r in doctor["suspects"] if r["action"] == "exclude"}
    # trained from scratch, or fine-tuned from the doctor's weights file (its defaults)
    train = [*_recipe(args), "--test-split", "0", "--seed", str(seed),
             "--store", str(work / "store")]  # fmt: skip
    runs = {
        **({} if args.no_clean else {"clean": ktl_json("train", str(clean), "--name", "clean",
                                                       *train)}),  # the ceiling
        "noisy": ktl_json("train", str(data), "--name", "noisy", *train),
        "excluded": ktl_json("train", str(data), "--name", "excluded", *train,
                             "--exclude", str(work / "doctor" / "suspects.csv")),
    }  # fmt: skip
    print(f"seed {seed}, recipe {args.recipe}")
    print(f"data: {sum(1 for _ in data.glob('*/*.png'))} images, {len(flipped)} labels flipped")
    print(f"doctor ({doctor['probe']['description']}): {doctor['seconds']:.0f} s, "
          f"out-of-sample accuracy {doctor['probe']['accuracy']:.3f}; {len(issues)} label "
          f"issues, {len(issues & flipped)} of them flipped; {len(excluded)} files to exclude, "
          f"{len(excluded & flipped)} of them flipped")  # fmt: skip
    print("training   clean test accuracy  (95 % interval)    images   wall s")
    for name, result in runs.items():
        scored = ktl_json("evaluate", name, str(test), "--split", "all",
                          "--store", str(work / "store"))  # fmt: skip
        figures = scored["figures"]
        low, high = figures["accuracy_interval"]
        print(f"{name:10} {figures['accuracy']:19.3f}  ({low:.3f}-{high:.3f})  "
              f"{figures['images']:10d}  {result['_wall']:7.0f}")  # fmt: skip


def _recipe(args: argparse.Namespace) -> list[str]:
    """The training flags: the demo's from-scratch recipe, from scratch, or fine-tuning the
    doctor's weights file (its defaults)."""
    if args.recipe == "demo":
        from cli.commands.demo import DEMO_SCRATCH

        flags = [f"--{key.replace('_', '-')}={value}" for key, value in DEMO_SCRATCH.items()
                 if key != "augment"]  # fmt: skip
        return [*flags, *([] if DEMO_SCRATCH["augment"] else ["--no-augment"])]
    if args.weights == "none":
        return ["--backbone", "smallcnn", "--weights", "none", "--epochs", str(args.epochs)]
    return ["--backbone", "smallcnn", "--weights", args.weights, "--unfreeze-from",
            "block2_conv1", "--fine-tune-epochs", args.fine_tune_epochs]  # fmt: skip


if __name__ == "__main__":
    main()
