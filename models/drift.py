"""Embedding drift: a two-sample test between the pooled backbone features of live
images and a reference sample of the validation split's, saved in the bundle.

The test is the maximum mean discrepancy (Gretton et al., 2012) with a Gaussian
kernel whose width is the median distance between the pooled samples' rows, and a
permutation test for its p-value, as alibi-detect's ``MMDDrift`` does; written here
with numpy alone (alibi-detect would bring TensorFlow or PyTorch of its own, and
scikit-learn is not in the serving install). Numpy only: no TensorFlow here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REFERENCE_FILE = "drift_reference.npy"  # in the bundle, listed in its checksums
REFERENCE_ROWS = 256  # validation images sampled for the reference, at most
MIN_IMAGES = 30  # live images under this: no test (too few to say anything)
MAX_IMAGES = 500  # the newest live images of a window the test uses, at most
SIGNIFICANCE = 0.01  # drifted when the p-value is under it: a false alarm in 100 tests
PERMUTATIONS = 1000
_FLOAT16_MAX = 60000.0  # a reference with larger values is kept in float32


@dataclass(frozen=True)
class DriftTest:
    """One test's outcome: the squared MMD (``score``), its permutation p-value,
    whether that is under the significance, and the rows on each side."""

    score: float
    p_value: float
    drifted: bool
    images: int
    reference_rows: int


def reference_sample(features: np.ndarray, rows: int = REFERENCE_ROWS, seed: int = 0) -> np.ndarray:
    """At most ``rows`` rows of ``features``, drawn without replacement (seeded)."""
    if len(features) <= rows:
        return features
    chosen = np.random.default_rng(seed).choice(len(features), rows, replace=False)
    return features[np.sort(chosen)]


def reference_bytes(features: np.ndarray) -> bytes:
    """The ``.npy`` bytes of a reference: float16 where its values fit, else float32."""
    values = np.asarray(features, np.float32)
    fits = values.size == 0 or float(np.abs(values).max()) < _FLOAT16_MAX
    buffer = io.BytesIO()
    np.save(buffer, values.astype(np.float16 if fits else np.float32), allow_pickle=False)
    return buffer.getvalue()


def read_reference(path: Path) -> np.ndarray:
    """A saved reference as float32 rows (``np.load`` without pickles)."""
    return np.load(path, allow_pickle=False).astype(np.float32)


def _squared_distances(z: np.ndarray) -> np.ndarray:
    norms = (z * z).sum(axis=1)
    return np.maximum(norms[:, None] + norms[None, :] - 2.0 * (z @ z.T), 0.0)


def _kernel(z: np.ndarray) -> np.ndarray:
    """The Gaussian kernel matrix of the rows of ``z``, its width the median heuristic
    (the median of the distances between distinct rows)."""
    squared = _squared_distances(z)
    upper = squared[np.triu_indices(len(z), k=1)]
    median = float(np.median(np.sqrt(upper))) if upper.size else 0.0
    width = median if median > 0 else 1.0
    return np.exp(-squared / (2.0 * width * width))


def mmd_test(
    reference: np.ndarray,
    live: np.ndarray,
    permutations: int = PERMUTATIONS,
    significance: float = SIGNIFICANCE,
    seed: int = 0,
) -> DriftTest:
    """The squared MMD (biased estimate) between ``reference`` and ``live`` and its
    p-value: the share of ``permutations`` random splits of the pooled rows into two
    samples of the same sizes whose MMD is at least as large (the observed one
    counted among them)."""
    x, y = np.asarray(reference, np.float64), np.asarray(live, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or not len(x) or not len(y):
        raise ValueError(f"two non-empty samples of one width needed, got {x.shape}, {y.shape}")
    n, m = len(x), len(y)
    kernel = _kernel(np.concatenate([x, y]))
    # MMD^2 of a split = w K w, w: 1/n on the first sample's rows, -1/m on the other's.
    side = np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)])
    rng = np.random.default_rng(seed)
    weights = np.stack([side] + [rng.permutation(side) for _ in range(permutations)])
    scores = ((weights @ kernel) * weights).sum(axis=1)
    observed = float(scores[0])
    p_value = float((scores[1:] >= observed - 1e-12).sum() + 1) / (permutations + 1)
    return DriftTest(
        score=round(max(observed, 0.0), 6),
        p_value=round(p_value, 6),
        drifted=p_value < significance,
        images=m,
        reference_rows=n,
    )
