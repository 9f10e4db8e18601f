"""How ``ktl train`` and ``ktl evaluate`` put figures in words: every accuracy with
its 95 % interval and image count, and the split it comes from."""

from __future__ import annotations

from typing import Any


def figures_line(name: str, figures: dict[str, Any]) -> str:
    """ "test        accuracy 0.920 (95 % CI 0.85-0.96, 153 images), top-2 ..."."""
    interval = figures.get("accuracy_interval")
    spread = f"95 % CI {interval[0]:.2f}-{interval[1]:.2f}, " if interval else ""
    images = figures.get("images", figures.get("val_images"))
    # top-1 is the accuracy itself (two classes): said once.
    top = (
        f"top-{figures['top_k']} {figures['top_k_accuracy']:.3f}, "
        if figures.get("top_k", 1) > 1
        else ""
    )
    return (
        f"  {name:<12}accuracy {figures['accuracy']:.3f} ({spread}{images} images), "
        f"{top}loss {figures['loss']:.3f}, macro F1 {figures['macro_f1']:.3f}"
    )


def baseline_line(figures: dict[str, Any]) -> list[str]:
    base = figures.get("baseline")
    if not base:
        return []
    return [
        f"  baseline    always {base['majority_class']!r}: {base['majority_accuracy']:.3f}; "
        f"chance: {base['chance']:.3f}"
    ]


def calibration_line(calibration: dict[str, Any] | None) -> list[str]:
    if not calibration:
        return ["  calibration off (--no-calibrate): the probabilities are the raw softmax's"]
    before, after = calibration["before"], calibration["after"]
    return [
        f"  calibration temperature {calibration['temperature']:.2f} on {calibration['split']}: "
        f"ECE {before['ece']:.3f} -> {after['ece']:.3f}, NLL {before['nll']:.3f} -> "
        f"{after['nll']:.3f}, Brier {before['brier']:.3f} -> {after['brier']:.3f}"
    ]


def decision_lines(decision: dict[str, Any]) -> list[str]:
    answered = (
        f", {decision['selective_accuracy']:.1%} of them right"
        if decision.get("selective_accuracy") is not None
        else ""
    )
    lines = [
        f"  decision    'not sure' below {decision['threshold']:.3f} ({decision['rule']}): "
        f"answers {decision['coverage']:.1%} of {decision['split']} images{answered}"
    ]
    if decision.get("note"):
        lines.append(f"  note        {decision['note']}")
    ood = decision.get("ood")
    if ood is None:
        lines.append("  off-class   not measured (--ood DIR: images of none of the classes)")
    elif ood.get("images"):
        lines.append(
            f"  off-class   {ood['images']} images: AUROC {ood['auroc']:.3f}; the threshold "
            f"turns away {ood['rejected']:.1%} of them ({ood['in_scope_rejected']:.1%} of "
            "in-class images)"
        )
    return lines


def class_table(figures: dict[str, Any]) -> list[str]:
    width = max(len("class"), *(len(label) for label in figures["per_class"])) + 2
    lines = [f"  {'class':<{width}}precision  recall     f1  support"]
    for label, c in figures["per_class"].items():
        lines.append(
            f"  {label:<{width}}{c['precision']:>9.3f}{c['recall']:>8.3f}{c['f1']:>7.3f}"
            f"{c['support']:>9}"
        )
    return lines
