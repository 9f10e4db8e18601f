"""The gunicorn settings file and the JSON access logger."""

from __future__ import annotations

import json
import logging
import runpy
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from gunicorn.config import Config

import service
from models.timestamps import parse as parse_time
from service.gunicorn_logger import JsonLogger

CONF = Path(service.__file__).parent / "gunicorn.conf.py"


@pytest.fixture
def clean_env(monkeypatch):
    for variable in ("KTL_HOST", "KTL_PORT", "KTL_WORKERS", "KTL_THREADS"):
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_settings_come_from_the_environment(clean_env):
    clean_env.setenv("KTL_PORT", "9123")
    clean_env.setenv("KTL_WORKERS", "3")
    clean_env.setenv("KTL_THREADS", "5")
    settings = runpy.run_path(str(CONF))
    assert settings["bind"] == ["127.0.0.1:9123"]
    assert (settings["workers"], settings["threads"]) == (3, 5)
    assert settings["worker_class"] == "gthread"
    assert settings["preload_app"] is False
    assert settings["logger_class"] == "service.gunicorn_logger.JsonLogger"


@pytest.mark.parametrize(
    ("host", "address"),
    [("127.0.0.1", "http://127.0.0.1:9123/"), ("0.0.0.0", "http://127.0.0.1:9123/")],
)
def test_the_start_up_log_names_the_page_and_the_store(clean_env, host, address, caplog):
    clean_env.setenv("KTL_HOST", host)
    clean_env.setenv("KTL_PORT", "9123")
    clean_env.setenv("KTL_MODEL_STORE", "/srv/models")
    settings = runpy.run_path(str(CONF))
    server = SimpleNamespace(log=logging.getLogger("ktl.test"))
    with caplog.at_level(logging.INFO, "ktl.test"):
        settings["when_ready"](server)
    assert address in caplog.text and "/srv/models" in caplog.text
    if host == "0.0.0.0":
        assert "every interface" in caplog.text
    assert ("deploy/nginx/ktl.conf" in caplog.text) == (host == "0.0.0.0")


def test_a_bad_value_exits_with_a_message(clean_env, capsys):
    clean_env.setenv("KTL_PORT", "eighty")
    with pytest.raises(SystemExit) as caught:
        runpy.run_path(str(CONF))
    assert caught.value.code == 2
    assert "KTL_PORT='eighty'" in capsys.readouterr().err


@pytest.fixture
def ktl_logger():
    """JsonLogger reconfigures the ``ktl`` logger; put it back afterwards."""
    log = logging.getLogger("ktl")
    saved = (list(log.handlers), log.level, log.propagate)
    yield
    log.handlers, log.level, log.propagate = saved[0], saved[1], saved[2]


def test_the_access_log_is_one_json_object_per_request_on_stderr(ktl_logger, capsys):
    cfg = Config()
    cfg.set("accesslog", "-")
    logger = JsonLogger(cfg)
    response = SimpleNamespace(status="404 NOT FOUND", sent=42, headers=[])
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": '/v1/models/"odd"',
        "QUERY_STRING": "top_k=2",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_USER_AGENT": 'curl "quoted"',
    }
    logger.access(response, SimpleNamespace(headers=[]), environ, timedelta(milliseconds=12.5))
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    entry = json.loads(line)
    assert entry["status"] == 404
    assert entry["path"] == '/v1/models/"odd"'
    assert entry["user_agent"] == 'curl "quoted"'
    assert (entry["method"], entry["query"], entry["bytes"]) == ("GET", "top_k=2", 42)
    assert entry["duration_ms"] == 12.5
    assert entry["time"].endswith("Z") and parse_time(entry["time"])  # the one clock, in UTC
    # The service's own logs go through gunicorn's error handler too.
    assert logging.getLogger("ktl").handlers == logger.error_log.handlers
