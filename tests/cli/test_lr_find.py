"""``ktl lr-find``: the range test of each phase alone, with the options of
``ktl train``; suggestions on stdout, plots where asked, nothing published."""

from __future__ import annotations

import json

import pytest

from cli import main
from models.networks.backbones import get_backbone
from tests.support.data import make_colour_dataset

pytestmark = pytest.mark.slow  # two range tests and a short head phase: ~30 s


def test_lr_find_suggests_a_rate_per_phase_and_publishes_nothing(tmp_path, capsys):
    data = make_colour_dataset(tmp_path / "data", per_class=8, size=32)
    weights = tmp_path / "smallcnn.weights.h5"
    get_backbone("smallcnn").build((32, 32, 3), None).save_weights(weights)
    store, out = tmp_path / "store", tmp_path / "plots"
    args = [
        "lr-find", str(data), "--backbone", "smallcnn", "--weights", str(weights),
        "--unfreeze-from", "block3_conv1", "--epochs", "2",
        "--min-steps", "0", "--no-augment", "--batch-size", "8",
        "--store", str(store), "--out", str(out), "--json",
    ]  # fmt: skip
    assert main(args) == 0
    found = json.loads(capsys.readouterr().out)
    assert sorted(found) == ["fine_tune", "head"]
    for phase, test in found.items():
        assert 1e-7 < test["suggestion"] < 10, phase
        assert len(test["curve"]) >= 3
        assert (out / f"lr_find_{phase}.png").read_bytes()[:4] == b"\x89PNG"
    assert not store.exists() or not any(p.name != ".jobs" for p in store.iterdir())
    assert not (store / ".jobs").exists() or not any((store / ".jobs").iterdir())


def test_lr_find_checks_the_train_options_before_any_work(tmp_path, capsys):
    code = main(["lr-find", str(tmp_path), "--fine-tune-lr", "fast", "--out", str(tmp_path)])
    assert code == 2
    assert "--fine-tune-lr fast: expected a number or auto" in capsys.readouterr().err
