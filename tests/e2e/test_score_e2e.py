"""``ktl score`` as a process over 5,000 generated images: killed (SIGKILL) halfway,
rerun, it ends with one line per image and no image scored twice; the lines the
killed run wrote are kept as they were."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.cli import KTL, ktl
from tests.support.data import COLOURS, colour_image

pytestmark = pytest.mark.slow

STORE = str(Path(__file__).resolve().parents[1] / "fixtures" / "store_v1")
IMAGES = 5000


def _images(root: Path) -> Path:
    rng = np.random.default_rng(0)
    colours = list(COLOURS.values())
    for i in range(IMAGES):
        folder = root / f"{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        colour_image(colours[i % 3], 12, rng).save(folder / f"{i:04d}.png")
    return root


def _complete_lines(out: Path) -> list[str]:
    text = out.read_text() if out.exists() else ""
    return text[: text.rfind("\n") + 1].splitlines()


def test_killed_halfway_and_rerun_it_scores_every_image_once(tmp_path):
    images, out = _images(tmp_path / "images"), tmp_path / "scores.jsonl"
    args = ["score", "legacy", str(images), "--out", str(out), "--store", STORE, "--batch", "50"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    killed = subprocess.Popen([sys.executable, "-c", KTL, *args], env=env, **quiet)
    try:
        deadline = time.monotonic() + 240
        while len(_complete_lines(out)) < IMAGES // 2 and killed.poll() is None:
            assert time.monotonic() < deadline, "ktl score wrote too slowly"
            time.sleep(0.02)
    finally:
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(30) == -signal.SIGKILL, "it finished before the kill"
    before = _complete_lines(out)
    assert IMAGES // 2 <= len(before) < IMAGES

    done = ktl(*args, "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    lines = out.read_text().splitlines()
    assert lines[: len(before)] == before  # what was written stays, torn tail cut
    names = [json.loads(line)["image"] for line in lines]
    assert len(lines) == IMAGES == len(set(names))  # every image, none twice
    assert summary["skipped"] == len(before) and summary["scored"] == IMAGES - len(before)
    assert "images/s" in done.stderr and "ETA" in done.stderr
