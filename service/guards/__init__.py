"""What protects the service from its clients and its clients from it: API keys
(``auth``), security headers (``security``), limits on a request's size and shape
(``request_limits``) and no server path in an answer (``redaction``).

May import ``models`` and the rest of ``service``; never ``training`` or ``cli``.
"""
