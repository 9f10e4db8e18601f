"""Security: API keys compared in constant time, bundles that never run code,
names checked before any path is built, uploads kept off the disk, and the
security headers of service/guards/security.py on every response."""

from __future__ import annotations

import builtins
import contextlib
import hmac
import io
import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import quote

import keras
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.bundle import MODEL_FILE, BundleError, load_bundle, save_bundle, sha256_file
from models.store import NAME_PATTERN, ModelStore
from service.guards import auth, security
from tests import corpus
from tests.service.conftest import IMAGE_SIZE, LABELS, tiny_metadata
from tests.support.apps import shared_app

PNG = corpus.image_files()[0].data


# --- API keys ----------------------------------------------------------------------------


def test_keys_are_compared_with_hmac_compare_digest_and_never_short_circuit(make_app, monkeypatch):
    keys = ("first-key", "second-key", "third-key")
    client = make_app(api_keys=keys).test_client()
    calls = []
    real = hmac.compare_digest

    def recording(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", recording)
    for token, status in (("first-key", 200), ("third-key", 200), ("nope", 401)):
        calls.clear()
        response = client.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == status
        # every key is compared, even after a match, so timing tells nothing
        assert [b for _, b in calls] == [key.encode() for key in keys]
        assert all(a == token.encode() for a, _ in calls)


def test_a_key_that_only_shares_a_prefix_is_refused(make_app):
    client = make_app(api_keys=("s3cret-key",)).test_client()
    for token in ("s3cret", "s3cret-key-and-more", "S3CRET-KEY", " s3cret-key x"):
        response = client.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token


# --- bundles never run code ----------------------------------------------------------------


def _lambda_model(sentinel: Path) -> keras.Model:
    # A lambda is saved as marshalled bytecode; this one touches ``sentinel`` when run.
    payload = eval(f"lambda t: (__import__('pathlib').Path({str(sentinel)!r}).touch(), t)[1]")

    inputs = keras.Input((*IMAGE_SIZE, 3))
    x = keras.layers.Lambda(payload)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(len(LABELS), activation="softmax")(x))


def test_a_lambda_layer_in_a_bundle_is_refused_and_never_runs(tmp_path, make_app):
    sentinel = tmp_path / "ran"
    _, path = save_bundle(
        ModelStore(tmp_path / "store"), _lambda_model(sentinel), tiny_metadata("evil")
    )
    sentinel.unlink(missing_ok=True)  # building the model ran it once, here, on purpose
    # The payload is live: loading without safe mode runs it.
    keras.saving.load_model(path / MODEL_FILE, safe_mode=False, compile=False)(
        keras.ops.zeros((1, *IMAGE_SIZE, 3))
    )
    assert sentinel.exists()
    sentinel.unlink()

    with pytest.raises(BundleError, match="does not load"):
        load_bundle(path)
    client = make_app(model_store=tmp_path / "store").test_client()
    [model] = client.get("/v1/models").json["models"]
    assert model["status"] == "unavailable"
    assert (
        client.post("/v1/models/evil/predict", data=PNG, content_type="image/png").status_code
        == 503
    )
    assert not sentinel.exists()


