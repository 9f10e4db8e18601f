"""Manifests checked against the Kubernetes client's own models, strictly (an unknown
field is an error, as ``kubectl apply --validate=strict`` makes it), whichever client
is installed: kubernetes 37 and later have pydantic models (``model_validate``); the
releases before (36, which pip takes beside s3fs, whose botocore wants
python-dateutil<3) have OpenAPI-generated classes with an ``attribute_map``, walked
here field by field before the client deserializes them."""

from __future__ import annotations

import re
from typing import Any

from kubernetes import client


def validate(kind: str, obj: dict) -> Any:
    """The ``client.<kind>`` model of ``obj``; ValueError naming an unknown field."""
    model = getattr(client, kind)
    if hasattr(model, "model_validate"):
        return model.model_validate(obj)
    _known_fields(kind, obj, kind)
    return client.ApiClient()._ApiClient__deserialize(obj, kind)  # type: ignore[attr-defined]


def _known_fields(type_name: str, value: Any, where: str) -> None:
    if value is None:
        return
    inner = re.fullmatch(r"list\[(.+)\]", type_name)
    if inner:
        for i, item in enumerate(value):
            _known_fields(inner.group(1), item, f"{where}[{i}]")
        return
    inner = re.fullmatch(r"dict\(str, (.+)\)", type_name)
    if inner:
        for key, item in value.items():
            _known_fields(inner.group(1), item, f"{where}.{key}")
        return
    model = getattr(client, type_name, None)
    if model is None or not hasattr(model, "attribute_map"):
        return  # str, int, bool, object, datetime: the client's deserializer checks them
    if not isinstance(value, dict):
        raise ValueError(f"{where}: a {type_name} object expected, got {value!r}")
    by_key = {key: attr for attr, key in model.attribute_map.items()}
    for key, item in value.items():
        if key not in by_key:
            raise ValueError(f"{where}: unknown field {key!r} of {type_name}")
        _known_fields(model.openapi_types[by_key[key]], item, f"{where}.{key}")
