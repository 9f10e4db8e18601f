"""The command line's parser and dispatch: fast help and flag errors, and every
error mapped in one place (UserError -> 2, OperationalError -> 1, bugs raise)."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from cli import main
from cli.commands import train
from cli.main import COMMANDS, build_parser
from cli.train_summary import print_summary
from models.errors import ConfigError, OperationalError

PROBE = (
    "import sys\n"
    "from cli import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "except SystemExit:\n"
    "    pass\n"
    "heavy = sorted(m for m in ('tensorflow', 'keras', 'flask') if m in sys.modules)\n"
    "print('heavy:', ','.join(heavy))\n"
)


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["train", "--help"], ["train", "data", "--pooling", "median"]],
    ids=["help", "train-help", "bad-flag"],
)
def test_help_and_flag_errors_import_no_tensorflow(argv):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.endswith("heavy: \n"), result.stdout


def test_a_bad_setting_is_refused_before_tensorflow_is_imported():
    code = (
        "import sys\nfrom cli import main\n"
        "rc = main(['train', 'data', '--name', 'x', '--backbone', 'ResNet5'])\n"
        "print(rc, 'tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["2", "False"], result.stderr
    assert "Unknown backbone 'ResNet5'" in result.stderr


def test_a_bad_model_name_is_refused_at_once_without_tensorflow(tmp_path):
    """``ktl train DATA --name BAD`` checks every setting, the name too, before TensorFlow
    is imported: the refusal costs well under a second of CPU (importing TensorFlow
    alone takes about 4); CPU time, not wall time, so a busy machine cannot fail it."""
    code = (
        "import sys\nfrom cli import main\n"
        "rc = main(['train', sys.argv[1], '--name', 'BAD'])\n"
        "print(rc, 'tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert result.stdout.split() == ["2", "False", "False"], result.stderr
    assert "--name: Invalid model name 'BAD' (did you mean 'bad'?)" in result.stderr
    assert cpu < 1.0, f"{cpu:.2f} s of CPU to refuse a name"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--folds", "1"], "--folds must be at least 2"),
        (["--out", "pyproject.toml"], "a file is there"),
    ],
)
def test_doctor_settings_are_refused_before_tensorflow_is_imported(flags, message):
    code = (
        "import sys\nfrom cli import main\n"
        f"rc = main(['doctor', 'data', '--out', 'x', *{flags!r}])\n"
        "print(rc, 'tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["2", "False"], result.stderr
    assert message in result.stderr


def test_a_mistyped_command_gets_the_closest_one(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["trian", "data"])
    assert exited.value.code == 2
    assert "unknown command 'trian'; did you mean 'train'?" in capsys.readouterr().err


@pytest.mark.parametrize("command", [m.register.__module__.rsplit(".", 1)[1] for m in COMMANDS])
def test_help_shows_no_doubled_percent_nor_latest_for_the_default(capsys, command):
    name = {"list_models": "models", "lr_find": "lr-find"}.get(command, command)
    with pytest.raises(SystemExit):
        main([name, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "%%" not in text
    assert "(default: its latest)" not in text and "(default: the latest)" not in text


def test_every_command_is_registered_once():
    parser = build_parser()
    names = [name for name in parser._subparsers._group_actions[0].choices]  # type: ignore[union-attr]
    assert len(names) == len(set(names)) == len(COMMANDS)


def _failing(exc: Exception):
    def run(args):
        raise exc

    return run


@pytest.mark.parametrize(
    ("exc", "code"),
    [(ConfigError("--epochs must be at least 1"), 2), (OperationalError("disk full"), 1)],
)
def test_errors_become_exit_codes_with_the_message(monkeypatch, capsys, exc, code):
    monkeypatch.setattr(train, "run", _failing(exc))
    assert main(["train", "d", "--name", "n"]) == code
    assert capsys.readouterr().err == f"ktl: error: {exc}\n"


def test_a_bug_keeps_its_traceback(monkeypatch):
    monkeypatch.setattr(train, "run", _failing(ZeroDivisionError("bug")))
    with pytest.raises(ZeroDivisionError):
        main(["train", "d", "--name", "n"])


def test_a_missing_extra_names_the_pip_install(monkeypatch, capsys):
    monkeypatch.setattr(train, "run", _failing(ModuleNotFoundError("no", name="matplotlib")))
    assert main(["train", "d", "--name", "n"]) == 2
    assert "pip install 'ktl[train]'" in capsys.readouterr().err


def test_the_store_default_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("KTL_MODEL_STORE", raising=False)
    assert build_parser().parse_args(["models"]).store == "model_store"
    monkeypatch.setenv("KTL_MODEL_STORE", str(tmp_path))
    args = build_parser().parse_args(["predict", "a.png", "--name", "m"])
    assert args.store == str(tmp_path)
    assert args.settings.model_store == tmp_path


def test_the_summary_says_how_training_ended_and_what_it_must_beat(capsys):
    per_class = {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 6}
    print_summary(
        {
            "name": "bees", "version": 2, "path": "model_store/bees/2", "seconds": 12.3,
            "dataset": {"train_images": 20, "val_images": 12, "classes": {"a": {}, "b": {}},
                        "skipped": 0, "ignored_files": 0,
                        "warnings": ["only 12 validation images"]},
            "training": {"recipe": "scratch", "phases": [
                {"name": "scratch", "epochs": 15, "max_epochs": 40, "stopped_early": True,
                 "kept_epoch": 5}]},
            "metrics": {"accuracy": 0.5, "top_k": 1, "top_k_accuracy": 0.5, "loss": 0.7,
                        "macro_f1": 0.5, "per_class": {"a": per_class, "b": per_class},
                        "baseline": {"majority_class": "a", "majority_accuracy": 0.5,
                                     "chance": 0.5}},
            "warnings": ["accuracy 0.500 is no better than always answering 'a' (0.500)"],
        }
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "training    scratch: 15 of 40 epochs, stopped early" in out
    assert "kept epoch 5's weights" in out
    assert "top-1" not in out  # two classes: the accuracy, said once
    assert "  class  precision" in out
    assert "always 'a': 0.500; chance: 0.500" in out
    assert "WARNING     accuracy 0.500 is no better" in out
    assert "note        only 12 validation images" in out
