"""What a person reads after ``ktl train`` (and ``ktl demo``): where the model
went, how it trained, and its figures."""

from __future__ import annotations

from typing import Any

from cli import summary
from cli.multilabel_summary import print_multilabel_summary
from training.dataset import held_out


def _phase_line(phase: dict[str, Any], recipe: str) -> str:
    """ "head 23 of 40 epochs, stopped early, kept epoch 13"; without the phase's name
    when it is the recipe's ("scratch: 30 of 30 epochs")."""
    line = f"{phase['epochs']}" if phase["name"] == recipe else f"{phase['name']} {phase['epochs']}"
    if "max_epochs" in phase:
        line += f" of {phase['max_epochs']}"
    line += " epochs"
    if phase.get("epochs_asked"):
        line += (
            f" (raised from {phase['epochs_asked']}: at {phase['steps_per_epoch']} steps an "
            "epoch, the head gets at least --min-steps steps)"
        )
    if isinstance(phase.get("lr"), int | float):
        line += f" at lr {phase['lr']:.2g}"
    if phase.get("stopped_early"):
        line += ", stopped early (no better validation loss)"
    if phase.get("kept_epoch") and phase["kept_epoch"] != phase["epochs"]:
        line += f", kept epoch {phase['kept_epoch']}'s weights"
    return line


def _regime_line(regime: dict[str, Any]) -> str:
    """The settings that changed how the phases learnt, when any differ from plain."""
    parts = [] if regime.get("schedule", "constant") == "constant" else [regime["schedule"]]
    parts += [
        f"{name.replace('_', ' ')} {regime[name]:g}"
        for name in ("label_smoothing", "mixup", "cutmix")
        if regime.get(name)
    ]
    if regime.get("randaugment"):
        parts.append("RandAugment")
    if regime.get("layer_decay", 1) < 1:
        parts.append(f"layer decay {regime['layer_decay']:g}")
    return ", ".join(parts)


def _release_lines(release: dict[str, Any] | None) -> list[str]:
    """What --promote, --promote-if-better and --keep did."""
    if not release:
        return []
    lines = [f"  release     {release['reason']}"] if "reason" in release else []
    if release.get("deleted"):
        lines.append(f"  deleted     versions {', '.join(map(str, release['deleted']))} (--keep)")
    lines.append(f"  serving     version {release['default_version']} by default")
    return lines


def _tta_line(tta: dict[str, Any]) -> str:
    """ "tta  6 views: validation accuracy 0.900 -> 0.925 (+2.5 points), helped; ..."."""
    parts = [
        f"{split} accuracy {tta[split]['accuracy']:.3f} -> {tta[split]['accuracy_tta']:.3f} "
        f"({tta[split]['gain'] * 100:+.1f} points)"
        for split in ("validation", "test")
        if split in tta
    ]
    verdict = "helped on validation" if tta["helped"] else "did not help on validation"
    return f"  tta         {len(tta['views'])} views: {'; '.join(parts)}; {verdict}"


def _original_test_lines(result: dict[str, Any]) -> list[str]:
    """With --exclude/--relabel: the figures on DATA's own test split beside the new
    ones, and what the CSVs changed in it."""
    figures = (result.get("evaluation") or {}).get("original_test")
    changes = result["dataset"].get("original_test")
    if not changes:
        return []
    if not figures:  # no test split left to score
        return [f"  corrected   {held_out.describe(changes)}"]
    unknown = f"; {figures['unknown']} of unknown classes not scored" if figures["unknown"] else ""
    return [
        summary.figures_line("original", figures)
        + " (the test split before --exclude/--relabel, DATA's labels)",
        f"  corrected   {held_out.describe(changes)}{unknown}",
    ]


def print_summary(result: dict[str, Any]) -> None:
    """What a person reads after ``ktl train``: where the model went, its figures."""
    if result.get("task") == "multilabel":
        return print_multilabel_summary(result)
    metrics, dataset, training = result["metrics"], result["dataset"], result["training"]
    worker = result.get("worker")
    if worker and worker["index"]:
        print(
            f"Trained as worker {worker['index']} of {worker['workers']}; the chief published "
            f"{result['name']} version {result['version']}: {result['path']}"
        )
    else:
        print(f"Published {result['name']} version {result['version']}: {result['path']}")
    test = f" / {dataset['test_images']} test" if dataset.get("test_images") else ""
    print(
        f"  data        {dataset['train_images']} train / {dataset['val_images']} "
        f"validation{test} images, {len(dataset['classes'])} classes; {dataset['skipped']} "
        f"skipped, {dataset['ignored_files']} non-image files ignored"
    )
    lines = [f"  note        {warning}" for warning in dataset["warnings"]]
    if dataset.get("reviewed"):  # --add-reviewed
        lines.insert(0, f"  reviewed    {held_out.describe_reviewed(dataset['reviewed'])}")
    lines.append(f"  training    {training['recipe']}: ")
    lines[-1] += "; ".join(_phase_line(p, training["recipe"]) for p in training["phases"])
    regime = _regime_line(training.get("regime", {}))
    if regime:
        lines.append(f"  regime      {regime}")
    lines.append(summary.figures_line(metrics.get("split", "validation"), metrics))
    lines += _original_test_lines(result)
    validation = (result.get("evaluation") or {}).get("validation")
    if metrics.get("split") == "test" and validation:
        lines.append(summary.figures_line("validation", validation) + " (chose the epoch)")
    lines += summary.baseline_line(metrics)
    if result.get("tta"):
        lines.append(_tta_line(result["tta"]))
    if "decision" in result:
        lines += summary.calibration_line(result.get("calibration"))
        lines += summary.decision_lines(result["decision"])
    lines += [f"  WARNING     {warning}" for warning in result.get("warnings", [])]
    lines += _release_lines(result.get("release"))
    lines += summary.class_table(metrics)
    lines.append(f"  took        {result['seconds']:.1f} s")
    print("\n".join(lines))