def _rewrite_config(model_file: Path, edit) -> None:
    with zipfile.ZipFile(model_file) as source:
        entries = {name: source.read(name) for name in source.namelist()}
    config = json.loads(entries["config.json"])
    edit(config)
    entries["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(model_file, "w") as target:
        for name, data in entries.items():
            target.writestr(name, data)


def _refresh_checksum(bundle_dir: Path) -> None:
    metadata = json.loads((bundle_dir / "metadata.json").read_text())
    metadata["files"][MODEL_FILE] = sha256_file(bundle_dir / MODEL_FILE)
    (bundle_dir / "metadata.json").write_text(json.dumps(metadata))


@pytest.mark.parametrize(
    "payload",
    [
        {"module": "os", "class_name": "system", "config": {"command": "touch {sentinel}"}},
        {"module": "builtins", "class_name": "exec", "config": "open('{sentinel}', 'w')"},
        {
            "module": "subprocess",
            "class_name": "Popen",
            "config": {"args": ["touch", "{sentinel}"]},
        },
    ],
    ids=["os.system", "builtins.exec", "subprocess.Popen"],
)
def test_a_config_naming_a_python_callable_is_refused(tmp_path, tiny_model, payload):
    sentinel = tmp_path / "ran"
    _, path = save_bundle(ModelStore(tmp_path), tiny_model, tiny_metadata("evil"))
    text = json.dumps(payload).replace("{sentinel}", str(sentinel))

    def edit(config):  # the first layer after the input becomes the payload
        layer = config["config"]["layers"][1]
        layer.update(json.loads(text))
        layer["registered_name"] = None

    _rewrite_config(path / MODEL_FILE, edit)
    _refresh_checksum(path)  # an attacker who can write the store can fix checksums too
    with pytest.raises(BundleError):
        load_bundle(path)
    assert not sentinel.exists()


class _Pickled:
    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return (open, (str(self.sentinel), "w"))


def test_a_pickle_in_a_bundle_is_never_loaded(tmp_path, tiny_model, make_app, monkeypatch):
    sentinel = tmp_path / "unpickled"
    evil = pickle.dumps(_Pickled(sentinel))
    save_bundle(
        ModelStore(tmp_path / "store"), tiny_model, tiny_metadata(),
        reports={"model.pkl": evil, "labels.pickle": evil},
    )  # fmt: skip

    def refuse(*args, **kwargs):
        raise AssertionError("something unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    bundle = load_bundle(tmp_path / "store" / "tiny" / "1")
    assert bundle.version == 1
    client = make_app(model_store=tmp_path / "store").test_client()
    response = client.post("/v1/models/tiny/predict", data=PNG, content_type="image/png")
    assert response.status_code == 200
    assert not sentinel.exists()


# --- names are checked before any path is built ---------------------------------------------


@contextlib.contextmanager
def recorded_paths():
    """Every path the process stats, lists or opens meanwhile."""
    seen: list[str] = []
    originals = {
        name: getattr(os, name) for name in ("stat", "lstat", "listdir", "scandir", "open")
    }
    original_open = builtins.open

    def recorder(original):
        def record(path=".", *args, **kwargs):
            if isinstance(path, str | bytes | os.PathLike):
                seen.append(os.fsdecode(path))
            return original(path, *args, **kwargs)

        return record

    for name, original in originals.items():
        setattr(os, name, recorder(original))
    builtins.open = recorder(original_open)
    try:
        yield seen
    finally:
        for name, original in originals.items():
            setattr(os, name, original)
        builtins.open = original_open


TRAVERSALS = st.sampled_from(
    ["..", "../..", "../../etc/passwd", ".staging", ".jobs", "tiny/../..", "/etc", "~", "\0",
     "tiny\0", "%2e%2e", "..\\..", "TINY", "a" * 65, "tiny/versions/1"]
)  # fmt: skip


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.one_of(TRAVERSALS, st.text(max_size=70), st.from_regex(NAME_PATTERN, fullmatch=True)),
    safe=st.sampled_from(["", "/"]),
    route=st.sampled_from(["get", "get_version", "predict", "version_predict", "tfserving"]),
)
def test_any_name_is_never_a_5xx_and_never_touches_a_path_outside_the_store(
    app, tiny_store, name, safe, route
):
    escaped = quote(name, safe=safe)
    method, path = {
        "get": ("GET", f"/v1/models/{escaped}"),
        "get_version": ("GET", f"/v1/models/{escaped}/versions/1"),
        "predict": ("POST", f"/v1/models/{escaped}/predict"),
        "version_predict": ("POST", f"/v1/models/{escaped}/versions/3/predict"),
        "tfserving": ("POST", f"/v1/models/{escaped}:predict"),
    }[route]
    body = json.dumps({"instances": [{"b64": ""}]}) if route == "tfserving" else PNG
    client = app.test_client()
    with recorded_paths() as seen:
        response = client.open(path, method=method, data=body, content_type="image/png")
    assert response.status_code < 500, response.get_data(as_text=True)
    assert response.is_json
    root = os.path.realpath(tiny_store)
    outside = [p for p in seen if not os.path.realpath(p).startswith(root + os.sep)]
    assert outside == [], (name, outside)
    if not NAME_PATTERN.fullmatch(name) and "/" not in name:
        # (WSGI decodes %2F before routing: "tiny/versions/1" is another route, rightly)
        assert response.status_code in (400, 404, 405, 415), (name, path, response.status_code)
        if "%" not in name:  # "%2e%2e" arrives as ".." and is refused the same way
            assert seen == [], (name, seen)


# --- uploads stay in memory ----------------------------------------------------------------


def test_a_large_upload_never_touches_the_disk(app, monkeypatch):
    def no_disk(*args, **kwargs):
        raise AssertionError("a request wrote a temporary file")

    for name in (
        "TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp", "mkdtemp",
    ):  # fmt: skip
        monkeypatch.setattr(tempfile, name, no_disk)
    # 6 MB in all: Werkzeug would spool anything over 500 KB to a temporary file
    padding = ("padding", "pad.bin", b"\0" * (5 * 2**20), "application/octet-stream")
    body, content_type = corpus.multipart([("image", "a.png", PNG, "image/png"), padding])
    response = app.test_client().post(
        "/v1/models/tiny/predict", data=body, content_type=content_type
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    response = app.test_client().post(
        "/v1/models/tiny/predict", data=PNG + b"\0" * (5 * 2**20), content_type="image/png"
    )
    assert response.status_code == 200


# --- security headers ----------------------------------------------------------------------

EVERY_KIND_OF_RESPONSE = [
    ("GET", "/healthz", {}, 200),
    ("GET", "/readyz", {}, 200),
    ("GET", "/v1/models", {}, 200),
    ("GET", "/v1/models/tiny", {}, 200),
    ("GET", "/openapi.json", {}, 200),
    ("GET", "/metrics", {}, 200),
    ("POST", "/v1/models/tiny/predict", {"data": PNG, "content_type": "image/png"}, 200),
    ("POST", "/v1/models/tiny/predict", {"data": b"x", "content_type": "image/png"}, 400),
    ("POST", "/v1/models/tiny/predict", {"data": b"x", "content_type": "text/html"}, 415),
    ("POST", "/v1/models/nope/predict", {"data": PNG, "content_type": "image/png"}, 404),
    ("GET", "/v1/models/tiny/predict", {}, 405),
    ("GET", "/no/such/route", {}, 404),
    (
        "POST",
        "/v1/models/tiny/predict",
        {"data": b"\0" * (2**20 + 1), "content_type": "image/png"},
        413,
    ),
]


def _assert_security_headers(response, status):
    assert response.status_code == status
    for name, value in security.HEADERS.items():
        assert response.headers.get(name) == value, (name, response.headers)


@pytest.fixture(scope="module")
def secured_app(tiny_store):
    """One app for the requests below, which change nothing it holds."""
    with shared_app(model_store=tiny_store, max_upload_mb=1) as app:
        security.init_app(app)
        security.init_app(app)  # idempotent
        yield app


@pytest.mark.parametrize(("method", "path", "options", "status"), EVERY_KIND_OF_RESPONSE)
def test_every_response_carries_the_security_headers(secured_app, method, path, options, status):
    response = secured_app.test_client().open(path, method=method, **options)
    _assert_security_headers(response, status)


def test_an_internal_error_and_a_401_carry_them_too(make_app, monkeypatch):
    app = make_app(api_keys=("k",))
    security.init_app(app)
    client = app.test_client()
    _assert_security_headers(client.get("/v1/models"), 401)
    registry = app.extensions["ktl"].registry

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(registry, "get", broken)
    response = client.get("/v1/models/tiny", headers={"Authorization": "Bearer k"})
    _assert_security_headers(response, 500)
    assert response.json["code"] == "internal_error" and "a bug" not in response.json["error"]


def test_the_hook_is_registered_once(make_app):
    app = make_app()
    security.init_app(app)
    security.init_app(app)
    hooks = app.after_request_funcs.get(None, [])
    assert hooks.count(security.add_security_headers) == 1


def test_create_app_installs_the_security_headers(make_app):
    response = make_app().test_client().get("/healthz")
    _assert_security_headers(response, 200)


def test_json_error_bodies_do_not_reflect_markup_as_html(secured_app):
    response = secured_app.test_client().post(
        "/v1/models/tiny/predict",
        data={"image": (io.BytesIO(b"x"), "<script>alert(1)</script>.png")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert response.mimetype == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
