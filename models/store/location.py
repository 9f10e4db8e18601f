"""Where a model store is: a local folder, or an object-storage URL.

``--store`` and ``KTL_MODEL_STORE`` are text. Text that looks like a URL
(``scheme://...``) is never taken as a folder name: ``Path("s3://bucket/models")``
is the relative folder ``s3:/bucket/models``, and a store there would "work" while
the models never reach the bucket. A URL is ``UnsupportedStore``, which says why.

Every entry point checks here before a path is built: the settings (``KTL_MODEL_STORE``),
the command line's ``--store``, the training options and ``ModelStore`` itself.
"""

from __future__ import annotations

import re
from pathlib import Path

from models.errors import ConfigError

# RFC 3986's scheme, then "://".
URL_PATTERN = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
# A Path made from a URL: its first part is the scheme and a colon ("s3:").
MANGLED_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")


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
    """``location`` when ktl can use it as a store (a folder); ``UnsupportedStore``
    when it is a URL."""
    scheme = url_scheme(location)
    if scheme is None:
        return location
    raise UnsupportedStore(
        f"Cannot use the store {str(location)[:200]!r}: ktl serves model stores in a local "
        f"folder, not at {scheme}:// URLs (a URL is never taken as a folder name)"
    )


def is_remote(location: str | Path) -> bool:
    """Whether ``location`` is an object-storage URL (checked or not)."""
    return url_scheme(location) is not None
