from __future__ import annotations

import io
import threading

import pytest
from flask import request
from PIL import Image
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from service.app import create_app
from service.config import ConfigError, ServiceConfig


def pollers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ktl-model-reload"]


def test_the_environment_configures_the_app(make_app, monkeypatch, tiny_store, image_bytes):
    monkeypatch.setenv("KTL_MODEL_STORE", str(tiny_store))
    monkeypatch.setenv("KTL_RELOAD_INTERVAL", "0")
    monkeypatch.setenv("KTL_TOP_K", "1")
    monkeypatch.setenv("KTL_MAX_UPLOAD_MB", "2")
    monkeypatch.setenv("KTL_MAX_IMAGE_PIXELS", "5000")
    pillow_limit = Image.MAX_IMAGE_PIXELS
    app = create_app()
    assert app.config["MAX_CONTENT_LENGTH"] == 2 * 2**20
    client = app.test_client()
    response = client.post("/v1/models/tiny/predict", data=image_bytes(), content_type="image/png")
    assert len(response.json["predictions"][0]["top"]) == 1
    # The pixel limit holds per image, with Pillow's process-wide one left as it was.
    too_large = client.post(
        "/v1/models/tiny/predict", data=image_bytes(size=(80, 70)), content_type="image/png"
    )
    assert too_large.status_code == 413 and "5,000 pixels" in too_large.json["error"]
    assert Image.MAX_IMAGE_PIXELS == pillow_limit


def test_a_config_object_or_overrides(make_app, tiny_store):
    config = ServiceConfig(model_store=tiny_store, reload_interval=0, top_k=2)
    assert create_app(config).extensions["ktl"].config is config
    app = make_app(top_k=3)
    assert app.extensions["ktl"].config.top_k == 3


def test_a_bad_environment_value_stops_the_start(make_app, monkeypatch):
    monkeypatch.setenv("KTL_QUEUE_SIZE", "lots")
    with pytest.raises(ConfigError, match="KTL_QUEUE_SIZE='lots'"):
        create_app()


def test_uploads_stay_in_memory(make_app):
    app = make_app()

    @app.post("/test-stream")
    def stream_type():
        return {"type": type(request.files["image"].stream).__name__}

    big = io.BytesIO(b"\0" * (2 * 2**20))  # Werkzeug spools anything over 500 KB to disk
    # Encoded here: the test client would spool this body to a temporary file of its own.
    boundary, body = encode_multipart({"image": FileStorage(big, "big.png")})
    response = app.test_client().post(
        "/test-stream", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert response.json == {"type": "BytesIO"}


def test_polling_starts_with_the_first_request_and_only_once(make_app):
    app = make_app(reload_interval=60)
    registry = app.extensions["ktl"].registry
    before = len(pollers())
    assert registry._poller is None  # nothing started before a fork could happen
    client = app.test_client()
    client.get("/healthz")
    client.get("/readyz")
    assert len(pollers()) == before + 1
    thread = registry._poller
    registry.close()
    assert not thread.is_alive()


def test_the_service_imports_neither_training_nor_the_command_line():
    import ast
    from pathlib import Path

    import service

    imported = set()
    for path in Path(service.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {(path.name, alias.name.split(".")[0]) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add((path.name, node.module.split(".")[0]))
    assert not {(name, top) for name, top in imported if top in ("training", "cli")}
    assert ("app.py", "models") in imported  # the walk sees the imports
