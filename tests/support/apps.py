"""A Flask app built once for the tests of a module that only send it requests and
change nothing it holds: building one loads the model, about half a second of CPU."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def shared_app(**settings) -> Iterator:
    """``create_app`` with polling off and these settings alone (no ``KTL_`` variable
    of the environment counts, as with the ``make_app`` fixture), closed at the end."""
    from service.app import create_app

    with pytest.MonkeyPatch.context() as patch:
        for variable in [name for name in os.environ if name.startswith("KTL_")]:
            patch.delenv(variable)
        app = create_app({"reload_interval": 0, **settings})
    try:
        yield app
    finally:
        app.extensions["ktl"].registry.close()
