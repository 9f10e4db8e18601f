"""Real ImageNet features on real photos: hymenoptera (ants and bees) with
EfficientNet-Lite0, whose weights ship with ktl, in one run.

For each seed and each number of training images per class (taken at random by
the seed from hymenoptera's ``train/``; ``val/`` is kept whole, and ktl splits it
into validation and test by content hash, as ``ktl train`` always does):

- ``probe``: a logistic regression on the frozen backbone's pooled features of
  the training images (its strength chosen by cross-validated log-loss on them,
  as ``ktl compare`` and ``ktl doctor`` choose it), scored on the test split;
- ``recipe``: ``ktl train DATA --backbone efficientnet_lite0`` with its defaults;
- ``recipe + tta``: the same run's test figure with test-time augmentation.

Every figure is test accuracy on the same test images; nothing is tuned on them.
Seconds are wall time of each (the probe: features of its images plus the fit).

    nice -n 5 .venv/bin/python benchmarks/imagenet_transfer.py [--seeds 1,2,3]
        [--per-class 5,10,20,all] [--data ../shared/datasets/hymenoptera] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
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

import numpy as np  # noqa: E402

from tests.support.cli import KTL  # noqa: E402

BACKBONE = "efficientnet_lite0"


def subset(data: Path, out: Path, per_class: int | None, seed: int) -> Path:
    """``out`` with ``per_class`` random images per class of ``data/train`` (all: None)
    and the whole of ``data/val``."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for folder in sorted((data / split).iterdir()):
            files = sorted(folder.glob("*.jpg"))
            if split == "train" and per_class is not None:
                files = [files[i] for i in sorted(rng.choice(len(files), per_class, False))]
            (out / split / folder.name).mkdir(parents=True)
            for file in files:
                shutil.copy(file, out / split / folder.name / file.name)
    return out


def train(data: Path, store: Path, seed: int) -> tuple[dict, float]:
    """``ktl train`` with its defaults (and --tta): the published metadata, seconds."""
    started = time.perf_counter()
    args = ["train", str(data), "--name", "bees", "--backbone", BACKBONE, "--seed", str(seed)]
    result = subprocess.run(
        [sys.executable, "-c", KTL, *args, "--tta", "--store", str(store), "--json"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"ktl train failed:\n{result.stderr[-3000:]}")
    path = Path(json.loads(result.stdout)["path"])
    return json.loads((path / "metadata.json").read_text()), seconds


class Features:
    """The frozen backbone's pooled features, by file content (computed once each)."""

    def __init__(self) -> None:
        from models.networks.backbones import get_backbone
        from models.networks.classifier import build_backbone, build_classifier

        spec = get_backbone(BACKBONE)
        size = (spec.default_size, spec.default_size)
        backbone = build_backbone(spec, size, "imagenet")
        model = build_classifier(spec, backbone, 2)
        import keras

        self.model = keras.Model(model.input, model.get_layer("pool").output)
        self.size = size
        self.known: dict[str, np.ndarray] = {}

    def __call__(self, paths: list[Path]) -> np.ndarray:
        from models.preprocessing import load_image

        keys = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
        todo = [(k, p) for k, p in zip(keys, paths, strict=True) if k not in self.known]
        if todo:
            pixels = np.stack([load_image(p, self.size) for _, p in todo])
            out = self.model.predict(pixels, batch_size=32, verbose=0)
            self.known.update({k: f for (k, _), f in zip(todo, out, strict=True)})
        return np.stack([self.known[k] for k in keys])


def probe(data: Path, seed: int, features: Features) -> tuple[float, float]:
    """Test accuracy of the logistic probe fitted on the training split, and seconds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from training.dataset.data import list_samples, split_listing
    from training.dataset.splits import content_hashes
    from training.diagnosis.probe import PROBE_CS

    started = time.perf_counter()
    listing = list_samples(data)
    hashes, _ = content_hashes(listing.samples)
    splits = split_listing(listing, hashes, val_split=0.2, test_split=None, seed=seed).splits
    labels = sorted({s.label for s in listing.samples})
    rows = {name: [i for i, s in enumerate(splits) if s == name] for name in ("train", "test")}
    x = {k: features([listing.samples[i].path for i in v]) for k, v in rows.items()}
    y = {k: np.array([labels.index(listing.samples[i].label) for i in v]) for k, v in rows.items()}
    folds = StratifiedKFold(
        min(5, int(np.bincount(y["train"]).min())), shuffle=True, random_state=seed
    )

    def fitted(c: float):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))

    def cv_loss(c: float) -> float:
        p = cross_val_predict(fitted(c), x["train"], y["train"], cv=folds, method="predict_proba")
        return float(-np.mean(np.log(np.clip(p[np.arange(len(p)), y["train"]], 1e-12, 1))))

    best = min(PROBE_CS, key=cv_loss)
    model = fitted(best).fit(x["train"], y["train"])
    accuracy = float((model.predict(x["test"]) == y["test"]).mean())
    return accuracy, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/datasets/hymenoptera"))
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--per-class", default="5,10,20,all")
    parser.add_argument("--json", help="also write every figure to this file")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    sizes = [None if n == "all" else int(n) for n in args.per_class.split(",")]
    features = Features()
    results = []
    with tempfile.TemporaryDirectory() as work:
        for per_class in sizes:
            for seed in seeds:
                tag = f"{per_class or 'all'}-{seed}"
                data = subset(Path(args.data), Path(work) / tag, per_class, seed)
                probe_acc, probe_s = probe(data, seed, features)
                meta, train_s = train(data, Path(work) / f"store-{tag}", seed)
                row = {
                    "per_class": per_class or "all",
                    "seed": seed,
                    "test_images": meta["metrics"]["images"],
                    "probe": probe_acc,
                    "probe_s": probe_s,
                    "recipe": meta["metrics"]["accuracy"],
                    "recipe_tta": ((meta.get("tta") or {}).get("test") or {}).get("accuracy_tta"),
                    "recipe_s": train_s,
                    "ece": (meta.get("calibration") or {}).get("after", {}).get("ece"),
                }
                results.append(row)
                print(json.dumps(row), flush=True)
    print("\n| images per class | probe | recipe | recipe + tta | probe s | recipe s |")
    print("|---|---|---|---|---|---|")
    for per_class in sizes:
        rows = [r for r in results if r["per_class"] == (per_class or "all")]

        def mean(key: str, rows=rows) -> str:
            values = [r[key] for r in rows if r[key] is not None]
            return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "n/a"

        seconds = [f"{np.mean([r[k] for r in rows]):.0f}" for k in ("probe_s", "recipe_s")]
        print(
            f"| {per_class or 'all'} | {mean('probe')} | {mean('recipe')} | {mean('recipe_tta')} | {' | '.join(seconds)} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
