"""No TensorFlow, absl or oneDNN log line reaches a ``ktl`` command's stdout or
stderr, nor the terminal of a Python API user: run as a user runs them, without
the ``TF_CPP_MIN_LOG_LEVEL`` the other tests set."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models import quiet
from tests.support.cli import ktl
from tests.support.tiny import make_tiny_store

pytestmark = pytest.mark.slow

# Any line TensorFlow's C++ logging writes, whatever its level, and the start-up notices.
TF_LINE = re.compile(
    r"absl::InitializeLog|^[IWEF]\d{4} \d\d:\d\d:\d\d|oneDNN|cpu_feature_guard"
    r"|This TensorFlow binary is optimized|TF_ENABLE_ONEDNN_OPTS|^WARNING:tensorflow:",
    re.MULTILINE,
)
AS_A_USER = {"TF_CPP_MIN_LOG_LEVEL": None, "TF_ENABLE_ONEDNN_OPTS": None}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_tiny_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)).save(path)
    return path


@pytest.mark.parametrize(
    "args",
    [
        ("inspect", "--name", "tiny"),
        ("predict", "PHOTO", "--name", "tiny", "--json"),
    ],
)
def test_a_command_prints_no_tensorflow_log_line(store, photo, args):
    args = tuple(str(photo) if a == "PHOTO" else a for a in args)
    result = ktl(*args, "--store", str(store), env=AS_A_USER)
    assert result.returncode == 0, result.stderr
    assert not TF_LINE.search(result.stdout), result.stdout
    assert not TF_LINE.search(result.stderr), result.stderr


def test_the_python_api_prints_no_banner(store, photo):
    code = (
        "from models import load_bundle; "
        f"b = load_bundle('tiny', store={str(store)!r}); "
        f"print(b.predict([{str(photo)!r}]).predictions[0].top[0].label)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=user_env(), timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert not TF_LINE.search(result.stderr + result.stdout), result.stderr


def test_start_up_lines_are_dropped_and_errors_kept():
    captured = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796670417.476517   21004 cpu_feature_guard.cc:227] This TensorFlow "
        "binary is optimized to use available CPU instructions.\n"
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild.\n"
        "W0000 00:00:1796670417.476600   21004 port.cc:153] oneDNN custom operations are on.\n"
        "2026-01-01 10:00:00.000001: I tensorflow/core/util/port.cc:153] oneDNN custom "
        "operations are on. To turn them off, set the environment variable "
        "`TF_ENABLE_ONEDNN_OPTS=0`.\n"
        "E0000 00:00:1796670417.476700   21004 cuda_dnn.cc:8] Unable to load cuDNN\n"
        "Traceback (most recent call last):\n"
    )
    assert quiet.kept(captured) == (
        "E0000 00:00:1796670417.476700   21004 cuda_dnn.cc:8] Unable to load cuDNN\n"
        "Traceback (most recent call last):\n"
    )


def user_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in AS_A_USER}


def test_the_import_of_tensorflow_is_filtered_even_at_log_level_0():
    """With every C++ log level on, what importing TensorFlow prints is filtered."""
    code = "import sys; {} import tensorflow; sys.stderr.write('after\\n')"
    env = {**user_env(), "TF_CPP_MIN_LOG_LEVEL": "0"}

    def stderr(prefix: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code.format(prefix)],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stderr

    if not TF_LINE.search(stderr("")):
        pytest.skip("TensorFlow prints nothing at import on this machine")
    assert stderr("from models import quiet; quiet.install();") == "after\n"


def test_tensorflows_python_warnings_are_off_and_its_errors_kept():
    """Retracing notices and the like (``WARNING:tensorflow:``, which ``ktl train`` can
    print) follow the C++ level ktl sets: errors only."""
    code = (
        "from models import quiet; quiet.install(); import tensorflow as tf; "
        "tf.get_logger().warning('retracing'); tf.get_logger().error('broken')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=user_env(), timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "retracing" not in done.stderr
    assert "broken" in done.stderr


@pytest.mark.parametrize(("level", "expected"), [("0", 0), ("1", 30), ("2", 40), ("3", 40)])
def test_the_python_level_follows_the_cpp_level(monkeypatch, level, expected):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", level)
    assert quiet.python_log_level() == expected
