"""The capture folder's rules, writes, cap and budget, without a service."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import pytest

from models.capture.folder import CaptureFolder, image_extension
from models.capture.records import feedback_since, find_prediction, predictions_since
from models.capture.rules import CaptureRules, parse_rules
from models.ids import new_id


def test_rules_combine_and_any_one_keeps_a_prediction():
    rules = parse_rules(" abstained , below:0.8,sample:0.01")
    assert rules == CaptureRules(abstained=True, below=0.8, sample=0.01)
    assert str(parse_rules(str(rules))) == str(rules)
    assert rules.keeps(0.99, abstained=True, draw=0.5)
    assert rules.keeps(0.79, abstained=False, draw=0.5)
    assert rules.keeps(0.99, abstained=False, draw=0.005)
    assert not rules.keeps(0.99, abstained=False, draw=0.5)
    assert not parse_rules("").keeps(0.1, abstained=True, draw=0.0)


def test_sample_keeps_about_its_share():
    rules = parse_rules("sample:0.05")
    draws = [i / 10_000 for i in range(10_000)]
    kept = sum(rules.keeps(0.99, False, draw) for draw in draws)
    assert kept == pytest.approx(500, abs=1)


@pytest.mark.parametrize(
    "text, words",
    [
        ("sometimes", "unknown rule"),
        ("below:high", "not a number"),
        ("sample:0", "not in (0, 1]"),
        ("below:1.5", "not in (0, 1]"),
        ("abstained,abstained", "twice"),
        ("abstained:1", "unknown rule"),
    ],
)
def test_bad_rules_are_named(text, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace("]", r"\]")):
        parse_rules(text)


def test_the_per_minute_cap_holds_and_a_new_minute_starts_again(tmp_path):
    folder = CaptureFolder(tmp_path)
    claims = [folder.claim("202612072245", 3) for _ in range(5)]
    assert claims == [True, True, True, False, False]
    assert folder.claim("202612072246", 3)


def test_pruning_removes_the_oldest_files_first(tmp_path):
    folder = CaptureFolder(tmp_path)
    paths = []
    for age in range(10):
        path = tmp_path / "m" / "images" / f"{age}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 1000)
        os.utime(path, (time.time() - 100 + age, time.time() - 100 + age))
        paths.append(path)
    assert folder.prune(20_000) == 0
    removed = folder.prune(5_000)
    assert removed == 6  # down to 90 % of the budget: 4 files of 1000 bytes
    assert [p.exists() for p in paths] == [False] * 6 + [True] * 4


def test_records_are_found_by_id_and_by_window(tmp_path):
    folder = CaptureFolder(tmp_path)
    old, new = new_id(now_ms=1_700_000_000_000), new_id()
    lines = [{"id": old, "version": 1}, {"id": new, "version": 2}]
    folder.append_log("flowers", "w1", lines)
    assert find_prediction(folder, "flowers", new) == lines[1]
    assert find_prediction(folder, "flowers", new_id()) is None
    assert find_prediction(folder, "other", new) is None
    recent = predictions_since(folder, "flowers", datetime(2024, 1, 1, tzinfo=UTC))
    assert recent == [lines[1]]
    folder.write_feedback("flowers", {"id": new, "label": "rose"})
    assert feedback_since(folder, "flowers", datetime(2024, 1, 1, tzinfo=UTC)) == [
        {"id": new, "label": "rose"}
    ]


def test_a_half_written_line_is_skipped(tmp_path):
    folder = CaptureFolder(tmp_path)
    identifier = new_id()
    folder.append_log("flowers", "w1", [{"id": identifier}])
    [log] = folder.log_files("flowers")
    with open(log, "a") as f:
        f.write('{"id": "01')
    assert predictions_since(folder, "flowers", datetime(2024, 1, 1, tzinfo=UTC)) == [
        {"id": identifier}
    ]


@pytest.mark.parametrize("name", ["../escape", "A", "", "x/y"])
def test_nothing_is_written_outside_the_folder(tmp_path, name):
    folder = CaptureFolder(tmp_path / "capture")
    with pytest.raises(Exception, match="name"):
        folder.append_log(name, "w1", [{"id": new_id()}])
    with pytest.raises(ValueError, match="not a prediction id"):
        folder.write_feedback("flowers", {"id": "../../etc/passwd", "label": "x"})
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize(
    "data, ext",
    [
        (b"\xff\xd8\xff\xe0", "jpg"),
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"RIFF0000WEBP", "webp"),
        (b"junk", "img"),
    ],
)
def test_image_extensions_come_from_the_bytes(data, ext):
    assert image_extension(data) == ext
