"""``ktl demo`` as ``make run`` calls it, in this process with training replaced: a
busy port is refused before anything is written or trained, a rerun reuses the
published demo, ``--retrain`` trains anew; and the port ``make run`` passes on."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

import training.dataset.demo
import training.job
from cli import main
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
LEGACY = ROOT / "tests" / "fixtures" / "store_v1" / "legacy"


@pytest.fixture
def no_training(monkeypatch):
    """Training and the dataset fail the test if ``ktl demo`` reaches them."""

    def refuse(*args, **kwargs):
        raise AssertionError("ktl demo trained or wrote its dataset")

    monkeypatch.setattr(training.job, "run_job", refuse)
    monkeypatch.setattr(training.dataset.demo, "make_shapes_dataset", refuse)


@pytest.fixture
def store_with_demo(tmp_path) -> Path:
    """A store whose ``demo`` has version 1 (the bundle of ktl 0.1 of tests/fixtures)."""
    store = tmp_path / "store"
    shutil.copytree(LEGACY, store / "demo")
    return store


def test_a_busy_port_is_refused_before_anything_is_written_or_trained(
    tmp_path, no_training, capsys
):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        store, data = tmp_path / "store", tmp_path / "data"
        code = main(["demo", "--port", str(port), "--store", str(store), "--data-dir", str(data)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"Port {port} on 127.0.0.1 is already in use" in err
    assert f"make run PORT={port + 1}" in err
    assert not data.exists() and not store.exists()


def test_a_rerun_reuses_the_published_demo_and_trains_nothing(
    tmp_path, store_with_demo, no_training, capsys
):
    data = tmp_path / "data"
    data.mkdir()
    argv = ["demo", "--store", str(store_with_demo), "--data-dir", str(data)]
    assert main([*argv, "--port", str(free_port())]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Reusing demo version 1 (")
    assert "already published" in err and "RETRAIN=1" in err
    assert main([*argv, "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body == {
        "name": "demo",
        "version": 1,
        "path": str(store_with_demo / "demo" / "1"),
        "reused": True,
    }
    assert sorted(p.name for p in (store_with_demo / "demo").iterdir()) == ["1"]


def test_retrain_trains_a_new_version_even_when_one_is_published(
    tmp_path, store_with_demo, monkeypatch, capsys
):
    import models.networks.classifier

    write = training.dataset.demo.make_shapes_dataset
    trained = []
    monkeypatch.setattr(models.networks.classifier, "build_backbone", lambda *args: None)
    monkeypatch.setattr(
        training.dataset.demo,
        "make_shapes_dataset",
        lambda root, per_class: write(root, per_class=2, size=16),
    )
    result = SimpleNamespace(to_json=lambda: {"version": 2})  # what ktl demo --json prints
    monkeypatch.setattr(training.job, "run_job", lambda config: trained.append(config) or result)
    data = tmp_path / "data"
    argv = ["demo", "--store", str(store_with_demo), "--data-dir", str(data), "--json"]
    assert main([*argv, "--retrain"]) == 0
    assert json.loads(capsys.readouterr().out) == {"version": 2}
    (config,) = trained
    assert (config.name, Path(config.data)) == ("demo", data)
    assert sorted(p.name for p in data.iterdir()) == ["circle", "square", "triangle"]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize(
    "variables, environment, port, retrain",
    [
        ([], {}, "8000", False),
        ([], {"KTL_PORT": "8731"}, "8731", False),
        (["PORT=8732"], {"KTL_PORT": "8731"}, "8732", False),
        (["RETRAIN=1"], {}, "8000", True),
        (["RETRAIN=0"], {}, "8000", False),
    ],
)
def test_make_run_serves_on_port_or_ktl_port_and_checks_it_before_the_demo(
    tmp_path, variables, environment, port, retrain
):
    env = {"PATH": "/usr/bin:/bin", **environment}
    dry_run = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "run", f"VENV={tmp_path}", *variables],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    demo = f"{tmp_path}/bin/ktl demo --port {port}"
    assert f"{demo} --retrain\n" in dry_run if retrain else f"{demo}\n" in dry_run
    assert f"ktl serve --host 127.0.0.1 --port {port}\n" in dry_run
    assert dry_run.index(demo) < dry_run.index("ktl serve")
