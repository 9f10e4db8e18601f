from __future__ import annotations

from pathlib import Path

import pytest

from models.preprocessing import DEFAULT_MAX_PIXELS
from service.config import ConfigError, ServiceConfig


def test_defaults_are_the_documented_ones():
    config = ServiceConfig.from_env({})
    assert config == ServiceConfig(
        model_store=Path("model_store"),
        max_upload_mb=20,
        max_image_pixels=DEFAULT_MAX_PIXELS,
        top_k=5,
        api_keys=(),
        max_batch_size=16,
        max_batch_delay_ms=5,
        queue_size=64,
        max_images_per_request=64,
        reload_interval=10,
        host="127.0.0.1",  # like gunicorn and Flask: this machine only, until told
        port=8000,
        workers=1,
        threads=16,
    )
    assert config.max_upload_bytes == 20 * 1024 * 1024


def test_every_variable_is_read():
    config = ServiceConfig.from_env(
        {
            "KTL_MODEL_STORE": "/srv/models",
            "KTL_MAX_UPLOAD_MB": "2.5",
            "KTL_MAX_IMAGE_PIXELS": "1000",
            "KTL_TOP_K": "3",
            "KTL_API_KEYS": " alpha, beta,,",
            "KTL_MAX_BATCH_SIZE": "4",
            "KTL_MAX_BATCH_DELAY_MS": "0",
            "KTL_QUEUE_SIZE": "7",
            "KTL_MAX_IMAGES_PER_REQUEST": "9",
            "KTL_RELOAD_INTERVAL": "0",
            "KTL_HOST": "127.0.0.1",
            "KTL_PORT": "9000",
            "KTL_WORKERS": "2",
            "KTL_THREADS": "3",
            "UNRELATED": "x",
        }
    )
    assert config.model_store == Path("/srv/models")
    assert config.max_upload_bytes == int(2.5 * 1024 * 1024)
    assert (config.max_image_pixels, config.top_k) == (1000, 3)
    assert config.api_keys == ("alpha", "beta")
    assert (config.max_batch_size, config.max_batch_delay_ms, config.queue_size) == (4, 0, 7)
    assert config.max_images_per_request == 9
    assert config.reload_interval == 0
    assert (config.host, config.port, config.workers, config.threads) == ("127.0.0.1", 9000, 2, 3)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KTL_PORT", "http"),
        ("KTL_PORT", "70000"),
        ("KTL_TOP_K", "0"),
        ("KTL_TOP_K", "2.5"),
        ("KTL_MAX_UPLOAD_MB", "-1"),
        ("KTL_MAX_UPLOAD_MB", "0"),
        ("KTL_MAX_BATCH_DELAY_MS", "nan"),
        ("KTL_RELOAD_INTERVAL", "soon"),
        ("KTL_RELOAD_INTERVAL", "inf"),
        ("KTL_WORKERS", ""),
        ("KTL_MODEL_STORE", "  "),
        ("KTL_HOST", ""),
    ],
)
def test_a_bad_value_names_the_variable(variable, value):
    with pytest.raises(ConfigError) as caught:
        ServiceConfig.from_env({variable: value})
    message = str(caught.value)
    assert variable in message
    assert repr(value) in message
    assert "default" in message


def test_overrides_are_checked_like_the_environment():
    config = ServiceConfig.from_env({}).replace({"top_k": 2, "api_keys": "a,b"})
    assert (config.top_k, config.api_keys) == (2, ("a", "b"))
    with pytest.raises(ConfigError, match="KTL_TOP_K"):
        ServiceConfig.from_env({}).replace({"top_k": 0})
    with pytest.raises(ConfigError, match="top_kk"):
        ServiceConfig.from_env({}).replace({"top_kk": 2})


def test_grpc_is_off_unless_its_port_is_set_and_then_needs_its_own_port_and_grpcio(monkeypatch):
    assert ServiceConfig.from_env({}).grpc_port is None
    config = ServiceConfig.from_env({"KTL_GRPC_PORT": "8081"})
    assert config.grpc_port == 8081
    config.check_grpc()  # grpcio is installed here
    clash = ServiceConfig.from_env({"KTL_GRPC_PORT": "8000"})
    with pytest.raises(ConfigError, match="port of its own"):
        clash.check_grpc()
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'ktl\[grpc\]'"):
        config.check_grpc()
    ServiceConfig.from_env({}).check_grpc()  # off: nothing to look for
