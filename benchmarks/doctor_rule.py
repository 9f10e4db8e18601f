"""When are the doctor's label suggestions right most of the time? The precision
of its label issues (the share that really are flipped labels) against the
strength of the probe that found them, to choose the rule by which ``ktl doctor``
pre-fills ``exclude`` rather than ``review`` (``training.diagnosis.suspects.EXCLUDE_ACCURACY``).

Features of varying strength: the same pictures decoded at several sizes, and the
features blurred with Gaussian noise (``--noise``, a multiple of each feature's
spread). 10 % of the labels are flipped in a copy of the data (as
``benchmarks/doctor_flips.py`` does), and the probe, confident learning and the
precision are computed in process.

    nice -n 5 .venv/bin/python benchmarks/doctor_rule.py            # generated patterns
    nice -n 5 .venv/bin/python benchmarks/doctor_rule.py --data ../shared/datasets/hymenoptera \\
        --backbone efficientnet_lite0 --sizes 32,64,128 --noise 0,1,2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from benchmarks.doctor_flips import as_class_folders  # noqa: E402
from tests.support.patterns import flip_labels, make_pattern_dataset  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "smallcnn_patterns.h5"
KINDS = ("star", "cross", "stripes", "dots")


def features_at(data: Path, backbone: str, weights: str, size: int):
    """Every image's pooled features at ``size`` px, the given labels, the paths."""
    from models.networks.backbones import get_backbone
    from models.networks.classifier import build_backbone, resolve_weights
    from training.dataset.data import decode_all, list_samples
    from training.diagnosis import probe

    samples = list_samples(data).samples
    pixels = np.zeros((len(samples), size, size, 3), np.uint8)
    decode_all(samples, list(range(len(samples))), (size, size), pixels)
    spec = get_backbone(backbone)
    with contextlib.redirect_stdout(sys.stderr):
        built = build_backbone(spec, (size, size), resolve_weights(spec, weights))
    labels = sorted({s.label for s in samples})
    targets = np.array([labels.index(s.label) for s in samples])
    paths = [str(s.path.relative_to(data)) for s in samples]
    return probe.backbone_features(spec, built, pixels), targets, labels, paths


def measure(features, targets, labels, paths, flipped, noise: float, seed: int) -> dict:
    from training.diagnosis import probe, suspects

    rng = np.random.default_rng(seed)
    blurred = features + rng.normal(0, 1, features.shape) * noise * features.std(0)
    folds = probe.assign_folds(targets, probe.FOLDS, seed)
    result = probe.probe_features(blurred, targets, len(labels), folds)
    issues = suspects.label_issue_rows(result.probabilities, targets, labels)
    right = sum(paths[row["index"]] in flipped for row in issues)
    return {
        **{k: result.quality[k] for k in ("accuracy", "majority_baseline", "skill", "useful")},
        "flagged": len(issues),
        "right": right,
        "precision": round(right / len(issues), 3) if issues else None,
        "recall": round(right / len(flipped), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="class folders or train/ val/ (default: generated)")
    parser.add_argument("--backbone", default="smallcnn")
    parser.add_argument("--weights", default=str(FIXTURE))
    parser.add_argument("--sizes", default="12,16,24,48")
    parser.add_argument("--noise", default="0,0.5,1,2")
    parser.add_argument("--share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        if args.data:
            data = as_class_folders(Path(args.data), Path(work) / "data")
            args.weights = "imagenet" if args.weights == str(FIXTURE) else args.weights
        else:
            data = make_pattern_dataset(Path(work) / "data", KINDS, 80, 48, args.seed)
        flipped = flip_labels(data, args.share, args.seed)
        for size in (int(s) for s in args.sizes.split(",")):
            found = features_at(data, args.backbone, args.weights, size)
            for noise in (float(n) for n in args.noise.split(",")):
                row = {"size": size, "noise": noise, **measure(*found, flipped, noise, args.seed)}
                rows.append(row)
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
