"""ktl's models package, and its Python API::

    from models import load_bundle

    bundle = load_bundle("model_store/demo/1")      # a version folder, checksums verified
    bundle = load_bundle("demo")                     # or a name: its default version in
                                                     # $KTL_MODEL_STORE (./model_store)
    response = bundle.predict(["photo.jpg"])         # == `ktl predict photo.jpg --json`
    response.predictions[0].top[0].label

To load a bundle's bare Keras model, register ktl's custom layers by importing
``models.networks.layers`` (it imports Keras)::

    import keras

    import models.networks.layers  # noqa: F401  (registers ktl's layers with Keras)

    model = keras.saving.load_model("model_store/demo/1/model.keras")

``load_bundle`` does that itself. ``import models`` alone imports no TensorFlow,
so light modules such as ``models.networks.backbones`` stay quick to import; when Keras is
already imported it registers the layers too (there is no import hook), so
``import keras, models`` still loads such a model, as in ktl 0.1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.bundle import Bundle

__all__ = ["load_bundle"]


def load_bundle(
    path_or_name: str | Path, *, version: int | None = None, store: str | Path | None = None
) -> Bundle:
    """A loaded, checksum-verified bundle: a version folder, or a model name of
    ``store`` (default ``$KTL_MODEL_STORE`` or ``./model_store``) at ``version``
    (default: the model's default version)."""
    from models import quiet

    quiet.install()  # before TensorFlow is imported: no start-up banner on the user's terminal
    from models import bundle
    from models.settings import StoreSetting
    from models.store import METADATA_FILE, open_store

    folder = Path(path_or_name)
    if version is None and store is None and (folder / METADATA_FILE).is_file():
        return bundle.load_bundle(folder)
    settings = StoreSetting.from_env()
    opened = open_store(store if store is not None else settings.model_store, settings.cache_dir)
    found, _ = opened.resolve(str(path_or_name), version)
    return bundle.load_bundle(opened.local_copy(str(path_or_name), found))


if "keras" in sys.modules:  # registering costs nothing once Keras is imported
    import models.networks.layers  # noqa: F401
