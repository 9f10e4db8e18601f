"""Training speed, side by side in one run: a phase-1 epoch on cached backbone
features against a plain frozen-backbone ``fit`` on the same data, and a whole
``ktl train`` run on 1,000 generated images at 128 px.

    .venv/bin/python benchmarks/train.py [--images 1000] [--size 128] [--backbone resnet50]
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

import keras  # noqa: E402
import numpy as np  # noqa: E402

from models.networks.backbones import get_backbone  # noqa: E402
from models.networks.classifier import build_backbone, build_classifier  # noqa: E402
from training.dataset.data import list_samples, prepare  # noqa: E402
from training.dataset.demo import make_shapes_dataset  # noqa: E402
from training.fitting import finetune  # noqa: E402


def seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def epoch_times(model: keras.Model, train, val, epochs: int = 2) -> list[float]:
    """Wall time of each epoch of ``fit`` (the first includes tracing)."""
    times: list[float] = []
    marks = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: times.append(time.perf_counter()),
        on_epoch_end=lambda epoch, logs: times.__setitem__(-1, time.perf_counter() - times[-1]),
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(
        train, validation_data=val, epochs=epochs, callbacks=[marks], verbose=0, shuffle=False
    )
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--backbone", default="resnet50")
    args = parser.parse_args()
    size = (args.size, args.size)
    spec = get_backbone(args.backbone)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_shapes_dataset(tmp / "data", per_class=args.images // 3, size=args.size)
        prepared = prepare(list_samples(data), size, val_split=0.2, seed=1, log=lambda m: None)

        def pixels(indices, shuffle):
            return finetune.batches(
                prepared.pixels, prepared.targets, indices, 32, shuffle=shuffle, seed=1
            )

        backbone = build_backbone(spec, size, None)
        model = build_classifier(spec, backbone, len(prepared.labels))
        finetune.freeze_for_head(backbone)
        plain = epoch_times(model, pixels(prepared.train, True), pixels(prepared.val, False))

        features = {}
        extract = seconds(
            lambda: features.update(
                train=finetune.pooled_features(model, pixels(prepared.train, False)),
                val=finetune.pooled_features(model, pixels(prepared.val, False)),
            )
        )
        head = finetune.head_model(model)
        y_train, y_val = prepared.targets[prepared.train], prepared.targets[prepared.val]
        cached = epoch_times(
            head,
            finetune.batches(
                features["train"], y_train, np.arange(len(y_train)), 32, shuffle=True, seed=1
            ),
            finetune.batches(
                features["val"], y_val, np.arange(len(y_val)), 32, shuffle=False, seed=1
            ),
        )
        print(
            f"phase 1, {args.backbone} @{args.size}, {len(prepared.train)} train / {len(prepared.val)} val images"
        )
        print(f"{'':<34}{'epoch 1 s':>10}{'epoch 2 s':>10}")
        print(f"{'plain frozen-backbone fit':<34}{plain[0]:>10.2f}{plain[1]:>10.2f}")
        print(f"{'head on cached features':<34}{cached[0]:>10.2f}{cached[1]:>10.2f}")
        print(f"features computed once: {extract:.1f} s")
        print(f"steady epoch speed-up (plain / cached, epoch 2): {plain[1] / cached[1]:.0f}x")
        n = 10
        print(f"{n} epochs: plain {plain[0] + (n - 1) * plain[1]:.0f} s, "
              f"cached {extract + cached[0] + (n - 1) * cached[1]:.0f} s")  # fmt: skip

        weights = tmp / f"{args.backbone}_random.weights.h5"
        build_backbone(spec, size, None).save_weights(weights)
        command = [
            sys.executable, "-c", "import sys; from cli import main; sys.exit(main(sys.argv[1:]))",
            "train", str(data), "--name", "bench", "--store", str(tmp / "store"), "--backbone", args.backbone,
            "--weights", str(weights), "--image-size", str(args.size), "--epochs", "5",
            "--fine-tune-epochs", "1", "--no-augment", "--json",
        ]  # fmt: skip
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        total = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(result.stderr[-2000:])
        summary = json.loads(result.stdout)
        phases = ", ".join(
            f"{p['name']} {p['epochs']} epochs" for p in summary["training"]["phases"]
        )
        print(f"\nwhole `ktl train` ({args.images} images @{args.size}, {args.backbone} from a weights "
              f"file, {phases}, --no-augment): {total:.0f} s wall, {summary['seconds']:.0f} s in the job")  # fmt: skip


if __name__ == "__main__":
    main()
