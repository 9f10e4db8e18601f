"""The web pages (``web``): try a model, read its training report, train one. The pages
themselves are static files in ``service/static``.

May import ``models`` and the rest of ``service``; never ``training`` or ``cli``.
"""
