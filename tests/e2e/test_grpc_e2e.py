"""The Open Inference Protocol over gRPC against a real gunicorn (2 workers, each
serving the one KTL_GRPC_PORT), driven by the stock ``tritonclient.grpc`` client and
compared with ``tritonclient.http`` on the REST form: the same outputs, to the bit,
on the native version, the INT8 one and the canary; keys, deadlines, the message
bound and the metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests

from tests.support.cli import ktl_here
from tests.support.server import Gunicorn, free_port
from tests.support.trained import NAME, Trained

grpcclient = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed")
import tritonclient.http as httpclient  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.slow

KEY = "grpc-test-key"


def _headers() -> dict[str, str]:
    """A dict of its own for each call: tritonclient.http adds its own headers to it."""
    return {"authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, trained_store: Trained):
    """``colours`` v1 (Keras), v2 = v1 quantized (INT8), the canary label on v1 taking
    all default traffic; API keys on; gRPC on."""
    work = tmp_path_factory.mktemp("grpc")
    store = trained_store.copy_to(work / "store")
    data = trained_store.data
    done = ktl_here("quantize", f"{NAME}:1", "--calibration", str(data), "--store", str(store))
    assert done.returncode == 0, done.stderr
    done = ktl_here("label", NAME, "canary", "1", "--weight", "1", "--store", str(store))
    assert done.returncode == 0, done.stderr
    port = free_port()
    # The INT8 engine wherever a version has one, whatever its agreement on these few images.
    env = {"KTL_GRPC_PORT": str(port), "KTL_API_KEYS": KEY, "KTL_INT8_MIN_AGREEMENT": "0"}
    with Gunicorn(store, workers=2, env=env, log_path=work / "server.log") as running:
        yield {"running": running, "grpc": f"127.0.0.1:{port}", "data": data}


@pytest.fixture(scope="module")
def clients(server):
    rest = httpclient.InferenceServerClient(url=server["running"].base.removeprefix("http://"))
    grpc = grpcclient.InferenceServerClient(url=server["grpc"])
    yield rest, grpc
    rest.close()
    grpc.close()


def _images(server, count: int = 6) -> np.ndarray:
    files = sorted(server["data"].rglob("*.png"))[:: 45 // 2][:count]
    return np.array([path.read_bytes() for path in files], dtype=np.object_)


def _infer(module, client, images: np.ndarray, version: str):
    tensor = module.InferInput("image_bytes", [len(images)], "BYTES")
    tensor.set_data_from_numpy(images)
    return client.infer(NAME, [tensor], model_version=version, headers=_headers())


def test_the_versions_engines_are_native_and_int8(server):
    base = server["running"].base
    body = requests.get(f"{base}/v1/models", headers=_headers(), timeout=10).json()
    [model] = body["models"]
    engines = {detail["version"]: detail["engine"] for detail in model["version_details"]}
    assert engines == {1: "keras", 2: "int8"}


@pytest.mark.parametrize("version", ["1", "2", "canary", ""])
def test_grpc_answers_what_rest_answers_to_the_bit(server, clients, version):
    rest_client, grpc_client = clients
    images = _images(server)
    rest = _infer(httpclient, rest_client, images, version)
    grpc = _infer(grpcclient, grpc_client, images, version)
    expected = {"1": "1", "2": "2", "canary": "1", "": "1"}[version]  # the canary takes all
    assert rest.get_response()["model_version"] == expected
    assert grpc.get_response().model_version == expected
    got, want = grpc.as_numpy("probabilities"), rest.as_numpy("probabilities")
    assert got.dtype == want.dtype == np.float32 and got.shape == (len(images), 3)
    assert np.abs(got - want).max() == 0
    for output in ("labels", "decision"):
        assert grpc.as_numpy(output).tolist() == rest.as_numpy(output).tolist()


def test_health_and_metadata_through_the_grpc_client(clients):
    _, grpc_client = clients
    assert grpc_client.is_server_live() and grpc_client.is_server_ready()
    assert grpc_client.is_model_ready(NAME, "2", headers=_headers())
    assert not grpc_client.is_model_ready("nope", headers=_headers())
    metadata = grpc_client.get_model_metadata(NAME, headers=_headers(), as_json=True)
    assert metadata["versions"] == ["1", "2"]
    assert [o["name"] for o in metadata["outputs"]] == ["probabilities", "labels", "decision", "id"]


def test_a_call_without_the_key_is_refused(server, clients):
    _, grpc_client = clients
    tensor = grpcclient.InferInput("image_bytes", [1], "BYTES")
    tensor.set_data_from_numpy(_images(server, 1))
    with pytest.raises(InferenceServerException) as refused:
        grpc_client.infer(NAME, [tensor])
    assert refused.value.status() == "StatusCode.UNAUTHENTICATED"
    assert "API key" in refused.value.message()


def test_a_100_mb_message_is_refused_cleanly_and_the_server_goes_on(server, clients):
    _, grpc_client = clients
    tensor = grpcclient.InferInput("image_bytes", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b"\0" * (100 * 2**20)], dtype=np.object_))
    with pytest.raises(InferenceServerException) as refused:
        grpc_client.infer(NAME, [tensor], headers=_headers())
    assert refused.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    # The bound is KTL_MAX_UPLOAD_MB (20 MB), not gRPC's default of 4 MB: 6 MB are read.
    tensor.set_data_from_numpy(np.array([b"\0" * (6 * 2**20)], dtype=np.object_))
    with pytest.raises(InferenceServerException) as refused:
        grpc_client.infer(NAME, [tensor], headers=_headers())
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"  # not an image
    assert _infer(grpcclient, grpc_client, _images(server, 1), "1").as_numpy("labels").size == 1


def test_deadlines_and_metrics(server, clients):
    _, grpc_client = clients
    tensor = grpcclient.InferInput("image_bytes", [1], "BYTES")
    tensor.set_data_from_numpy(_images(server, 1))
    with pytest.raises(InferenceServerException) as late:
        grpc_client.infer(NAME, [tensor], headers=_headers(), client_timeout=1e-6)
    assert late.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    base = server["running"].base
    text = requests.get(f"{base}/metrics", headers=_headers(), timeout=10).text
    counted = {
        json.dumps(line.split("{")[1].split("}")[0]): float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ktl_grpc_requests_total{")
    }
    ok = json.dumps('code="OK",method="ModelInfer"')
    assert counted[ok] >= 5  # every ModelInfer of this module, whichever worker took it
    assert counted[json.dumps('code="UNAUTHENTICATED",method="ModelInfer"')] >= 1
