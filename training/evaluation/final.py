"""After training: calibration and the decision threshold, chosen on the validation
split; then the test split, decoded and scored once, last. Nothing before this step
decodes a test image (their bytes were only hashed, to place them in their split)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import keras
import numpy as np

from models.decision import answered
from models.engines import tta
from models.label_free import atc_threshold
from models.metadata import (
    Calibration,
    Decision,
    Evaluation,
    Figures,
    Metrics,
    Monitoring,
    OriginalTest,
    SplitFigures,
    TestTimeAugmentation,
)
from models.preprocessing import SkippedImage, decode_images, image_files
from training.config import TrainConfig
from training.dataset.data import Listing, Prepared
from training.dataset.splits import content_fingerprint
from training.distribution import Distribution
from training.evaluation import calibration, decision
from training.evaluation.evaluate import Validation, baseline, evaluate, quality_warnings
from training.fitting import finetune
from training.jobs.state import Log

Forward = Callable[[Any], Any]
F = TypeVar("F", bound=Figures)


@dataclass(frozen=True)
class Outcome:
    """What the final steps found, for the summary, the metadata and the report: the
    typed parts of ``metadata.json`` as they are published."""

    metrics: Metrics  # the figures the summary shows: test's, else validation's
    evaluation: Evaluation
    calibration: Calibration | None
    decision: Decision
    shown: Validation  # the split the metrics come from, calibrated (for the report)
    checked: dict[str, Validation]  # every split scored, by name (validation, test)
    warnings: tuple[str, ...] = ()
    tta: TestTimeAugmentation | None = None  # --tta: the figures with and without it

    @property
    def monitoring(self) -> Monitoring:
        """The monitor's reference, from the calibrated validation split."""
        validation = self.checked["validation"]
        return Monitoring(atc_threshold=atc_threshold(validation.probabilities, validation.targets))


def finish(
    config: TrainConfig,
    model: keras.Model,
    prepared: Prepared,
    listing: Listing,
    distribution: Distribution,
    log: Log,
) -> Outcome:
    """Calibrate and choose the threshold on validation, then score the test split."""
    forward = finetune.inference(model)
    files = [str(listing.samples[i].path) for i in prepared.val]

    def score_val(forward: Forward) -> Validation:
        inputs, targets = prepared.pixels, prepared.targets
        return _scored(distribution, forward, inputs, targets, prepared.val, files, config)

    scorers: dict[str, Callable[[Forward], Validation]] = {"validation": score_val}
    val, temperature, fitted, how = _calibrated(config, model, score_val, forward, log)
    assert config.min_confidence is not None
    threshold = decision.choose_threshold(
        val.probabilities, val.targets, config.min_confidence, config.target_accuracy
    )
    counts = {k: v["train"] for k, v in prepared.report["classes"].items()}
    figures: dict[str, Figures] = {
        "validation": _figures(SplitFigures, val, prepared.labels, counts)
    }
    shown, split = val, "validation"
    checked = {"validation": val}
    if prepared.report.get("test_images"):  # the same on every worker: all take part
        log("Scoring the test split: its images are read now, for the first time")
        test, digests, scorers["test"] = _test(
            distribution, forward, prepared, listing, config, log
        )
        fingerprint = content_fingerprint(digests)
        figures["test"] = _figures(SplitFigures, test, prepared.labels, counts, fingerprint)
        shown, split = test, "test"
        checked["test"] = test
        if "original_test" in prepared.report:  # --exclude/--relabel: DATA's own test split
            figures["original_test"] = _original_test(
                distribution, forward, prepared, test, config, counts, log
            )
    metrics = Metrics.model_validate(
        {**figures[split].model_dump(exclude_unset=True, exclude={"fingerprint"}), "split": split}
    )
    answers = decision.selective(shown.probabilities, shown.targets, threshold.threshold)
    tested = _tta(forward, scorers, {"validation": val, "test": shown}, log) if config.tta else None
    chosen = answers.on(threshold, split)
    if config.ood and distribution.is_chief:
        ood = _out_of_scope(Path(config.ood), forward, config, shown, threshold.threshold, log)
        chosen = chosen.model_copy(update={"ood": ood})
    return Outcome(
        metrics=metrics,
        evaluation=Evaluation.model_validate(figures),
        calibration=_calibration(shown, temperature, split, fitted, val, how),
        decision=chosen,
        shown=shown,
        checked=checked,
        warnings=tuple(quality_warnings(metrics)),
        tta=tested,
    )


