"""Out-of-sample predicted probabilities for every image of a dataset, k-fold:
each image is scored by a model that never saw it.

Two ways, chosen by what the backbone has:

- **a linear probe** (``linear_probe``): the backbone's pooled features are
  computed once (``backbone_features``), then a logistic regression is fitted k
  times on them. Cheap (seconds after the features) and as good as the features:
  pretrained weights (ImageNet, or ``--weights PATH``) make it strong, random
  weights make it guess;
- **a small network trained k times** (``network_probe``), for a backbone without
  pretrained weights and none given: the backbone trains from scratch on each
  k-1 folds (fixed epochs, no early stopping, since the held-out fold must not
  choose anything) and scores the fold left out.

``probe_accuracy`` tells whether the result is worth anything: how far the
out-of-sample accuracy gets from always answering the largest class.

Written for reuse (``ktl compare`` ranks backbones by the same probe): with the
images decoded once and ``folds = assign_folds(targets, FOLDS, seed)``,

    features = backbone_features(spec, backbone, pixels)   # once per backbone
    result = probe_features(features, targets, classes, folds)
    result.quality["accuracy"], result.probabilities        # out of sample

and ``probe_from_scratch`` for a backbone without pretrained weights.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

FOLDS = 5
# Inverse L2 strengths of the logistic regression (on standardised features) tried;
# the one whose out-of-fold predictions have the lowest log-loss is kept. Noisy
# labels want strong regularisation (0.01 won on generated shapes with 10 % of the
# labels flipped), clean, separable features a weak one.
PROBE_CS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
NETWORK_EPOCHS = 12  # per fold, for a backbone trained from scratch
# Out-of-sample accuracy must close this share of the gap between always answering
# the largest class and a perfect score before its disagreements mean anything.
USEFUL_SKILL = 0.5
# ... and this share before ``ktl doctor`` pre-fills ``exclude`` for them rather than
# ``review``: with 10 % of the labels flipped, the 11 probes at or above it flagged
# mostly wrong labels (precision 0.59-1.00), 6 of the 8 useful ones below it mostly
# correct ones (0.37-0.62; benchmarks/doctor_rule.py, docs/doctor.md).
STRONG_SKILL = 0.65


@dataclass
class ProbeResult:
    method: str  # "linear_probe" or "network"
    description: str  # for a person: what scored the images
    probabilities: np.ndarray  # (n, classes), each row from a model that never saw it
    features: np.ndarray  # (n, d) an embedding of every image (outliers, near-copies)
    folds: np.ndarray  # (n,) the fold each image was held out in
    targets: np.ndarray  # (n,) the given class index of every image

    @property
    def quality(self) -> dict:
        """``probe_accuracy`` of these probabilities."""
        return probe_accuracy(self.probabilities, self.targets)


def probe_features(
    features: np.ndarray, targets: np.ndarray, classes: int, folds: np.ndarray, source: str = ""
) -> ProbeResult:
    """The linear probe on features computed once (``backbone_features``); ``source``
    names them for a person (e.g. ``resnet50 features (weights: imagenet)``)."""
    probabilities = linear_probe(features, targets, classes, folds)
    description = (
        f"a linear probe (logistic regression, {len(np.unique(folds))}-fold) on "
        f"{source or 'the features'}"
    )
    return ProbeResult("linear_probe", description, probabilities, features, folds, targets)


def probe_from_scratch(
    spec, pixels: np.ndarray, targets: np.ndarray, classes: int, folds: np.ndarray, **options
) -> ProbeResult:
    """``network_probe`` (``options``: its ``seed``, ``batch_size``, ``epochs``, ``log``)."""
    probabilities, features = network_probe(spec, pixels, targets, classes, folds, **options)
    k = len(np.unique(folds))
    description = (
        f"{spec.name} trained from scratch on {k - 1} of {k} folds "
        f"({options.get('epochs', NETWORK_EPOCHS)} epochs each), scoring the fold left out"
    )
    return ProbeResult("network", description, probabilities, features, folds, targets)


def assign_folds(targets: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold for every image, stratified: each class spread evenly over the folds."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(targets), np.int64)
    offset = 0
    for label in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == label))
        fold[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)  # small classes do not all start in fold 0
    return fold


def linear_probe(
    features: np.ndarray, targets: np.ndarray, classes: int, folds: np.ndarray
) -> np.ndarray:
    """Out-of-sample probabilities of a logistic regression fitted on the other folds,
    at the regularisation (``PROBE_CS``) whose out-of-fold log-loss is lowest: one
    number chosen on all images, each image still scored by a model that never saw it."""
    from threadpoolctl import threadpool_limits

    best, best_loss = None, np.inf
    # One BLAS thread: these problems are tiny, and threads that wait for a share of
    # the cores made the fits ten times slower here (2 cores, TensorFlow loaded).
    with threadpool_limits(1):
        for c in PROBE_CS:
            probabilities = _folds_of_probe(features, targets, classes, folds, c)
            right = probabilities[np.arange(len(targets)), targets]
            loss = -np.log(np.clip(right, 1e-7, 1)).mean()
            if loss < best_loss:
                best, best_loss = probabilities, loss
    assert best is not None
    return best


def _folds_of_probe(features, targets, classes, folds, c: float) -> np.ndarray:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    probabilities = np.zeros((len(targets), classes), np.float64)
    for fold in np.unique(folds):
        held, kept = folds == fold, folds != fold
        mean, std = features[kept].mean(0), features[kept].std(0) + 1e-6
        model = LogisticRegression(C=c, max_iter=1000)
        with warnings.catch_warnings():
            # a few more iterations would move the probabilities in the 4th decimal
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit((features[kept] - mean) / std, targets[kept])
        probabilities[np.ix_(held, model.classes_)] = model.predict_proba(
            (features[held] - mean) / std
        )
    return probabilities


def backbone_features(spec, backbone, pixels: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The pooled features (the classifier head's input) of every image, by a
    built ``backbone`` of ``spec``."""
    from models.networks.classifier import build_classifier
    from training.fitting.finetune import batches, pooled_features

    model = build_classifier(spec, backbone, 2)  # its head is never used
    return pooled_features(model, _in_order(pixels, batch_size, batches))


