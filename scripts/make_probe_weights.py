"""Make tests/fixtures/smallcnn_patterns.h5: smallcnn pretrained on generated
shapes and textures, the backbone the doctor's tests and CI probe with, since no
ImageNet weights can be downloaded there.

    .venv/bin/python scripts/make_probe_weights.py [OUT.h5]

Eight classes (the demo's circle, square, triangle; a star, a cross; stripes,
checks, dots), 400 pictures each at 32 px, random colours, positions, sizes and
noise (tests/support/patterns.py); 25 epochs of Adam (cosine-decayed learning
rate). The weights are written in the legacy HDF5 layout of the official no-top
files, which ``--weights PATH`` takes. A run here took about 3 minutes on 2 cores
and reached 97-99 % on 400 held-out pictures; TensorFlow on CPUs is not
bit-reproducible, so a rerun gives a file that differs slightly and works the same.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "tests" / "fixtures" / "smallcnn_patterns.h5"
SIZE, PER_CLASS, HELD_OUT, EPOCHS, SEED = 32, 400, 50, 25, 1000


def pictures(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from tests.support.patterns import PRETRAINING_CLASSES, draw_pattern

    rng = np.random.default_rng(seed)
    images, targets = [], []
    for target, kind in enumerate(PRETRAINING_CLASSES):
        for _ in range(per_class):
            images.append(np.asarray(draw_pattern(kind, SIZE, rng)))
            targets.append(target)
    return np.stack(images), np.array(targets, np.int32)


def main(out: Path = OUT) -> None:
    import keras

    from models.networks.backbones import get_backbone
    from models.networks.classifier import build_backbone, build_classifier
    from tests.legacy_h5 import write_legacy_h5
    from tests.support.patterns import PRETRAINING_CLASSES

    keras.utils.set_random_seed(SEED)
    x, y = pictures(PER_CLASS, SEED)
    x_test, y_test = pictures(HELD_OUT, SEED + 1)
    spec = get_backbone("smallcnn")
    backbone = build_backbone(spec, (SIZE, SIZE), None)
    model = build_classifier(spec, backbone, len(PRETRAINING_CLASSES))
    inputs = keras.Input((SIZE, SIZE, 3))
    flipped = keras.layers.RandomFlip("horizontal_and_vertical", seed=SEED)(inputs)
    trainer = keras.Model(inputs, model(flipped))
    trainer.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(2e-3, EPOCHS * -(-len(x) // 64))
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    trainer.fit(x.astype("float32"), y, batch_size=64, epochs=EPOCHS, shuffle=True, verbose=2)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    _, accuracy = model.evaluate(x_test.astype("float32"), y_test, verbose=0)
    print(f"held-out accuracy {accuracy:.3f} on {len(y_test)} pictures")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_legacy_h5(backbone, out)
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
