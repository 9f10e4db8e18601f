"""The HTTP contract every route shares: the ``@operation`` record (``operation``), the
generated OpenAPI document (``openapi``), request validation (``validation``), error
and reply shapes (``replies``, ``errors``) and what a path segment may hold
(``paths``).

May import ``models`` and the rest of ``service``; never ``training`` or ``cli``.
"""
