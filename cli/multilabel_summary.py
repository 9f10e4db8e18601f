"""How ``ktl train``, ``ktl demo`` and ``ktl evaluate`` put a multi-label version's
figures in words: the overall figures, then each label's with its threshold."""

from __future__ import annotations

from typing import Any


def overall_line(name: str, figures: dict[str, Any]) -> str:
    """ "test        mAP 0.982, micro F1 0.919, macro F1 0.924, exact match ..."."""
    empty = figures.get("none_answered_empty")
    none = (
        f", none-of-these images answered empty {empty:.1%} (of {figures['none_images']})"
        if empty is not None
        else ""
    )
    return (
        f"  {name:<12}mAP {figures['map']:.3f}, micro F1 {figures['micro_f1']:.3f}, macro F1 "
        f"{figures['macro_f1']:.3f}, exact match {figures['exact_match']:.3f}, Hamming loss "
        f"{figures['hamming_loss']:.3f} ({figures['images']} images){none}"
    )


def label_table(figures: dict[str, Any], thresholds: dict[str, Any]) -> list[str]:
    """Each label's threshold, precision and recall (95 % CI), F1 and AP."""
    lines = [f"  {'label':<16}{'threshold':>10}{'precision':>22}{'recall':>22}{'F1':>7}{'AP':>7}"]
    for label, row in figures["per_label"].items():
        cells = []
        for key in ("precision", "recall"):
            low, high = row[f"{key}_interval"]
            cells.append(f"{row[key]:.3f} ({low:.2f}-{high:.2f})")
        ap = f"{row['ap']:.3f}" if row["ap"] is not None else "-"
        threshold = thresholds.get(label, {}).get("threshold", float("nan"))
        lines.append(
            f"  {label:<16}{threshold:>10.3f}{cells[0]:>22}{cells[1]:>22}{row['f1']:>7.3f}{ap:>7}"
        )
    return lines


def print_multilabel_summary(result: dict[str, Any]) -> None:
    """What a person reads after a multi-label ``ktl train``."""
    dataset, evaluation = result["dataset"], result["evaluation"]
    print(f"Published {result['name']} version {result['version']}: {result['path']}")
    test = f" / {dataset['test_images']} test" if dataset.get("test_images") else ""
    print(
        f"  data        {dataset['train_images']} train / {dataset['val_images']} validation"
        f"{test} images, {len(dataset['labels'])} labels (multi-label)"
    )
    lines = [f"  note        {warning}" for warning in result.get("warnings", [])]
    phases = result["training"]["phases"]
    lines.append("  training    " + "; ".join(f"{p['name']} {p['epochs']} epochs" for p in phases))
    for split in ("test", "validation"):
        if split in evaluation:
            lines.append(overall_line(split, evaluation[split]))
    decisions = result["multilabel"]
    lines.append(f"  decision    {decisions['rule']}; an empty set means none of these")
    shown = evaluation.get("test") or evaluation["validation"]
    lines += label_table(shown, decisions["labels"])
    lines.append(f"  took        {result['seconds']:.1f} s")
    print("\n".join(lines))


def print_multilabel_scores(result: dict[str, Any]) -> None:
    """``ktl evaluate`` of a multi-label version."""
    figures = result["figures"]
    lines = [
        f"{result['name']} version {result['version']} on {result['data']} "
        f"({result['split']} split, content {result['fingerprint'][:12]})",
        overall_line(result["split"], figures),
    ]
    if result["skipped"]:
        lines.append(f"  note        {len(result['skipped'])} files could not be read")
    thresholds = {label: {"threshold": t} for label, t in result["thresholds"].items()}
    lines += label_table(figures, thresholds)
    print("\n".join(lines))
