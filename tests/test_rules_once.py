"""Each rule once (issue 27): one ``Decision`` class, the decision rule written only in
models/decision.py, one timestamp helper; tests/models/test_decision.py tests the rule
itself."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "training", "service", "cli")
SOURCES = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))
RULE_HOME = ROOT / "models" / "decision.py"
# The rule's characteristic comparison: a probability against a threshold, either way.
RULE = re.compile(r"(>=?|<=?)\s*\w*threshold\b|\bthreshold\w*\s*(>=?|<=?)(?!=)")


def _classes(path: Path, name: str) -> list[str]:
    tree = ast.parse(path.read_text())
    return [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.name == name
    ]


def _rule_lines(text: str) -> list[int]:
    return [number for number, line in enumerate(text.splitlines(), 1) if RULE.search(line)]


def test_one_decision_class():
    found = [where for path in SOURCES for where in _classes(path, "Decision")]
    assert found == ["models/metadata.py:" + found[0].split(":")[1]], found


def test_the_threshold_rule_is_written_once():
    elsewhere = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in SOURCES
        if path != RULE_HOME
        for line in _rule_lines(path.read_text())
    ]
    assert not elsewhere, f"apply the decision rule with models.decision: {elsewhere}"
    assert _rule_lines(RULE_HOME.read_text()), "the rule's home no longer matches RULE"


@pytest.mark.parametrize(
    "line",
    [
        "label if row.max() >= threshold else None",
        "np.where(probabilities.max(1) >= threshold, best, -1)",
        "rejected = (outside < threshold).mean()",
        "answered = threshold <= confidence",
        "ok = confidence >= min_threshold",
    ],
)
def test_the_guard_sees_a_second_copy_of_the_rule(line):
    assert _rule_lines(line)


@pytest.mark.parametrize(
    "line",
    ["threshold = threshold_of(bundle)", "f'{threshold:.3f}'", "if threshold == 0:"],
)
def test_the_guard_leaves_other_uses_of_a_threshold_alone(line):
    assert not _rule_lines(line)


def test_one_clock():
    """Times are recorded through models.timestamps only: no other module formats now."""
    clocks = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in SOURCES
        if path != ROOT / "models" / "timestamps.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\.isoformat\(|def \w*now\(|strftime\(\"%Y-%m-%dT", line)
    ]
    assert not clocks, f"use models.timestamps: {clocks}"


def test_each_fingerprint_says_what_it_fingerprints():
    """A listing's files, a set of images by content and a version's folder are three
    things: no bare ``fingerprint``, and no two functions of the same name."""
    names = [
        name
        for path in SOURCES
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and "fingerprint" in (name := node.name)
    ]
    assert len(names) == len(set(names)) >= 3, names
    assert not {"fingerprint", "_fingerprint"} & set(names), names


def test_training_publishes_in_one_place():
    """Only training/publishing/publish.py saves a bundle: training/publishing/quantize.py
    makes the INT8 engine and nothing more."""
    publishers = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "training").rglob("*.py")
        if "save_bundle(" in path.read_text()
    )
    assert publishers == ["training/publishing/publish.py"]
