"""The HTTP contract every route shares: the ``@operation`` record (``operation``), the
generated OpenAPI document (``openapi``), request validation (``validation``), error
and reply shapes (``replies``, ``errors``), what a path segment may hold
(``paths``) and each request's id, ``X-Request-Id`` (``request_ids``).

May import ``models`` and the rest of ``service``; never ``training`` or ``cli``.
"""