def _calibrated(
    config: TrainConfig,
    model: keras.Model,
    score_val: Callable[[Forward], Validation],
    forward: Forward,
    log: Log,
) -> tuple[Validation, float, float | None, str]:
    """Temperature scaling fitted on validation and folded into ``model``: validation
    scored with it, the temperature, the NLL it was fitted on, and how it was chosen."""
    val = score_val(forward)
    if not config.calibrate:
        return val, 1.0, None, ""
    temperature, how = calibration.checked_temperature(val.probabilities, val.targets)
    fitted = calibration.nll(val.probabilities, val.targets)
    calibration.fold_into(model, temperature)  # the traced forward pass sees it too
    log(f"Calibration: temperature {temperature:.3f} ({how})")
    # What the published model answers, to the last bit (the threshold is compared
    # with exactly these float32 numbers when it serves).
    return score_val(forward), temperature, fitted, how


def _scored(
    distribution: Distribution,
    forward: Forward,
    inputs: np.ndarray,
    targets: np.ndarray,
    rows: np.ndarray,
    files: list[str],
    config: TrainConfig,
) -> Validation:
    """Probabilities of ``inputs[rows]`` on every worker, gathered."""
    batches = finetune.batches(inputs, targets, rows, config.batch_size, shuffle=False, seed=0)
    local = Validation(
        finetune.predict_probabilities(forward, batches), targets[rows], files, inputs, rows
    )
    return distribution.gather(local, config.resolved_image_size())


def _test(
    distribution: Distribution,
    forward: Forward,
    prepared: Prepared,
    listing: Listing,
    config: TrainConfig,
    log: Log,
) -> tuple[Validation, list[str], Callable[[Forward], Validation]]:
    """The test images decoded now, scored; their content hashes (every worker's); and
    how to score them with another forward pass."""
    pixels, kept, digests = [], [], []
    size = config.resolved_image_size()
    paths = [listing.samples[row].path for row in prepared.test]
    for image in decode_images(paths, size, _skipped(log, "test"), keep_bytes=True):
        pixels.append(image.pixels)
        kept.append(int(prepared.test[image.position]))
        digests.append(hashlib.sha256(image.data or b"").hexdigest())
    inputs = np.stack(pixels) if pixels else np.zeros((0, *size, 3), np.uint8)
    targets = prepared.targets[np.array(kept, np.int64)]
    files = [str(listing.samples[row].path) for row in kept]

    def score(forward: Forward) -> Validation:
        return _scored(distribution, forward, inputs, targets, np.arange(len(kept)), files, config)

    digests = distribution.joined(digests)  # every worker's test images
    return score(forward), digests, score


def _original_test(
    distribution: Distribution,
    forward: Forward,
    prepared: Prepared,
    test: Validation,
    config: TrainConfig,
    train_counts: dict[str, int],
    log: Log,
) -> OriginalTest:
    """The figures on the original test images (``training.dataset.held_out``): the test
    images kept, with DATA's labels, and the excluded ones, decoded now; images of a
    class the model does not know are left out (counted in ``unknown``)."""
    entry, labels = prepared.report["original_test"], prepared.labels
    was = {item["path"]: item["label"] for item in entry["relabelled_files"]}
    index = {label: k for k, label in enumerate(labels)}
    given = [
        index.get(was.get(f, labels[t]), -1) for f, t in zip(test.files, test.targets, strict=True)
    ]
    excluded = [x for x in entry["excluded_files"] if x["label"] in index]
    mine = excluded[distribution.index :: distribution.workers]  # each worker decodes its share
    size, pixels, files, targets = config.resolved_image_size(), [], [], []

    def skipped(image: SkippedImage) -> None:
        log(f"  skipped excluded test image {image.reason}")

    for image in decode_images([item["path"] for item in mine], size, skipped):
        pixels.append(image.pixels)
        files.append(mine[image.position]["path"])
        targets.append(index[mine[image.position]["label"]])
    inputs = np.stack(pixels) if pixels else np.zeros((0, *size, 3), np.uint8)
    rows, target = np.arange(len(files)), np.array(targets, np.int32)
    if files:
        aside = _scored(distribution, forward, inputs, target, rows, files, config)
    else:  # none excluded from test (relabelled only), or none on this worker
        empty = Validation(np.zeros((0, len(labels)), np.float32), target, files, inputs, rows)
        aside = distribution.gather(empty, size)
    known = np.array([g >= 0 for g in given], bool)
    scored = Validation(
        np.concatenate([test.probabilities[known], aside.probabilities]),
        np.concatenate([np.array(given, np.int32)[known], aside.targets]).astype(np.int32),
        [f for f, k in zip(test.files, known, strict=True) if k] + aside.files,
        None,
        np.zeros(0, np.int64),
    )
    unknown = int((~known).sum()) + len(entry["excluded_files"]) - len(excluded)
    changed = {"excluded": entry["excluded"], "relabelled": entry["relabelled"], "unknown": unknown}
    return _figures(OriginalTest, scored, labels, train_counts, **changed)


