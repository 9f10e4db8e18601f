"""Where a model store is: a local folder, or an object-storage URL.

``--store`` and ``KTL_MODEL_STORE`` are text. Text that looks like a URL
(``scheme://...``) is never taken as a folder name: ``Path("s3://bucket/models")``
is the relative folder ``s3:/bucket/models``, and a store there would "work" while
the models never reach the bucket. A URL is served only when its scheme is in ``SERVED`` and the
library that speaks it is installed (``models.store.remote``); any other is
``UnsupportedStore``, which says why.

Every entry point checks here before a path is built: the settings (``KTL_MODEL_STORE``),
the command line's ``--store``, the training options and ``ModelStore`` itself.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import TYPE_CHECKING

from models.errors import ConfigError

if TYPE_CHECKING:
    from models.store.versions import ModelStore

# RFC 3986's scheme, then "://".
URL_PATTERN = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
# A Path made from a URL: its first part is the scheme and a colon ("s3:").
MANGLED_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")

# The URL schemes a store may have: the fsspec library that speaks each and the ktl
# extra that installs it. gs:// and az:// (gcsfs, adlfs: the ktl[gcs] and ktl[azure]
# extras) wait for their conditional label writes (generation match, Azure's ETags).
SERVED: dict[str, tuple[str, str]] = {"s3": ("s3fs", "s3")}
UNSERVED = {
    "gs": "not yet: label changes there need gcsfs's generation-match writes; ",
    "az": "not yet: label changes there need adlfs's ETag conditions; ",
}


class UnsupportedStore(ConfigError):
    """A store given as a URL that ktl cannot serve; never taken as a folder."""

    code = "unsupported_store"


def url_scheme(location: str | Path) -> str | None:
    """The scheme of ``location`` when it is a URL (``s3``), else None. A ``Path`` made
    from a URL (``s3:/bucket``) counts as one."""
    if isinstance(location, Path):
        first = location.parts[0] if location.parts else ""
        return first[:-1].lower() if MANGLED_URL.fullmatch(first) else None
    match = URL_PATTERN.match(location.strip())
    return match.group(1).lower() if match else None


def check_location(location: str | Path) -> str | Path:
    """``location`` when ktl can use it as a store: a folder, or a URL whose scheme is
    served and whose library is installed; ``UnsupportedStore`` otherwise."""
    scheme = url_scheme(location)
    if scheme is None:
        return location
    shown = str(location)[:200]
    if scheme not in SERVED or isinstance(location, Path):
        made = " made into a folder path" if isinstance(location, Path) else ""
        raise UnsupportedStore(
            f"Cannot use the store {shown!r}{made}: ktl serves model stores in a local folder "
            f"or at s3://bucket/prefix, not at {scheme}:// URLs ({UNSERVED.get(scheme, '')}"
            "a URL is never taken as a folder name)"
        )
    library, extra = SERVED[scheme]
    if importlib.util.find_spec(library) is None:
        raise UnsupportedStore(
            f"Cannot use the store {shown!r}: {scheme}:// stores need the {library} "
            f"library, which is not installed (pip install 'ktl[{extra}]')"
        )
    return location


def open_store(location: str | Path, cache: Path | None = None) -> ModelStore:
    """The store at ``location``: a folder's ``ModelStore``, or a ``RemoteModelStore``
    whose local copies are under ``cache`` (default ``~/.cache/ktl``)."""
    check_location(location)
    if not is_remote(location):
        from models.store.versions import ModelStore

        return ModelStore(location)
    from models.store.remote import RemoteModelStore

    return RemoteModelStore(str(location), cache or Path.home() / ".cache" / "ktl")


def is_remote(location: str | Path) -> bool:
    """Whether ``location`` is an object-storage URL (checked or not)."""
    return url_scheme(location) is not None
