"""A store given as a URL ktl cannot serve is refused with the reason, everywhere a
store is named, and never taken as a folder name (``s3://b/m`` was once the local
folder ``s3:/b/m``)."""

from __future__ import annotations

import logging
import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest

import service
from models.errors import ConfigError
from models.settings import StoreSetting
from models.store import ModelStore
from models.store.location import UnsupportedStore, check_location, url_scheme
from tests.support.cli import ktl_here

UNSERVED = ["ftp://host/models", "http://example.com/models", "hdfs://nn/models", "file:///srv"]


@pytest.mark.parametrize(
    ("location", "scheme"),
    [
        ("s3://bucket/models", "s3"),
        ("GS://bucket", "gs"),
        ("  az://container/p", "az"),
        ("svn+ssh://h/x", "svn+ssh"),
        (Path("s3://bucket/models"), "s3"),  # what Path makes of a URL: s3:/bucket/models
        ("model_store", None),
        ("/srv/models", None),
        ("./a:b/c", None),
        (Path("/srv/models"), None),
        (Path("notes:"), "notes"),
    ],
)
def test_a_url_is_told_from_a_folder(location, scheme):
    assert url_scheme(location) == scheme


@pytest.mark.parametrize("location", ["model_store", "/srv/models", Path("relative/store")])
def test_a_folder_is_a_store(location):
    assert check_location(location) == location


@pytest.mark.parametrize("location", UNSERVED)
def test_an_unserved_url_is_refused_with_its_scheme(location):
    with pytest.raises(UnsupportedStore) as caught:
        check_location(location)
    scheme = location.split("://")[0]
    assert f"{scheme}://" in caught.value.message
    assert caught.value.exit_code == 2


def test_model_store_refuses_a_url_and_creates_no_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsupportedStore):
        ModelStore("ftp://host/models")
    with pytest.raises(UnsupportedStore):
        ModelStore(Path("ftp://host/models"))
    assert list(tmp_path.iterdir()) == []


def test_the_store_variable_refuses_a_url():
    with pytest.raises(ConfigError) as caught:
        StoreSetting.from_env({"KTL_MODEL_STORE": "ftp://host/models"})
    assert "KTL_MODEL_STORE='ftp://host/models'" in str(caught.value)
    assert "ftp://" in str(caught.value).split("is not valid:")[1]


@pytest.mark.parametrize("command", [["versions", "m"], ["label", "m", "stable", "1"]])
def test_the_store_flag_refuses_a_url_with_exit_2(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = ktl_here(*command, "--store", "ftp://host/models")
    assert result.returncode == 2, result
    assert "--store" in result.stderr and "ftp://" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_train_refuses_a_url_store_before_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    result = ktl_here("train", "data", "--name", "m", "--store", "ftp://host/models")
    assert result.returncode == 2, result
    assert "--store" in result.stderr and "ftp://" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_a_url_store_in_the_job_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "job.toml").write_text('data = "data"\nname = "m"\nstore = "ftp://h/m"\n')
    result = ktl_here("train", "--config", "job.toml")
    assert result.returncode == 2, result
    assert "store" in result.stderr and "ftp://" in result.stderr


def test_the_service_refuses_a_url_store_at_start_up(monkeypatch, capsys):
    monkeypatch.setenv("KTL_MODEL_STORE", "ftp://host/models")
    conf = Path(service.__file__).parent / "gunicorn.conf.py"
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(conf))
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "KTL_MODEL_STORE" in err and "ftp://" in err


def test_the_job_queue_refuses_a_bucket_and_says_where_it_lives():
    from models.jobqueue.jobs import JobQueue

    with pytest.raises(UnsupportedStore, match="local or shared disk"):
        JobQueue("s3://bucket/models")


def test_the_service_names_a_bucket_store_as_given_and_starts_no_job_runner(monkeypatch, caplog):
    for variable in ("KTL_HOST", "KTL_PORT", "KTL_JOB_RUNNER", "KTL_TRAIN_KEYS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("KTL_MODEL_STORE", "s3://bucket/models")
    monkeypatch.setenv("KTL_TRAINING", "open")
    settings = runpy.run_path(str(Path(service.__file__).parent / "gunicorn.conf.py"))
    server = SimpleNamespace(log=logging.getLogger("ktl.test"))
    with caplog.at_level(logging.INFO, "ktl.test"):
        settings["when_ready"](server)
    assert "s3://bucket/models" in caplog.text and "s3:/bucket" not in caplog.text
    assert "no job runner is started" in caplog.text
    assert settings["_runner"] == []
