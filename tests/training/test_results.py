"""Typed results end to end: each step of a training job returns a typed object (no
bare dict read by string keys), and the bundle assembled from them keeps the
``metadata.json`` (and ``ktl train --json``) of the dicts it replaced."""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.trained import Trained

# The steps ``training.job.run_job`` walks, in order, with the functions that make
# their parts: module -> public functions.
STEPS = {
    "training.job": ["run_job"],
    "training.fitting.recipe": ["train"],
    "training.evaluation.final": ["finish"],
    "training.evaluation.evaluate": ["evaluate", "baseline"],
    "training.evaluation.calibration": ["figures"],
    "training.evaluation.decision": ["choose_threshold", "selective"],
    "training.publishing.publish": ["bundle_metadata"],
    "training.publishing.release": ["release"],
}
# Recorded from the session's bundle (tests/support/trained.py) by the code before the
# results were typed (main at e23a28f), with ``_shape`` below.
RECORDED = Path(__file__).with_name("published_shape.json")
FIGURES = ("metrics", "evaluation", "calibration", "decision", "tta")


def _returns(module: str) -> dict[str, ast.expr | None]:
    """Each function's return annotation, read from the source (no TensorFlow import)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    tree = ast.parse(Path(spec.origin).read_text())
    return {node.name: node.returns for node in tree.body if isinstance(node, ast.FunctionDef)}


def _untyped(annotation: ast.expr | None) -> str | None:
    """What makes a return annotation untyped: none at all, ``Any``, or a dict."""
    if annotation is None:
        return "no return annotation"
    names = {node.id for node in ast.walk(annotation) if isinstance(node, ast.Name)}
    found = names & {"dict", "Any", "Dict", "Mapping"}
    return f"returns {ast.unparse(annotation)}" if found else None


@pytest.mark.parametrize("module", sorted(STEPS))
def test_each_training_step_returns_a_typed_object(module):
    returns = _returns(module)
    problems = {name: _untyped(returns[name]) for name in STEPS[module] if _untyped(returns[name])}
    assert not problems, f"{module}: {problems}"


def test_the_final_outcome_holds_typed_figures_not_dicts():
    spec = importlib.util.find_spec("training.evaluation.final")
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text())
    (outcome,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Outcome"]
    fields = {
        node.target.id: node.annotation
        for node in outcome.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }
    assert {"metrics", "evaluation", "calibration", "decision", "tta"} <= fields.keys()
    untyped = {name: ast.unparse(a) for name, a in fields.items() if "Any" in ast.unparse(a)}
    assert not untyped


def test_the_check_sees_a_bare_dict():
    source = "def step() -> dict[str, Any]: ...\ndef other() -> Figures | None: ..."
    first, second = ast.parse(source).body
    assert isinstance(first, ast.FunctionDef) and isinstance(second, ast.FunctionDef)
    assert _untyped(first.returns) == "returns dict[str, Any]"
    assert _untyped(second.returns) is None


def _shape(value: Any) -> Any:
    """Keys and JSON types, lists by their first item."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


@pytest.mark.slow
def test_published_metadata_and_the_json_summary_keep_their_shape(trained_store: Trained):
    result = trained_store.summary.to_json()
    metadata = json.loads((trained_store.bundle / "metadata.json").read_text())
    found = {
        "metadata_keys": sorted(metadata),
        "metadata": {key: _shape(metadata[key]) for key in FIGURES if key in metadata},
        "result_keys": sorted(result),
        "result": {key: _shape(result[key]) for key in FIGURES if key in result},
    }
    assert found == json.loads(RECORDED.read_text())
