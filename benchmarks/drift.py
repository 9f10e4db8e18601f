"""False alarms and detections of the monitor's drift test (``models.drift``) on a real
bundle: the test suite's session model (smallcnn trained from scratch on 3 noisy
colours, ``tests/support/trained.py``) with the drift reference its training saved;
20 unshifted streams (new images of the training colours) and 20 shifted ones (colours
no class covers, and the known colours shifted), each tested against the reference
as the monitor tests a window's captured images; then the cost of one test at the
monitor's largest size (256 reference rows, 500 images, 1,280 features: lite0's).

    .venv/bin/python benchmarks/drift.py [--streams 20] [--images 60]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models import drift  # noqa: E402
from models.bundle import Bundle, load_bundle  # noqa: E402
from models.preprocessing import load_image  # noqa: E402
from tests.support import trained  # noqa: E402
from tests.support.data import COLOURS, colour_image  # noqa: E402

NEW_KIND = [(230, 210, 40), (150, 40, 170), (128, 128, 128)]  # yellow, purple, grey
MOVED = [tuple(int(min(c + 70, 255)) for c in colour) for colour in COLOURS.values()]


def _features(bundle: Bundle, colours: list, images: int, seed: int) -> np.ndarray:
    """Features of ``images`` PNGs spread over ``colours``, decoded as the service does."""
    rng = np.random.default_rng(seed)
    pixels = []
    for index in range(images):
        buffer = io.BytesIO()
        colour_image(colours[index % len(colours)], 20, rng).save(buffer, "PNG")
        pixels.append(load_image(buffer.getvalue(), bundle.image_size))
    return bundle.pooled_features(np.stack(pixels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--images", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ktl-drift-") as work:
        bundle = load_bundle(trained.train(Path(work)).bundle)
        reference = bundle.drift_reference()
        assert reference is not None
        print(f"reference: {len(reference)} validation images x {reference.shape[1]} features")
        kinds: dict[str, list] = {"unshifted": list(COLOURS.values()), "shifted": NEW_KIND + MOVED}
        for kind, colours in kinds.items():
            tests = [
                drift.mmd_test(reference, _features(bundle, colours, args.images, 1000 + k))
                for k in range(args.streams)
            ]
            p = np.array([t.p_value for t in tests])
            print(
                f"{kind}: drift raised on {sum(t.drifted for t in tests)} of {len(tests)} "
                f"streams of {args.images} images; p-value median {np.median(p):.3f}, "
                f"range {p.min():.3f}-{p.max():.3f}"
            )
    rng = np.random.default_rng(0)
    big = rng.gamma(1.0, 1.0, (drift.REFERENCE_ROWS + drift.MAX_IMAGES, 1280))
    started = time.perf_counter()
    drift.mmd_test(big[: drift.REFERENCE_ROWS], big[drift.REFERENCE_ROWS :])
    seconds = time.perf_counter() - started
    print(f"one test at 256 x 500 x 1280, {drift.PERMUTATIONS} permutations: {seconds:.2f} s")


if __name__ == "__main__":
    main()
