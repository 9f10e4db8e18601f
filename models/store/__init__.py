"""The model store: the one owner of everything ktl keeps on disk under a store
root. Published versions and their metadata (``versions``: ``ModelStore``), labels
and their history (``labels``), where unfinished jobs, their locks and progress
records, and the training job queue live (``layout``), and the one atomic writer
every record goes through (``atomic``); what an operator does to a model's versions
(``releases``: label, promote, roll back, delete) is written here too.

Every other module asks ``ModelStore`` (or ``QueuePaths``) for a path instead of
joining a store root with a model name or version itself;
tests/models/test_store_paths.py checks that. It imports only ``models.errors``,
``models.metadata`` and ``models.timestamps`` (pydantic, no TensorFlow), never
``training``, ``service`` or ``cli``.
"""

from models.errors import ModelNotFound
from models.metadata import METADATA_FILE
from models.store.atomic import write_atomically, write_json_atomically, write_text_atomically
from models.store.layout import (
    NAME_PATTERN,
    VERSION_PATTERN,
    InvalidName,
    QueuePaths,
    validate_name,
)
from models.store.location import UnsupportedStore, open_store
from models.store.versions import DeleteError, ModelStore, PublishError, read_metadata_file

__all__ = [
    "METADATA_FILE",
    "NAME_PATTERN",
    "VERSION_PATTERN",
    "DeleteError",
    "InvalidName",
    "ModelNotFound",
    "ModelStore",
    "PublishError",
    "QueuePaths",
    "UnsupportedStore",
    "open_store",
    "read_metadata_file",
    "validate_name",
    "write_atomically",
    "write_json_atomically",
    "write_text_atomically",
]
