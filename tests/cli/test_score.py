"""``ktl score`` in this process, on the fixture version kept in tests/fixtures (no
training): one line per image, each the body ``ktl predict --json`` gives (the HTTP
native predict body), bad images as error lines, reruns, shards, inputs through
fsspec, and its refusals. The 5,000-image run killed halfway is
tests/e2e/test_score_e2e.py."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pytest

from tests.support.cli import ktl_here
from tests.support.data import COLOURS, make_colour_dataset

STORE = str(Path(__file__).resolve().parents[1] / "fixtures" / "store_v1")


@pytest.fixture
def images(tmp_path) -> Path:
    """Two images of each colour in its folder, a file that is no image, a text file."""
    root = make_colour_dataset(tmp_path / "photos", per_class=2, size=12)
    (root / "blue" / "broken.png").write_bytes(b"not a png")
    (root / "notes.txt").write_text("not an image, not even tried")
    return root


# The keys of ``images``: its images' paths inside it, the broken one included.
KEYS = {f"{c}/{c}_{i:03d}.png" for c in COLOURS for i in range(2)} | {"blue/broken.png"}


def _score(*args: str) -> dict:
    done = ktl_here("score", "legacy", *args, "--store", STORE, "--batch", "4", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _lines(path: Path) -> dict[str, dict]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    by_image = {record["image"]: record for record in records}
    assert len(by_image) == len(records), "an image scored twice"
    return by_image


def test_each_image_gets_the_native_predict_body_and_a_bad_one_an_error_line(images, tmp_path):
    out = tmp_path / "scores.jsonl"
    summary = _score(str(images), "--out", str(out))
    assert (summary["scored"], summary["errors"], summary["engine"]) == (6, 1, "keras")
    lines = _lines(out)
    assert set(lines) == KEYS
    broken = lines["blue/broken.png"]
    assert broken["code"] == "invalid_image" and "broken.png" in broken["error"]
    files = [str(images / "blue" / "blue_001.png"), str(images / "red" / "red_000.png")]
    predicted = ktl_here("predict", *files, "--name", "legacy", "--store", STORE, "--json")
    body = json.loads(predicted.stdout)
    for image, expected in zip(
        ["blue/blue_001.png", "red/red_000.png"], body["predictions"], strict=True
    ):
        line = lines[image]
        assert (line["model"], line["version"]) == (body["model"], body["version"])
        (prediction,) = line["predictions"]
        assert prediction["filename"] == expected["filename"]
        assert prediction["decision"]["label"] == expected["decision"]["label"]
        assert prediction["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-5)


def test_a_rerun_scores_only_what_is_missing(images, tmp_path):
    out = tmp_path / "scores.jsonl"
    _score(str(images), "--out", str(out))
    kept = out.read_text().splitlines()
    out.write_text("\n".join(kept[:3]) + "\n" + kept[3][:20])  # as a kill mid-batch leaves it
    again = _score(str(images), "--out", str(out))
    assert (again["skipped"], again["scored"] + again["errors"]) == (3, 4)
    assert len(_lines(out)) == 7
    assert _score(str(images), "--out", str(out))["scored"] == 0


def test_shards_write_their_own_parts_which_together_hold_every_image(
    images, tmp_path, monkeypatch
):
    out = tmp_path / "scores.jsonl"
    first = _score(str(images), "--out", str(out), "--shard", "0/2")
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    second = _score(str(images), "--out", str(out), "--shards", "2")
    assert second["out"] == str(tmp_path / "scores-00001-of-00002.jsonl")
    parts = [_lines(Path(first["out"])), _lines(Path(second["out"]))]
    assert not set(parts[0]) & set(parts[1])
    assert set(parts[0]) | set(parts[1]) == KEYS and not out.exists()


def test_a_csv_and_an_fsspec_prefix_are_inputs_too(images, tmp_path):
    (tmp_path / "list.csv").write_text("path\nphotos/red/red_001.png\nphotos/green/green_000.png\n")
    _score(str(tmp_path / "list.csv"), "--out", str(tmp_path / "csv.jsonl"))
    assert list(_lines(tmp_path / "csv.jsonl")) == [
        "photos/red/red_001.png",
        "photos/green/green_000.png",
    ]
    fs = fsspec.filesystem("memory")
    fs.put(str(images), "/score-cli", recursive=True)
    try:
        _score("memory://score-cli", "--out", str(tmp_path / "mem.jsonl"))
    finally:
        fs.rm("/score-cli", recursive=True)
    assert set(_lines(tmp_path / "mem.jsonl")) == KEYS


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--shard", "2/2"], "I must be from 0 to N-1"),
        (["--shards", "3"], "--shards needs $JOB_COMPLETION_INDEX"),
        (["--batch", "0"], "must be at least 1"),
        (["--engine", "int8"], "has no INT8 engine"),
    ],
)
def test_refusals_say_what_to_do(images, tmp_path, monkeypatch, extra, message):
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    out = str(tmp_path / "s.jsonl")
    done = ktl_here("score", "legacy", str(images), "--out", out, "--store", STORE, *extra)
    assert done.returncode == 2 and message in done.stderr


def test_a_file_scored_by_another_version_is_not_mixed_into(images, tmp_path):
    out = tmp_path / "scores.jsonl"
    out.write_text(json.dumps({"image": "x.png", "model": "legacy", "version": 7}) + "\n")
    done = ktl_here("score", "legacy:1", str(images), "--out", str(out), "--store", STORE)
    assert done.returncode == 2 and "legacy version 7" in done.stderr
