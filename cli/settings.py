"""The command line's settings: the ``KTL_*`` variables ``ktl`` reads, one frozen
pydantic-settings object read once by ``cli.main.main`` and passed down (the parser's
``--store`` defaults, ``args.settings`` for the commands). Their definitions are the
service's own (models/settings.py), so ``ktl`` and the service read a variable alike.

``ktl serve`` hands its flags to gunicorn as ``KTL_HOST``, ``KTL_PORT``,
``KTL_WORKERS`` and ``KTL_MODEL_STORE``: the service's settings (service/config.py)
read those, in the process that serves.
"""

from __future__ import annotations

from typing import ClassVar

from models.settings import CaptureDirSetting, Int8GateSetting, StoreSetting

__all__ = ["CliSettings"]


class CliSettings(StoreSetting, Int8GateSetting, CaptureDirSetting):
    """``KTL_MODEL_STORE`` (every command's default ``--store``),
    ``KTL_INT8_MIN_AGREEMENT`` (the gate of ``ktl predict --engine auto``) and
    ``KTL_CAPTURE_DIR`` (the default ``--capture-dir`` of ``ktl review`` and of
    ``ktl train``/``ktl doctor --add-reviewed``)."""

    what: ClassVar[str] = "command line setting"
