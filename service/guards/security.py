"""Security headers on every response: ``init_app(app)`` registers the hook.

The service answers JSON (and Prometheus text) to programs, never HTML to a
browser; these headers make sure no browser treats an answer as anything else:
no MIME sniffing (an upload reflected in an error message stays text), no
framing, no referrer, nothing cached (predictions and model metadata may be
private), and a Content-Security-Policy that lets nothing load or run.
"""

from __future__ import annotations

from flask import Flask, Response

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; sandbox",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_EXTENSION = "ktl.security"


def add_security_headers(response: Response) -> Response:
    """An ``after_request`` hook; headers a view set itself are kept."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def init_app(app: Flask) -> None:
    """Add the headers to every response of ``app``, errors included; idempotent."""
    if app.extensions.get(_EXTENSION):
        return
    app.extensions[_EXTENSION] = True
    app.after_request(add_security_headers)
