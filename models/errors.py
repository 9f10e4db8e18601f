"""One error hierarchy for the whole of ktl.

Every exception ktl raises on purpose derives from :class:`UserError` (the
caller's input cannot be used: the command line exits 2, the service answers a
4xx) or :class:`OperationalError` (the machine, the store or a peer failed: exit
1, a 5xx). Each class carries its HTTP status and machine code, so the command
line and the service each turn them into an answer in one place
(``cli.main`` and ``service.contract.errors``), and no layer translates another's errors.
Validation errors are also ``ValueError``s, as in Keras. Anything else that
escapes is a bug: a traceback on the command line, a logged 500 in the service.

This module imports nothing heavy: the command line reads it before TensorFlow.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping


class KtlError(Exception):
    """An error with a message for a person, an HTTP status and a machine code."""

    status: int = 500
    code: str = "internal_error"
    exit_code: int = 1

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class UserError(KtlError):
    """The input (a flag, a file, a request) cannot be used; the message says how to fix it."""

    status = 400
    code = "bad_request"
    exit_code = 2


class OperationalError(KtlError):
    """Something outside the input failed (disk, store, a peer); the input may be fine."""

    status = 500
    code = "internal_error"
    exit_code = 1


class ConfigError(UserError, ValueError):
    """A setting that cannot be used (a flag, a TOML key, a ``KTL_*`` variable); the
    message names it. Also a ``ValueError``, as Keras' own validation raises."""

    code = "invalid_configuration"


class WeightsUnavailable(UserError):
    """ImageNet weights could not be had (no network and no cached file, or the package
    that ships them is not installed); the message says how to get them."""

    code = "weights_unavailable"


class NotFound(UserError):
    """Something named by the caller does not exist."""

    status = 404
    code = "not_found"


class ModelNotFound(NotFound):
    """No such model or version, or a name that can never be a model's."""

    code = "model_not_found"


class Unavailable(OperationalError):
    """The service cannot answer now; it may later."""

    status = 503
    code = "unavailable"


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """ " (did you mean 'x'?)" for the closest of ``choices`` to a mistyped ``value``
    (a case slip first, then spelling), or "" when nothing is close."""
    options = list(choices)
    folded = {option.lower(): option for option in options}
    match = folded.get(value.lower())
    if match is None:
        close = difflib.get_close_matches(value.lower(), list(folded), n=1, cutoff=0.75)
        match = folded[close[0]] if close else None
    return f" (did you mean {match!r}?)" if match is not None and match != value else ""
