"""The Open Inference Protocol over gRPC, method by method in the test's process: each
call goes through ``service.oip_grpc.server.call`` with a stand-in for gRPC's call
context, against the same app the REST tests use, and is compared with the REST
form's answer (tests/e2e/test_grpc_e2e.py drives a real server with tritonclient)."""

from __future__ import annotations

import base64
import struct

import numpy as np
import pytest

grpc = pytest.importorskip("grpc", reason="grpcio is not installed (ktl[grpc])")

from service.oip_grpc import inference_pb2 as pb  # noqa: E402
from service.oip_grpc.server import call  # noqa: E402
from tests.service.conftest import IMAGE_SIZE, LABELS, encode_image  # noqa: E402


class Aborted(Exception):
    pass


class Context:
    """What ``call`` asks of grpc's ServicerContext."""

    def __init__(self, metadata=(), remaining: float | None = None):
        self.metadata = tuple(metadata)
        self.remaining = remaining
        self.code = self.details = None
        self.trailing = ()

    def invocation_metadata(self):
        return self.metadata

    def time_remaining(self):
        return self.remaining

    def set_trailing_metadata(self, metadata):
        self.trailing = tuple(metadata)

    def abort(self, code, details):
        self.code, self.details = code, details
        raise Aborted(details)


def _infer_request(images: list[bytes], *, raw: bool = True, **fields) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="tiny", **fields)
    tensor = request.inputs.add(name="image_bytes", datatype="BYTES", shape=[len(images)])
    if raw:
        request.raw_input_contents.append(b"".join(struct.pack("<I", len(i)) + i for i in images))
    else:
        tensor.contents.bytes_contents.extend(images)
    return request


def _refused(app, method: str, message, context: Context | None = None) -> Context:
    context = context or Context()
    with pytest.raises(Aborted):
        call(app, method, message, context)
    return context


def _rest(client, images: list[bytes]) -> dict:
    tensor = {"name": "image_bytes", "datatype": "BYTES", "shape": [len(images)]}
    tensor["data"] = [{"b64": base64.b64encode(i).decode()} for i in images]
    response = client.post("/v2/models/tiny/infer", json={"inputs": [tensor]})
    assert response.status_code == 200, response.json
    return {o["name"]: o["data"] for o in response.json["outputs"]}


def _strings(blob: bytes) -> list[str]:
    strings, offset = [], 0
    while offset < len(blob):
        (size,) = struct.unpack_from("<I", blob, offset)
        strings.append(blob[offset + 4 : offset + 4 + size].decode())
        offset += 4 + size
    return strings


def test_raw_infer_answers_raw_outputs_equal_to_rest(app, client):
    images = [encode_image(seed=1), encode_image(seed=2, size=(50, 20))]
    answer = call(app, "ModelInfer", _infer_request(images, id="r-7"), Context())
    assert (answer.model_name, answer.model_version, answer.id) == ("tiny", "1", "r-7")
    assert [o.name for o in answer.outputs] == ["probabilities", "labels", "decision", "id"]
    assert list(answer.outputs[0].shape) == [2, len(LABELS)]
    assert not any(o.HasField("contents") for o in answer.outputs)
    probabilities = np.frombuffer(answer.raw_output_contents[0], "<f4").reshape(2, -1)
    rest = _rest(client, images)
    assert np.array_equal(probabilities, np.float32(rest["probabilities"]).reshape(2, -1))
    assert _strings(answer.raw_output_contents[1]) == rest["labels"]
    assert _strings(answer.raw_output_contents[2]) == rest["decision"]
    ids = _strings(answer.raw_output_contents[3])  # each prediction's own, new each call
    assert len(set(ids)) == 2 and not set(ids) & set(rest["id"])


def test_typed_contents_in_and_out_and_requested_outputs(app, client):
    images = [encode_image(seed=3)]
    message = _infer_request(images, raw=False)
    message.outputs.add(name="labels")
    message.outputs.add(name="probabilities")
    answer = call(app, "ModelInfer", message, Context())
    assert not answer.raw_output_contents
    assert [o.name for o in answer.outputs] == ["labels", "probabilities"]
    rest = _rest(client, images)
    assert [b.decode() for b in answer.outputs[0].contents.bytes_contents] == rest["labels"]
    typed = np.float32(answer.outputs[1].contents.fp32_contents)
    assert np.array_equal(typed, np.float32(rest["probabilities"]))


def test_typed_uint8_pixels(app):
    pixels = np.random.default_rng(4).integers(0, 256, (1, *IMAGE_SIZE[::-1], 3), np.uint8)
    message = pb.ModelInferRequest(model_name="tiny")
    tensor = message.inputs.add(name="pixels", datatype="UINT8", shape=pixels.shape)
    tensor.contents.uint_contents.extend(pixels.ravel().tolist())
    answer = call(app, "ModelInfer", message, Context())
    expected = app.extensions["ktl"].registry.get("tiny").classifier.predict(pixels)
    got = np.float32(answer.outputs[0].contents.fp32_contents).reshape(expected.shape)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    tensor.contents.uint_contents[0] = 256
    context = _refused(app, "ModelInfer", message)
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT and "0 to 255" in context.details


