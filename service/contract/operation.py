"""The HTTP contract of each route, recorded on its view function by ``@operation``.

One record, three readers: the OpenAPI document (``service.contract.openapi``) walks the
app's URL rules and reads each view's record; the API key check
(``service.guards.auth``) reads whether the route is public and which keys it needs;
query validation (``service.contract.validation``) reads the query model. A view without
a record is undocumented, so the document refuses to build, and it needs the
predict keys: forgetting the decorator never opens a route.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from service.protocols.bodies import ErrorBody

if TYPE_CHECKING:
    from service.config import ServiceConfig

V = TypeVar("V", bound=Callable[..., Any])

_ATTRIBUTE = "ktl_operation"


@dataclass(frozen=True)
class KeySet:
    """A set of bearer API keys a route may require; none configured: the routes are open."""

    name: str
    variable: str  # the KTL_* variable that lists them, for messages and the document
    scheme: str  # its security scheme in the OpenAPI document
    keys: Callable[[ServiceConfig], Sequence[str]]  # the configured keys


PREDICT_KEYS = KeySet("predict", "KTL_API_KEYS", "bearer", lambda config: config.api_keys)
# Training images (the thumbnails of reports/worst/) are data, not figures: with
# KTL_REPORT_KEYS set, only those keys see them; unset, the predict keys do.
REPORT_KEYS = KeySet(
    "reports",
    "KTL_REPORT_KEYS (else KTL_API_KEYS)",
    "reportBearer",
    lambda config: config.report_keys or config.api_keys,
)


# Training runs jobs on the server's cores and writes to the store: its own keys,
# never the predict keys. With none set the routes are off (403) unless
# KTL_TRAINING=open opens them on purpose (service.jobs_api.jobs checks that).
TRAIN_KEYS = KeySet("train", "KTL_TRAIN_KEYS", "trainBearer", lambda config: config.train_keys)


@dataclass(frozen=True)
class Reply:
    """A documented response: a JSON ``model``, media types described by hand, or both."""

    description: str
    model: type[BaseModel] | None = None
    content: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Body:
    """A request body: ``model`` as application/json, other media types by hand."""

    model: type[BaseModel] | None = None
    content: Mapping[str, Any] = field(default_factory=dict)
    description: str | None = None


@dataclass(frozen=True)
class Operation:
    operation_id: str
    summary: str
    responses: Mapping[int, Reply]
    versioned_id: str  # the operationId of the rule with a {version} in its path
    labelled_id: str  # the operationId of the rule with a {label} in its path
    query: type[BaseModel] | None
    body: Body | None
    public: bool
    keys: KeySet
    error_body: type[BaseModel]  # the shape of this route's errors
    parameters: Mapping[str, Mapping[str, Any]]  # path parameters documented otherwise
    streamed: bool  # the body streams to disk under KTL_MAX_DATASET_MB, not into memory


def operation(
    operation_id: str,
    *,
    summary: str,
    responses: Mapping[int, Reply],
    versioned_id: str | None = None,
    labelled_id: str | None = None,
    query: type[BaseModel] | None = None,
    body: Body | None = None,
    public: bool = False,
    keys: KeySet = PREDICT_KEYS,
    error_body: type[BaseModel] = ErrorBody,
    parameters: Mapping[str, Mapping[str, Any]] | None = None,
    streamed: bool = False,
) -> Callable[[V], V]:
    """Record a view's contract on it. ``public=True`` opens the route; otherwise it
    needs one of ``keys`` (when any are configured). 401, and 400 for a query, are
    documented for you."""
    record = Operation(
        operation_id=operation_id,
        summary=summary,
        responses=responses,
        versioned_id=versioned_id or f"{operation_id}Version",
        labelled_id=labelled_id or f"{operation_id}Label",
        query=query,
        body=body,
        public=public,
        keys=keys,
        error_body=error_body,
        parameters=parameters or {},
        streamed=streamed,
    )

    def decorate(view: V) -> V:
        setattr(view, _ATTRIBUTE, record)
        return view

    return decorate


def operation_of(view: Callable[..., Any] | None) -> Operation | None:
    """The contract recorded on ``view``, if any."""
    record = getattr(view, _ATTRIBUTE, None)
    return record if isinstance(record, Operation) else None