def _tta(
    forward: Forward,
    scorers: dict[str, Callable[[Forward], Validation]],
    plain: dict[str, Validation],
    log: Log,
) -> TestTimeAugmentation:
    """``--tta``: each split scored again with the views of ``models.engines.tta`` averaged;
    accuracy and loss with and without, and whether it helped on validation."""
    averaged = tta.with_tta(forward)
    figures = {}
    for split, score in scorers.items():
        scored = score(averaged)
        without, with_ = plain[split], scored
        figures[split] = {
            "accuracy": _accuracy(without),
            "accuracy_tta": _accuracy(with_),
            "gain": round(_accuracy(with_) - _accuracy(without), 6),
            "loss": round(calibration.nll(without.probabilities, without.targets), 6),
            "loss_tta": round(calibration.nll(with_.probabilities, with_.targets), 6),
        }
    gain = figures["validation"]["gain"]
    log(
        f"Test-time augmentation ({len(tta.VIEWS)} views): validation accuracy "
        f"{gain * 100:+.1f} points"
    )
    return TestTimeAugmentation.model_validate(
        {"views": tta.VIEWS, "helped": gain > 0, "gain": gain, **figures}
    )


def _accuracy(scored: Validation) -> float:
    return round(float((scored.probabilities.argmax(axis=1) == scored.targets).mean()), 6)


def _figures(
    kind: type[F],
    scored: Validation,
    labels: list[str],
    train_counts: dict[str, int],
    fingerprint: str | None = None,
    **changed: int,
) -> F:
    """A split's figures with the baseline, as ``kind`` records them."""
    figures = evaluate(scored.probabilities, scored.targets, labels)
    extra: dict[str, Any] = {"fingerprint": fingerprint} if fingerprint else {}
    return kind.model_validate(
        {
            **figures.model_dump(exclude_unset=True),
            "baseline": baseline(train_counts, scored.targets, labels),
            **extra,
            **changed,
        }
    )


def _calibration(
    shown: Validation,
    temperature: float,
    split: str,
    fitted_nll: float | None,
    val: Validation,
    how: str,
) -> Calibration | None:
    """Temperature scaling's figures on the split shown: the calibrated probabilities,
    and what the model gave before (the scaling undone); the validation NLL it was
    fitted on, before and after; and how T was chosen. None: not calibrated."""
    if fitted_nll is None:
        return None
    before = calibration.scale(shown.probabilities, 1 / temperature)
    return Calibration(
        temperature=round(temperature, 6),
        split=split,
        before=calibration.figures(before, shown.targets),
        after=calibration.figures(shown.probabilities, shown.targets),
        validation_nll={
            "before": round(fitted_nll, 6),
            "after": round(calibration.nll(val.probabilities, val.targets), 6),
        },
        how=how,
    )


def _out_of_scope(
    folder: Path,
    forward: Forward,
    config: TrainConfig,
    shown: Validation,
    threshold: float,
    log: Log,
) -> dict[str, Any]:
    """How the model's confidence tells images of none of its classes (``--ood``) from
    its own: AUROC, and the share of them the threshold turns away."""
    size = config.resolved_image_size()
    found = image_files([folder])
    pixels = [image.pixels for image in decode_images(found, size, _skipped(log, "out-of-scope"))]
    if not pixels:
        return {"images": 0, "note": f"no readable image in {folder}"}
    inputs = np.stack(pixels)
    batches = finetune.batches(
        inputs,
        np.zeros(len(inputs), np.int32),
        np.arange(len(inputs)),
        config.batch_size,
        shuffle=False,
        seed=0,
    )
    outside = finetune.predict_probabilities(forward, batches)
    inside = shown.probabilities
    return {
        "images": len(inputs),
        "auroc": round(decision.auroc(inside.max(axis=1), outside.max(axis=1)), 6),
        "rejected": round(float((~answered(outside, threshold)).mean()), 6),
        "in_scope_rejected": round(float((~answered(inside, threshold)).mean()), 6),
    }


def _skipped(log: Log, kind: str) -> Callable[[SkippedImage], None]:
    return lambda image: log(f"  skipped {kind} image {image.reason}")


def describe(outcome: Outcome) -> list[str]:
    """Lines for the log: where the threshold sits and what it gives."""
    d = outcome.decision
    assert d.coverage is not None, "a decision finish() measured"
    lines = [
        f"Decision threshold {d.threshold:.3f} ({d.rule}): answers "
        f"{d.coverage:.1%} of the {d.split} images"
        + (f", {d.selective_accuracy:.1%} of them right" if d.selective_accuracy else "")
    ]
    if d.note:
        lines.append(f"  note: {d.note}")
    return lines
