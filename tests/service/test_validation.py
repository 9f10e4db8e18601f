"""Requests against the contract's models: messages that name the field path, the
query checked before the body is read, base64 as the document's pattern says."""

from __future__ import annotations

import base64
import binascii
import io
import json
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from service.contract.validation import describe, field_path
from service.protocols.bodies import BASE64_PATTERN, decode_base64
from service.protocols.kserve_bodies import InferenceRequest
from service.protocols.tfserving_bodies import TFServingRequest

PREDICT = "/v1/models/tiny/predict"


@given(st.from_regex(BASE64_PATTERN))
def test_every_string_the_documented_pattern_allows_decodes(text):
    assert decode_base64(text) == base64.b64decode(re.sub(r"[ \t\n\r]", "", text))


@example("AAAA=")  # Python's strict decoder ignores = after a full group
@example("AAAA===")
@example("AAA==")
@example("QUJD\x0b")
@given(
    st.text(alphabet="AQab+/=\n\r \t\x0b*é", max_size=12)
    | st.binary(max_size=9).map(lambda data: base64.b64encode(data).decode())
)
def test_the_pattern_is_what_pythons_strict_decoder_takes_less_spaces_and_line_breaks(text):
    documented = re.fullmatch(BASE64_PATTERN, text) is not None
    try:
        base64.b64decode(re.sub(r"[ \t\n\r]", "", text), validate=True)
    except (binascii.Error, ValueError):
        decodes = False
    else:
        decodes = True
    assert documented == decodes
    if not documented:
        with pytest.raises(ValueError, match="base64"):
            decode_base64(text)


@pytest.mark.parametrize(
    ("loc", "document", "missing", "path"),
    [
        (("inputs", 0, "UINT8", "shape", 1), {"inputs": [{"shape": [1, 2]}]}, False,
         "inputs[0].shape[1]"),
        (("inputs", 0, "BYTES", "name"), {"inputs": [{"shape": [1]}]}, True, "inputs[0].name"),
        (("instances", 0, "b64"), {"instances": [{"b64": 5}]}, False, "instances[0].b64"),
        ((), [], False, ""),
    ],
)  # fmt: skip
def test_field_paths_leave_out_the_union_members_pydantic_tried(loc, document, missing, path):
    assert field_path(loc, document, missing=missing) == path


def test_messages_name_the_place_in_the_body_not_the_union_member_tried():
    body = {"inputs": [{"name": "x", "datatype": "UINT8", "shape": [1, 2, 2, 4]}]}
    with pytest.raises(ValidationError) as caught:
        InferenceRequest.model_validate(body)
    assert describe(caught.value, body) == "inputs[0].shape[3]: Input should be 3"
    instance = {"instances": [{"image_bytes": {"b64": "**"}}]}
    with pytest.raises(ValidationError) as caught:
        TFServingRequest.model_validate(instance)
    assert describe(caught.value, instance).startswith("instances[0].image_bytes.b64: not valid")


class RecordingStream(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.reads = 0

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        return super().read(size)


@pytest.mark.parametrize("query", ["top_k=0", "top_k=abc", "top_k="])
def test_a_bad_query_is_refused_before_the_body_is_read(client, image_bytes, query):
    stream = RecordingStream(image_bytes())
    response = client.post(
        f"{PREDICT}?{query}",
        input_stream=stream,
        content_type="image/png",
        headers={"Transfer-Encoding": "chunked"},  # the app itself would read this one
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 400 and response.json["code"] == "bad_request"
    assert "Query parameter 'top_k'" in response.json["error"]
    assert stream.reads == 0


def test_query_messages_name_the_parameter_its_value_and_the_rule(client, image_bytes):
    png = {"data": image_bytes(), "content_type": "image/png"}
    response = client.post("/v1/models/tiny/explain?format=gif&class=", **png)
    assert response.status_code == 400
    assert "Query parameter 'format' is 'gif': must be png or json" in response.json["error"]
    assert "Query parameter 'class' is ''" in response.json["error"]
    missing = client.post("/v1/models/tiny/activations", **png).json["error"]
    assert missing.startswith("Query parameter 'layer' is required: A layer with feature maps")
    # Like request.args.get: the first of repeated parameters counts.
    assert client.post(f"{PREDICT}?top_k=1&top_k=0", **png).status_code == 200


def test_long_lists_stop_at_their_first_bad_item():
    """A body of megabytes can hold millions of items: one error, not millions."""

    def tensor(datatype, shape, **data):
        return {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, **data}]}

    many = 100_000
    bodies = [
        (TFServingRequest, {"instances": [{"b64": 5}] * many}),
        (InferenceRequest, tensor("BYTES", [True] * many)),
        (InferenceRequest, tensor("BYTES", [1], data=["!"] * many)),
        (InferenceRequest, tensor("UINT8", [1, 1, 1, 3], data=[-1] * many)),
        (InferenceRequest, {"inputs": [], "outputs": [{"name": "x"}] * many}),
    ]
    for model, body in bodies:
        with pytest.raises(ValidationError) as caught:
            model.model_validate_json(json.dumps(body))
        assert len(caught.value.errors()) <= 3, (model, caught.value.errors()[:4])