def _in_order(pixels: np.ndarray, batch_size: int, batches: Callable):
    rows, targets = np.arange(len(pixels)), np.zeros(len(pixels), np.int32)
    return batches(pixels, targets, rows, batch_size, shuffle=False, seed=0)


def network_probe(
    spec,
    pixels: np.ndarray,
    targets: np.ndarray,
    classes: int,
    folds: np.ndarray,
    *,
    seed: int,
    batch_size: int = 32,
    epochs: int = NETWORK_EPOCHS,
    log: Callable[[str], None] = lambda message: None,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-sample probabilities of ``spec`` trained from scratch on the other
    folds, and the embedding of every image by the first fold's network."""
    probabilities = np.zeros((len(targets), classes), np.float64)
    features = np.zeros((0, 0), np.float32)
    for fold in np.unique(folds):
        log(f"  fold {fold + 1} of {len(np.unique(folds))}: training {spec.name} from scratch")
        model, backbone = _fit_fold(
            spec,
            pixels,
            targets,
            classes,
            np.flatnonzero(folds != fold),
            seed + int(fold),
            batch_size,
            epochs,
        )
        probabilities[folds == fold] = _predict(model, pixels, np.flatnonzero(folds == fold))
        if fold == folds.min():
            from training.fitting.finetune import batches, pooled_features

            features = pooled_features(model, _in_order(pixels, 64, batches))
    return probabilities, features


def _fit_fold(spec, pixels, targets, classes, train, seed, batch_size, epochs):
    import keras

    from models.networks.classifier import build_backbone, build_classifier
    from training.fitting.finetune import batches, recalibrate_batchnorm, training_model

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    backbone = build_backbone(spec, pixels.shape[1:3], None)
    model = build_classifier(spec, backbone, classes)
    fit_model = training_model(model, augment=True, seed=seed)
    fit_model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    data = batches(pixels, targets, train, batch_size, shuffle=True, seed=seed)
    with contextlib.redirect_stdout(sys.stderr):
        fit_model.fit(data, epochs=epochs, verbose=0, shuffle=False)  # data reshuffles itself
    # moving statistics lag behind weights trained from scratch (training.fitting.finetune)
    ordered = batches(pixels, targets, train, 64, shuffle=False, seed=0)
    recalibrate_batchnorm(model, backbone, ordered)
    return model, backbone


def _predict(model, pixels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    from training.fitting.finetune import batches, predict_probabilities

    data = batches(pixels, np.zeros(len(pixels), np.int32), rows, 64, shuffle=False, seed=0)
    return predict_probabilities(model, data)


def probe_accuracy(probabilities: np.ndarray, targets: np.ndarray) -> dict:
    """Out-of-sample accuracy against the majority baseline, whether it is useful
    (its label issues are listed) and strong (they are pre-filled ``exclude``, else
    ``review``): ``skill`` is the share of the gap to a perfect score it closes."""
    accuracy = float((probabilities.argmax(1) == targets).mean())
    return _quality(accuracy, float(np.bincount(targets).max() / len(targets)), len(targets))


def _quality(accuracy: float, majority: float, images: int) -> dict:
    skill = (accuracy - majority) / (1 - majority) if majority < 1 else 0.0
    return {
        "accuracy": round(accuracy, 4),
        "majority_baseline": round(majority, 4),
        "skill": round(skill, 4),
        "useful": skill >= USEFUL_SKILL,
        "strong": skill >= STRONG_SKILL,
        "images": int(images),
    }


def multilabel_probe(features: np.ndarray, targets: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Out-of-sample sigmoid probabilities ``(n, labels)`` of a multi-label dataset
    (``targets``: 0/1 per label): one logistic regression per label on the other
    folds, at the ``PROBE_CS`` whose out-of-fold binary cross-entropy is lowest."""
    from threadpoolctl import threadpool_limits

    best, best_loss = None, np.inf
    with threadpool_limits(1):  # as linear_probe
        for c in PROBE_CS:
            probabilities = np.zeros(targets.shape, np.float64)
            for fold in np.unique(folds):
                held, kept = folds == fold, folds != fold
                mean, std = features[kept].mean(0), features[kept].std(0) + 1e-6
                train, scored = (features[kept] - mean) / std, (features[held] - mean) / std
                for label in range(targets.shape[1]):
                    probabilities[held, label] = _sigmoid_fit(
                        train, targets[kept, label], scored, c
                    )
            p = np.clip(probabilities, 1e-7, 1 - 1e-7)
            loss = -(targets * np.log(p) + (1 - targets) * np.log(1 - p)).mean()
            if loss < best_loss:
                best, best_loss = probabilities, loss
    assert best is not None
    return best


def _sigmoid_fit(train: np.ndarray, has: np.ndarray, scored: np.ndarray, c: float) -> np.ndarray:
    """p(label) of the ``scored`` rows by a logistic regression fitted on ``train``;
    the training share where the other folds hold only one value of it."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if has.min() == has.max():
        return np.full(len(scored), float(has[0]))
    model = LogisticRegression(C=c, max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(train, has.astype(np.int64))
    return model.predict_proba(scored)[:, 1]


def multilabel_accuracy(probabilities: np.ndarray, targets: np.ndarray) -> dict:
    """``probe_accuracy`` of a multi-label probe, per label at 0.5 and averaged over
    the labels (one minus the Hamming loss), against always answering each label's
    more common value."""
    accuracy = float(((probabilities >= 0.5) == (targets >= 0.5)).mean())
    share = targets.mean(axis=0)
    return _quality(accuracy, float(np.maximum(share, 1 - share).mean()), len(targets))