def test_bad_requests_keep_the_rest_messages_and_codes(app):
    message = _infer_request([encode_image(seed=1)])
    message.raw_input_contents.append(b"extra")
    context = _refused(app, "ModelInfer", message)
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT
    assert context.trailing == (("ktl-code", "invalid_binary_data"),)
    context = _refused(app, "ModelInfer", _infer_request([b"not an image"]))
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT
    unknown = _infer_request([encode_image(seed=1)])
    unknown.model_name = "nope"
    assert _refused(app, "ModelInfer", unknown).code == grpc.StatusCode.NOT_FOUND


def test_health_readiness_and_metadata(app):
    assert call(app, "ServerLive", pb.ServerLiveRequest(), Context()).live
    assert call(app, "ServerReady", pb.ServerReadyRequest(), Context()).ready
    assert call(app, "ServerMetadata", pb.ServerMetadataRequest(), Context()).name == "ktl"
    ready = pb.ModelReadyRequest
    assert call(app, "ModelReady", ready(name="tiny"), Context()).ready
    assert call(app, "ModelReady", ready(name="tiny", version="1"), Context()).ready
    assert not call(app, "ModelReady", ready(name="tiny", version="9"), Context()).ready
    assert not call(app, "ModelReady", ready(name="nope"), Context()).ready
    metadata = call(app, "ModelMetadata", pb.ModelMetadataRequest(name="tiny"), Context())
    assert (metadata.name, list(metadata.versions)) == ("tiny", ["1"])
    assert [list(t.shape) for t in metadata.inputs] == [[-1], [-1, *IMAGE_SIZE[::-1], 3]]
    assert [t.name for t in metadata.outputs] == ["probabilities", "labels", "decision", "id"]


def test_api_keys_as_metadata_as_rest_guards_the_routes(make_app):
    app = make_app(api_keys=("secret",))
    message = _infer_request([encode_image(seed=1)])
    context = _refused(app, "ModelInfer", message)
    assert context.code == grpc.StatusCode.UNAUTHENTICATED
    wrong = Context([("authorization", "Bearer guess")])
    assert _refused(app, "ModelInfer", message, wrong).code == grpc.StatusCode.UNAUTHENTICATED
    metadata = pb.ModelMetadataRequest(name="tiny")
    assert _refused(app, "ModelMetadata", metadata).code == grpc.StatusCode.UNAUTHENTICATED
    keyed = Context([("authorization", "Bearer secret")])
    assert call(app, "ModelInfer", message, keyed).model_version == "1"
    # Public over REST (health, server metadata), public here.
    assert call(app, "ServerLive", pb.ServerLiveRequest(), Context()).live
    assert call(app, "ServerMetadata", pb.ServerMetadataRequest(), Context()).name == "ktl"


def test_a_call_past_its_deadline_is_not_run(app, monkeypatch):
    from service.protocols import kserve_core

    def fail(*args, **kwargs):
        raise AssertionError("ran after the deadline")

    monkeypatch.setattr(kserve_core, "infer", fail)
    context = _refused(
        app, "ModelInfer", _infer_request([encode_image(seed=1)]), Context(remaining=0)
    )
    assert context.code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_grpc_calls_are_counted_apart_from_rest(make_app):
    app = make_app()
    call(app, "ModelInfer", _infer_request([encode_image(seed=1)]), Context())
    _refused(app, "ModelInfer", _infer_request([b"junk"]))
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'ktl_grpc_requests_total{code="OK",method="ModelInfer"} 1.0' in text
    assert 'ktl_grpc_requests_total{code="INVALID_ARGUMENT",method="ModelInfer"} 1.0' in text
    assert 'ktl_model_requests_total{model="tiny",version="1",via="default"} 2.0' in text
    assert "/v2/models/{name}/infer" not in text


def test_a_real_server_bounds_messages_by_the_upload_limit(make_app):
    from service.oip_grpc.server import SERVICE, serve
    from tests.support.server import free_port

    app = make_app(max_upload_mb=1)
    port = free_port()
    server = serve(app, app.extensions["ktl"].config, port)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            infer = channel.unary_unary(
                f"/{SERVICE}/ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            answer = infer(_infer_request([encode_image(seed=1)]), timeout=30)
            assert answer.model_version == "1"
            with pytest.raises(grpc.RpcError) as refused:
                infer(_infer_request([b"\0" * (2 * 2**20)]), timeout=30)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        server.stop(grace=None).wait()
