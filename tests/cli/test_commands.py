"""The commands a user meets first, run in this process on the bundle of ktl 0.1
kept in tests/fixtures (no training): predict on folders and into CSV, the model
list, --version, a closed pipe, quiet converters, filters and explanations."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli import main
from tests.support.cli import KTL

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
STORE = str(FIXTURES / "store_v1")


@pytest.fixture
def images(tmp_path) -> Path:
    """A folder tree: two images at two depths, and a file that is not an image."""
    root = tmp_path / "photos"
    (root / "deeper").mkdir(parents=True)
    shutil.copy(FIXTURES / "red.png", root / "red.png")
    shutil.copy(FIXTURES / "blue.png", root / "deeper" / "blue.png")
    (root / "deeper" / "broken.png").write_bytes(b"not a png")
    (root / "notes.txt").write_text("not an image, not even tried")
    return root


def test_predict_reads_folders_recursively_and_writes_csv(images, tmp_path, capsys):
    table = tmp_path / "out.csv"
    code = main(["predict", str(images), "--name", "legacy", "--store", STORE, "--csv", str(table)])
    out, err = capsys.readouterr()
    assert code == 2, "one file could not be classified"
    assert "broken.png" in err and "1 of 3 files" in err and "notes.txt" not in err
    lines = out.splitlines()
    assert lines[0] == "legacy version 1 (keras engine):", "names the version and engine"
    assert lines[1].startswith(f"{images / 'deeper' / 'blue.png'}: blue  (blue ")
    assert lines[2].startswith(f"{images / 'red.png'}: red  (red ")
    with table.open() as f:
        rows = list(csv.DictReader(f))
    assert [Path(r["path"]).name for r in rows] == ["blue.png", "red.png"]
    expected = json.loads((FIXTURES / "store_v1_predictions.json").read_text())["predictions"]
    red = next(r for r in rows if r["path"].endswith("red.png"))
    assert (red["model"], red["version"], red["label"]) == ("legacy", "1", "red")
    assert red["decision"] == "red", "a version of ktl 0.1 has no threshold: it answers"
    for label, probability in expected[0]["probabilities"].items():
        assert float(red[label]) == pytest.approx(probability, abs=1e-6)


def test_a_prediction_below_the_threshold_is_not_sure(capsys):
    red = str(FIXTURES / "red.png")
    assert (
        main(["predict", red, "--name", "legacy", "--store", STORE, "--min-confidence", "0.9"]) == 0
    )
    assert "red.png: not sure (top probability 0.565 < 0.900)" in capsys.readouterr().out


def test_models_lists_versions_accuracy_and_date(capsys):
    assert main(["models", "--store", STORE, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "legacy" and row["versions"] == [1] and row["default_version"] == 1
    assert row["accuracy"] == pytest.approx(0.666667)
    assert row["created_at"] == "2026-12-02T04:22:34Z"


def test_a_missing_store_says_which_was_read_and_how_to_choose(tmp_path, capsys):
    assert main(["predict", "x.png", "--name", "legacy", "--store", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "no") in err and "--store" in err and "KTL_MODEL_STORE" in err


@pytest.mark.parametrize(
    ("name", "hint"), [("Legacy", "did you mean 'legacy'?"), ("legacyy", "did you mean 'legacy'?")]
)
def test_a_close_miss_gets_a_suggestion(name, hint, capsys):
    assert main(["predict", "x.png", "--name", name, "--store", STORE]) == 2
    assert hint in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("ktl ")


@pytest.mark.slow  # a ktl process of its own that imports TensorFlow
def test_a_closed_pipe_ends_quietly_as_unix_tools_do():
    reader = subprocess.Popen(
        [sys.executable, "-c", KTL, "inspect", "inceptionv3", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None and reader.stderr is not None
    assert reader.stdout.read(100).startswith(b"{")
    reader.stdout.close()  # like `| head`: the rest of the 100 KB has nowhere to go
    err = reader.stderr.read().decode()
    reader.stderr.close()
    assert reader.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_filters_of_a_backbone_without_weights_are_called_random(tmp_path, capsys):
    out = tmp_path / "filters.png"
    assert main(["inspect", "smallcnn", "--image-size", "32", "--filters", str(out)]) == 0
    assert "RANDOM" in capsys.readouterr().err
    with Image.open(out) as image:
        assert image.format == "PNG"


def test_explain_keeps_the_images_shape_and_names_its_own_output(tmp_path, monkeypatch, capsys):
    wide = tmp_path / "wide.png"
    Image.fromarray(np.full((150, 400, 3), 90, np.uint8)).save(wide)
    monkeypatch.chdir(tmp_path)
    assert main(["explain", str(wide), "--name", "legacy", "--store", STORE]) == 0
    assert "wide.gradcam.png" in capsys.readouterr().out
    with Image.open(tmp_path / "wide.gradcam.png") as image:
        width, height = image.size
    assert width / height == pytest.approx(400 / 150, rel=0.02) and width >= 400


def test_backbones_table_keeps_every_column_aligned_whatever_the_name_length(capsys):
    from models.networks.backbones import list_backbones

    assert main(["backbones"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header, rows = lines[0], lines[1:]
    assert len(rows) == len(list_backbones())
    family, size = header.index("family"), header.index("size") + len("size")
    for row, spec in zip(rows, list_backbones(), strict=True):
        assert row.startswith(spec.name + " ")
        assert row[family:].startswith(spec.family + " "), row
        assert row[:size].endswith(str(spec.default_size)), row
    lite0 = rows[[s.name for s in list_backbones()].index("efficientnet_lite0")]
    assert "shipped with ktl" in lite0
