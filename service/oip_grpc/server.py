"""The ``inference.GRPCInferenceService`` server of one gunicorn worker.

gRPC and fork do not mix (gRPC's threads and polling do not survive a fork), so
the master never imports grpc: each worker starts its own server once it has
loaded the app (``post_worker_init`` in gunicorn.conf.py), and every worker binds
the one ``KTL_GRPC_PORT`` with SO_REUSEPORT, the kernel spreading connections over
them. A call then runs in the worker's own app, with its registry, micro-batcher
and metrics: the same models as the worker's REST routes, batched with them.

Each method mirrors a REST view of ``service.protocols.kserve``: that view's key set guards
it (``authorization: Bearer <key>`` metadata) and ``service.protocols.kserve_core`` answers.
Errors keep their messages; their HTTP status becomes the nearest gRPC code, and
ktl's machine code is the ``ktl-code`` trailing metadata.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
from flask import Flask

from models.errors import KtlError, OperationalError
from service.config import ServiceConfig
from service.guards.auth import check_authorization, keys_of_view
from service.oip_grpc import inference_pb2 as pb
from service.oip_grpc.tensors import infer_response, metadata_response, read_infer_request
from service.protocols import kserve, kserve_core
from service.protocols.kserve_bodies import InferenceRequest
from service.state import service_state

SERVICE = "inference.GRPCInferenceService"
# Room for the message around the largest body REST takes (KTL_MAX_UPLOAD_MB).
_ENVELOPE = 64 * 1024

log = logging.getLogger("ktl.service")

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


class DeadlineExceeded(OperationalError):
    """The call's deadline passed before its answer was ready."""

    status = 504
    code = "deadline_exceeded"


def status_of(exc: KtlError) -> grpc.StatusCode:
    return _CODES.get(exc.status, grpc.StatusCode.INTERNAL)


def check_deadline(context: grpc.ServicerContext) -> None:
    """Raise ``DeadlineExceeded`` once the call's deadline has passed: work for a caller
    that has stopped waiting is not started (nor answered)."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise DeadlineExceeded("The call's deadline passed before ktl could answer it")


@dataclass(frozen=True)
class Method:
    """One RPC: its request message, the REST view it mirrors (whose key set it
    needs) and its answer, given the request and the call's context."""

    request: Any
    view: Callable[..., Any]
    answer: Callable[[Any, grpc.ServicerContext], Any]


def _server_ready(message: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
    try:
        kserve_core.check_server_ready()
    except KtlError:
        return pb.ServerReadyResponse(ready=False)
    return pb.ServerReadyResponse(ready=True)


def _model_ready(message: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
    """Not ready (rather than an error) where REST answers 404 or 503."""
    try:
        kserve_core.model_ready(message.name, message.version or None)
    except KtlError as exc:
        if exc.status not in (404, 503):
            raise
        return pb.ModelReadyResponse(ready=False)
    return pb.ModelReadyResponse(ready=True)


def _server_metadata(message: Any, context: Any) -> pb.ServerMetadataResponse:
    body = kserve_core.server_metadata(extensions=[])
    return pb.ServerMetadataResponse(name=body.name, version=body.version)


def _model_metadata(message: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
    return metadata_response(kserve_core.model_metadata(message.name, message.version or None))


def _model_infer(message: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
    def read() -> tuple[InferenceRequest, memoryview]:
        request = read_infer_request(message)
        check_deadline(context)  # the decoding may have taken the rest of the time
        return request

    raw = bool(message.raw_input_contents)  # answered in the form asked in
    inferred = kserve_core.infer(
        message.model_name, message.model_version or None, read, all_binary=raw
    )
    check_deadline(context)
    return infer_response(inferred)


METHODS = {
    "ServerLive": Method(
        pb.ServerLiveRequest, kserve.live, lambda m, c: pb.ServerLiveResponse(live=True)
    ),
    "ServerReady": Method(pb.ServerReadyRequest, kserve.ready, _server_ready),
    "ModelReady": Method(pb.ModelReadyRequest, kserve.model_ready, _model_ready),
    "ServerMetadata": Method(pb.ServerMetadataRequest, kserve.server_metadata, _server_metadata),
    "ModelMetadata": Method(pb.ModelMetadataRequest, kserve.model_metadata, _model_metadata),
    "ModelInfer": Method(pb.ModelInferRequest, kserve.infer, _model_infer),
}


def call(app: Flask, name: str, message: Any, context: grpc.ServicerContext) -> Any:
    """Answer one call of method ``name`` in ``app``: the key, the deadline, the
    answer; counted in the metrics by method and status code."""
    method = METHODS[name]
    start = time.perf_counter()
    with app.app_context():
        code = grpc.StatusCode.OK
        try:
            keys = keys_of_view(method.view)
            if keys is not None:
                authorization = dict(context.invocation_metadata()).get("authorization", "")
                check_authorization(str(authorization), keys.keys(service_state().config))
            check_deadline(context)
            return method.answer(message, context)
        except KtlError as exc:
            code = status_of(exc)
            context.set_trailing_metadata((("ktl-code", exc.code),))
            context.abort(code, exc.message)
        except Exception:
            log.exception("Unhandled error in gRPC %s", name)
            code = grpc.StatusCode.INTERNAL
            context.abort(code, "Internal server error; see the server log")
        finally:
            service_state().metrics.record_grpc(name, code.name, time.perf_counter() - start)


def handler(app: Flask) -> grpc.GenericRpcHandler:
    """The service's methods, answered in ``app``."""

    def method_handler(name: str, method: Method) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            lambda message, context: call(app, name, message, context),
            request_deserializer=method.request.FromString,
            response_serializer=lambda answer: answer.SerializeToString(),
        )

    methods = {name: method_handler(name, method) for name, method in METHODS.items()}
    return grpc.method_handlers_generic_handler(SERVICE, methods)


def serve(app: Flask, config: ServiceConfig, port: int | None = None) -> grpc.Server:
    """Start the gRPC server of ``app`` on KTL_HOST and ``port`` (default
    KTL_GRPC_PORT), shared with the other workers; messages bounded by
    KTL_MAX_UPLOAD_MB (a larger one is refused with RESOURCE_EXHAUSTED)."""
    port = config.grpc_port if port is None else port
    limit = config.max_upload_bytes + _ENVELOPE
    server = grpc.server(
        ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="ktl-grpc"),
        handlers=(handler(app),),
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 1),
        ],
        maximum_concurrent_rpcs=config.threads + config.queue_size,
    )
    host = f"[{config.host}]" if ":" in config.host else config.host  # IPv6: [::]
    server.add_insecure_port(f"{host}:{port}")
    server.start()
    with app.app_context():  # REST starts it on its first request; gRPC may come first
        service_state().registry.start_polling()
    return server
