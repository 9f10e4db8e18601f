"""A model store in object storage (``s3://bucket/prefix``), through fsspec.

The same layout as a folder store (``<store>/<name>/<version>/``, ``labels.json``
beside the versions), with what object storage lacks made explicit:

- **Publish.** A version number is claimed first by a conditional create of its
  ``.claim`` object (``If-None-Match: *``: of two publishers one gets the number,
  the other the next); the bundle's files are uploaded; the ``.published`` marker is
  written last. Readers list versions by their markers, so a version whose upload
  stopped halfway is never seen. Deleting takes the marker away first.
- **Read-through cache.** A version is downloaded once into the local cache
  (``KTL_CACHE_DIR``), each file hashed as it arrives and checked against the sha256
  its ``metadata.json`` records (sizes too); a truncated or corrupt object is refused
  (``BundleError``) and the partial download removed, so it is never served. The copy
  appears in the cache in one rename, and versions never change, so it is reused.
- **Labels** are written with ``If-Match`` on the ETag that was read (``If-None-Match:
  *`` when there was none), and the change is applied again to the new content on a
  conflict: two writers never lose each other's change.
- **Polling.** ``labels`` asks for the object's ETag and reads the body only when the
  ETag changed.

Everything local (staging bundles, training jobs' state, the job queue) is under the
cache folder, which is ``root``. Credentials are the library's own chain (environment,
profile, instance or pod role); ktl never reads, passes or logs one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models.errors import ModelNotFound, OperationalError
from models.metadata import METADATA_FILE, BundleError, BundleMetadata, read_metadata_text
from models.store.labels import LABELS_FILE, LabelFileError, VersionLabels, parse_labels
from models.store.layout import CLAIM_FILE, MARKER_FILE, NAME_PATTERN, VERSION_PATTERN
from models.store.versions import ModelStore, PublishError

Change = Callable[[VersionLabels], VersionLabels]
Then = Callable[[], None] | None
# A label write that lost a race is tried again on the new content, this many times.
LABEL_ATTEMPTS = 20
CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


class RemoteStoreError(OperationalError, OSError):
    """The object store could not be read or written; the message names the URL. An
    ``OSError`` too, so a reader that outlives a failing disk (the service's registry,
    which keeps what it serves) outlives a failing bucket alike."""

    code = "store_unreachable"


def conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is a conditional write that lost (412/409), however fsspec wraps it."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, FileExistsError):
            return True
        error = getattr(seen, "response", {}) or {}
        if str(error.get("Error", {}).get("Code")) in CONFLICT_CODES:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class RemoteModelStore(ModelStore):
    """``ModelStore``'s interface over an fsspec filesystem at ``url``; ``cache`` is the
    local folder of downloaded versions, staging bundles and job state."""

    def __init__(self, url: str, cache: Path, fs: Any = None):
        import fsspec

        self.url = url.rstrip("/")
        self.fs = (
            fs
            if fs is not None
            else fsspec.filesystem(self.url.split("://")[0], skip_instance_cache=True)
        )
        self.root = cache / hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self._etags: dict[str, tuple[str, VersionLabels]] = {}
        self._lock = threading.Lock()

    def __str__(self) -> str:
        return self.url

    def _key(self, *parts: object) -> str:
        return "/".join([self.url, *(str(p) for p in parts)])

    def _call(self, what: str, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise RemoteStoreError(f"Cannot {what} in {self.url}: {exc}") from exc

    # -- reading -------------------------------------------------------------------------

    def names(self) -> list[str]:
        found = self._call("list the models", lambda: self._glob(self._key("*", "*", MARKER_FILE)))
        return sorted({p.split("/")[-3] for p in found if NAME_PATTERN.fullmatch(p.split("/")[-3])})

    def versions(self, name: str) -> list[int]:
        found = self._call(
            f"list the versions of {name!r}",
            lambda: self._glob(self._key(self.model_dir(name).name, "*", MARKER_FILE)),
        )
        numbers = (p.split("/")[-2] for p in found)
        return sorted(int(n) for n in numbers if VERSION_PATTERN.fullmatch(n))

    def _glob(self, pattern: str) -> list[str]:
        self.fs.invalidate_cache()  # fsspec's listing cache would hide other writers
        return list(self.fs.glob(pattern))

    def has_version(self, name: str, version: int) -> bool:
        marker = self._key(self.model_dir(name).name, int(version), MARKER_FILE)
        return bool(self._call("read", lambda: self.fs.exists(marker)))

    def read_metadata(self, name: str, version: int) -> BundleMetadata:
        key = self._key(self.model_dir(name).name, int(version), METADATA_FILE)
        try:
            text = self._call("read", lambda: self.fs.cat_file(key)).decode("utf-8")
        except (FileNotFoundError, RemoteStoreError, ValueError) as exc:
            raise BundleError(f"{key}: cannot read {METADATA_FILE}: {exc}") from exc
        return read_metadata_text(text, key)

    def labels(self, name: str) -> VersionLabels:
        return self._labels_and_etag(name)[0]

    def _labels_and_etag(self, name: str) -> tuple[VersionLabels, str | None]:
        """The labels and their ETag (None: no labels yet); the body is read only when
        the ETag differs from the one read last."""
        key = self._key(self.model_dir(name).name, LABELS_FILE)
        try:
            self.fs.invalidate_cache(key)
            etag = str(self.fs.info(key)["ETag"])
        except FileNotFoundError:
            return VersionLabels(), None
        except (OSError, KeyError) as exc:
            raise LabelFileError(f"Cannot read {key}: {exc}") from exc
        with self._lock:
            known = self._etags.get(key)
        if known is not None and known[0] == etag:
            return known[1], etag
        try:
            labels = parse_labels(self.fs.cat_file(key).decode("utf-8"), key)
        except FileNotFoundError:
            return VersionLabels(), None
        except OSError as exc:
            raise LabelFileError(f"Cannot read {key}: {exc}") from exc
        with self._lock:
            self._etags[key] = (etag, labels)
        return labels, etag

    def check_exists(self) -> None:
        if not self._call("read", lambda: self.fs.exists(self.url.split("://")[1].split("/")[0])):
            raise ModelNotFound(
                f"No model store at {self.url} (its bucket does not exist or cannot be read): "
                "choose the store with --store or KTL_MODEL_STORE"
            )

    def _no_model(self, name: str) -> str:
        names = self.names()
        held = f"; it holds: {', '.join(names)}" if names else ": it holds no model yet"
        return f"No model named {name!r} in {self.url}{held}"

    # -- the local copy ------------------------------------------------------------------

    def local_copy(self, name: str, version: int) -> Path:
        """The version's folder in the cache, downloaded and verified first if needed."""
        target = self.version_dir(name, version)
        if (target / METADATA_FILE).is_file():
            return target
        metadata = self.read_metadata(name, version)
        partial = self.root / f".download-{uuid.uuid4().hex}"
        try:
            for relative in [*metadata.files, METADATA_FILE]:
                self._download(name, version, relative, partial / relative, metadata)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                partial.rename(target)
            except OSError:
                if not (target / METADATA_FILE).is_file():  # else: another process won
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return target

    def _download(
        self, name: str, version: int, relative: str, dest: Path, metadata: BundleMetadata
    ) -> None:
        key = self._key(self.model_dir(name).name, int(version), relative)
        if Path(relative).is_absolute() or ".." in Path(relative).parts:
            raise BundleError(f"{key}: {METADATA_FILE} names a file outside its version")
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        try:
            with self.fs.open(key, "rb") as source, open(dest, "wb") as out:
                for chunk in iter(lambda: source.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
        except FileNotFoundError as exc:
            raise BundleError(f"{key} is missing from the store") from exc
        except OSError as exc:
            raise BundleError(f"{key} could not be downloaded: {exc}") from exc
        expected = metadata.files.get(relative)
        if expected is not None and digest.hexdigest() != expected:
            raise BundleError(
                f"{key} does not match its sha256 in {METADATA_FILE} (truncated or corrupt "
                "object); the version is not served"
            )

    # -- writing -------------------------------------------------------------------------

    def publish(self, staging: Path, name: str, metadata: dict) -> int:
        """Upload the bundle in ``staging`` as the next version, marker last."""
        folder = self.model_dir(name).name
        try:
            version = self._claim(folder)
            (staging / METADATA_FILE).write_text(
                json.dumps({**metadata, "version": version}, indent=2) + "\n", encoding="utf-8"
            )
            for path in sorted(p for p in staging.rglob("*") if p.is_file()):
                relative = path.relative_to(staging).as_posix()
                self.fs.put_file(str(path), self._key(folder, version, relative))
            self.fs.pipe_file(self._key(folder, version, MARKER_FILE), b"")
        except (OSError, LabelFileError) as exc:
            raise PublishError(
                f"Could not publish {name!r} to {self.url}: {exc}. No version was published "
                "(readers ignore a version without its marker)."
            ) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return version

    def _claim(self, folder: str) -> int:
        """The next version number of ``folder``, taken by a conditional create."""
        self.fs.invalidate_cache()
        taken = [
            int(p.split("/")[-2])
            for p in self.fs.glob(self._key(folder, "*", CLAIM_FILE))
            if VERSION_PATTERN.fullmatch(p.split("/")[-2])
        ]
        version = max([*taken, *self.labels(folder).deleted], default=0) + 1
        while True:
            try:
                self.fs.pipe_file(self._key(folder, version, CLAIM_FILE), b"", mode="create")
                return version
            except OSError as exc:
                if not conflict(exc):
                    raise
                version += 1

    def update_labels(self, name: str, change: Change, then: Then = None) -> VersionLabels:
        """``change`` applied to the labels and written only if nobody wrote them since
        they were read (If-Match on their ETag); on a conflict, read and apply again."""
        key = self._key(self.model_dir(name).name, LABELS_FILE)
        if not self.versions(name):
            raise ModelNotFound(self._no_model(name))
        for attempt in range(LABEL_ATTEMPTS):
            before, etag = self._labels_and_etag(name)
            after = change(before)
            if after == before:
                break
            body = (json.dumps(after.model_dump(mode="json"), indent=2) + "\n").encode()
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                self.fs.pipe_file(key, body, **condition)
                break
            except OSError as exc:
                if not conflict(exc):
                    raise LabelFileError(f"Cannot write {key}: {exc}; unchanged") from exc
                time.sleep(0.05 * (attempt + 1))
        else:
            raise LabelFileError(f"Cannot write {key}: {LABEL_ATTEMPTS} conflicting writers")
        if then is not None:
            then()
        return after

    def remove_version(self, name: str, version: int) -> None:
        """Take the marker away (readers stop seeing the version), then the files."""
        folder = self.model_dir(name).name
        self._call("delete", lambda: self.fs.rm(self._key(folder, int(version), MARKER_FILE)))
        for path in self.fs.find(self._key(folder, int(version))):
            if not path.endswith("/" + CLAIM_FILE):  # the number stays taken
                self.fs.rm(path)
        shutil.rmtree(self.version_dir(name, version), ignore_errors=True)
