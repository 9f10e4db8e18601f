"""The loaded-model registry: an immutable snapshot of every servable model,
rebuilt from the store and swapped in one assignment.

At start (and on every reload) each model's default version is loaded: the one
labelled ``stable``, else the highest (``models.store.labels``). If it fails, the
version served before keeps serving, else the next one down, so a broken
publication never takes a model down. The canary (a version labelled ``canary``
with a weight) loads eagerly too; other versions load on their first request.
A loaded version stays loaded while its folder exists; requests in flight keep
the ``Predictor`` they resolved, so a swap never cuts one short.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from models.metadata import BundleError, BundleMetadata
from models.store import ModelStore, validate_name
from models.store.labels import (
    CANARY,
    STABLE,
    LabelFileError,
    LabelNotFound,
    VersionLabels,
    default_candidates,
    validate_label,
)
from service.contract.errors import ModelNotFound, ModelUnavailable
from service.serving.predictor import Predictor

log = logging.getLogger("ktl.service")

# A failed version is retried only when its files change (versions are
# immutable, so normally never): retrying every poll would re-hash and re-log
# a broken bundle forever.
FolderFingerprint = tuple[tuple[str, int, int], ...]  # (file, size, mtime_ns) each


@dataclass(frozen=True)
class LoadFailure:
    reason: str
    fingerprint: FolderFingerprint


@dataclass(frozen=True)
class ModelState:
    name: str
    versions: tuple[int, ...]  # in the store and not known to be broken, ascending
    default_version: int | None  # stable (else the highest), or what serves in its place
    loaded: Mapping[int, Predictor] = field(default_factory=dict)
    failures: Mapping[int, LoadFailure] = field(default_factory=dict)
    details: Mapping[int, BundleMetadata] = field(default_factory=dict)  # every version's
    labels: VersionLabels = VersionLabels()  # labels.json as last read
    canary_version: int | None = None  # loaded, weighted, and not the default

    @property
    def default(self) -> Predictor | None:
        return None if self.default_version is None else self.loaded[self.default_version]

    @property
    def policy(self) -> Literal["stable", "latest"]:
        """stable: the default is the stable label's; latest: the highest version's."""
        return "stable" if self.labels.version_of(STABLE) in self.versions else "latest"

    @property
    def canary_weight(self) -> float:
        """The share of default traffic the canary gets now (0 without a loaded canary)."""
        return self.labels.canary_weight if self.canary_version is not None else 0.0


@dataclass(frozen=True)
class Snapshot:
    models: Mapping[str, ModelState] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        """At least one model has a servable default version."""
        return any(state.default_version is not None for state in self.models.values())


class ModelRegistry:
    def __init__(
        self,
        store: ModelStore,
        load_predictor: Callable[[Path], Predictor],
        reload_interval: float = 0.0,
        on_load: Callable[[str, int, bool], None] | None = None,
    ):
        self.store = store
        self.reload_interval = reload_interval
        self._load_predictor = load_predictor
        self._on_load = on_load  # (model, version, loaded) after each load, for /metrics
        self._snapshot = Snapshot()
        self._lock = threading.Lock()  # one loader at a time: reloads and on-demand loads
        self._poll_lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._poller_pid: int | None = None
        self._reloaded_at = float("-inf")  # time.monotonic() of the last scan
        self._stop = threading.Event()
        self._closed = False
        self._label_errors: dict[str, str] = {}  # logged once per model until they change

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def get(self, name: str, version: int | None = None) -> Predictor:
        """The predictor of ``name`` at ``version`` (default: the model's default)."""
        state = self._state(name)  # InvalidName: a 404, like any unknown model
        if version is None:
            if state.default is None:
                raise ModelUnavailable(
                    f"Model {name!r} has no version that loads: {_reasons(state)}"
                )
            return state.default
        if version in state.loaded:
            return state.loaded[version]
        if version in state.failures:
            raise ModelUnavailable(
                f"Model {name!r} version {version} could not be loaded: "
                f"{state.failures[version].reason}"
            )
        return self._load_on_demand(state, version)

    def get_label(self, name: str, label: str) -> Predictor:
        """The predictor of the version of ``name`` labelled ``label``."""
        validate_label(label)
        state = self._state(name)
        version = state.labels.version_of(label)
        if version is None:
            held = ", ".join(f"{k} ({v})" for k, v in state.labels.labels.items()) or "none"
            raise LabelNotFound(
                f"Model {name!r} has no version labelled {label!r}; its labels: {held}"
            )
        return self.get(name, version)

    def route(self, name: str, draw: float) -> tuple[Predictor, str]:
        """The default version of ``name``, or its canary when ``draw`` (uniform in
        [0, 1)) falls in the canary's share; with "default" or "canary". One snapshot
        answers both, so the pick matches the policy the request saw."""
        state = self._state(name)
        if state.canary_version is not None and draw < state.canary_weight:
            return state.loaded[state.canary_version], CANARY
        return self.get(name), "default"

    def _state(self, name: str) -> ModelState:
        validate_name(name)
        state = self._snapshot.models.get(name)
        if state is None:
            raise ModelNotFound(f"No model named {name!r}; GET /v1/models lists the models")
        return state

    def reload(self) -> Snapshot:
        """Scan the store, load new versions, and swap in the new snapshot."""
        with self._lock:
            old = self._snapshot
            try:
                names = self.store.names()
            except OSError as exc:
                log.error("Cannot read the model store %s: %s", self.store.root, exc)
                return old
            models = {}
            for name in names:
                try:
                    models[name] = self._refresh(name, old.models.get(name))
                except OSError as exc:
                    log.error("Cannot read model %r in the store: %s", name, exc)
                    if name in old.models:
                        models[name] = old.models[name]
            self._swap(Snapshot(models))
            self._reloaded_at = time.monotonic()
            return self._snapshot

    def start_polling(self) -> bool:
        """Start the reload thread in this process unless it runs or polling is off.

        Called on every request, so under gunicorn the thread starts in the
        worker after the fork; a thread inherited from a parent does not count.
        """
        if self.reload_interval <= 0 or self._poller_pid == os.getpid() or self._closed:
            return False
        with self._poll_lock:
            if self._poller_pid == os.getpid() or self._closed:
                return False
            self._poller = threading.Thread(target=self._poll, name="ktl-model-reload", daemon=True)
            self._poller.start()
            self._poller_pid = os.getpid()
        # A gunicorn worker that had no request for a while polled nothing meanwhile:
        # its first request must not be answered by labels or versions that have moved.
        if time.monotonic() - self._reloaded_at > self.reload_interval:
            self.reload()
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Stop the reload thread for good (it finishes a load in progress first)."""
        with self._poll_lock:
            self._closed = True
            self._stop.set()
            if self._poller is not None and self._poller_pid == os.getpid():
                self._poller.join(timeout)

    def _poll(self) -> None:
        while not self._stop.wait(self.reload_interval):
            try:
                self.reload()
            except Exception:
                log.exception("Model reload failed; the models already loaded keep serving")

    def _refresh(self, name: str, previous: ModelState | None) -> ModelState:
        versions = self.store.versions(name)
        previous = previous or ModelState(name, (), None)
        labels = self._read_labels(name, previous.labels)
        loaded = {v: p for v, p in previous.loaded.items() if v in versions}
        failures = {
            v: f
            for v, f in previous.failures.items()
            if v in versions and f.fingerprint == _folder_fingerprint(self._path(name, v))
        }
        candidates = default_candidates(versions, labels, previous.default_version)
        default = self._first_loadable(name, candidates, loaded, failures)
        canary = labels.version_of(CANARY)
        if canary == default or canary not in versions or not labels.canary_weight:
            canary = None
        else:
            canary = self._first_loadable(name, [canary], loaded, failures)
        return ModelState(
            name,
            tuple(v for v in versions if v not in failures),
            default,
            loaded,
            failures,
            self._details(name, versions, previous.details),
            labels,
            canary,
        )

    def _first_loadable(
        self,
        name: str,
        candidates: list[int],
        loaded: dict[int, Predictor],
        failures: dict[int, LoadFailure],
    ) -> int | None:
        """The first of ``candidates`` that is loaded or loads now (``loaded`` and
        ``failures`` are updated on the way)."""
        for version in candidates:
            if version in failures:
                continue
            if version not in loaded:
                result = self._load(name, version)
                if isinstance(result, LoadFailure):
                    failures[version] = result
                    continue
                loaded[version] = result
            return version
        return None

    def _read_labels(self, name: str, known: VersionLabels) -> VersionLabels:
        """The model's labels now; while labels.json is unreadable, the last ones read."""
        try:
            labels = self.store.labels(name)
        except LabelFileError as exc:
            if self._label_errors.get(name) != str(exc):
                log.error("Keeping the labels of %r as they were: %s", name, exc)
                self._label_errors[name] = str(exc)
            return known
        self._label_errors.pop(name, None)
        return labels

    def _details(
        self, name: str, versions: list[int], known: Mapping[int, BundleMetadata]
    ) -> dict[int, BundleMetadata]:
        """Every version's metadata (read once: versions never change), loaded or not,
        for listings; a version whose metadata does not read is left out."""
        details = {}
        for version in versions:
            if version in known:
                details[version] = known[version]
                continue
            try:
                details[version] = self.store.read_metadata(name, version)
            except BundleError:
                continue
        return details

    def _load_on_demand(self, state: ModelState, version: int) -> Predictor:
        name = state.name
        if not self.store.has_version(name, version):
            raise ModelNotFound(
                f"Model {name!r} has no version {version}; its versions are {list(state.versions)}"
            )
        with self._lock:
            current = self._snapshot.models.get(name)
            if current is None:  # removed from the store by a reload meanwhile
                raise ModelNotFound(f"No model named {name!r}; GET /v1/models lists the models")
            if version not in current.loaded and version not in current.failures:
                result = self._load(name, version)
                if isinstance(result, LoadFailure):
                    current = replace(current, failures={**current.failures, version: result})
                else:
                    current = replace(
                        current,
                        versions=tuple(sorted({*current.versions, version})),
                        loaded={**current.loaded, version: result},
                    )
                self._swap(Snapshot({**self._snapshot.models, name: current}))
        return self.get(name, version)

    def _load(self, name: str, version: int) -> Predictor | LoadFailure:
        path = self._path(name, version)
        fingerprint = _folder_fingerprint(path)
        try:
            predictor = self._load_predictor(self.store.local_copy(name, version))
            bundle = predictor.bundle
            if (bundle.name, bundle.version) != (name, version):
                raise BundleError(
                    f"{path}: metadata.json describes {bundle.name!r} version {bundle.version}, "
                    f"not {name!r} version {version}; publish bundles with the store, "
                    "never copy or rename version folders"
                )
        except Exception as exc:
            # Paths of the server are not for clients; the log keeps the full message.
            reason = str(exc).replace(str(path), f"{name}/{version}")
            log.error(
                "Model %r version %d is unavailable: %s",
                name,
                version,
                exc,
                exc_info=not isinstance(exc, BundleError),
            )
            self._loaded(name, version, False)
            return LoadFailure(reason or type(exc).__name__, fingerprint)
        log.info("Loaded model %r version %d from %s", name, version, path)
        self._loaded(name, version, True)
        return predictor

    def _loaded(self, name: str, version: int, loaded: bool) -> None:
        if self._on_load is not None:
            self._on_load(name, version, loaded)

    def _swap(self, snapshot: Snapshot) -> None:
        old = self._snapshot
        for name, state in snapshot.models.items():
            before = old.models.get(name)
            previous_default = before.default_version if before else None
            if state.default_version != previous_default:
                was = "" if previous_default is None else f" (was {previous_default})"
                log.info(
                    "Model %r now serves version %s by default%s", name, state.default_version, was
                )
            canary = (state.canary_version, state.canary_weight)
            if canary != ((before.canary_version, before.canary_weight) if before else (None, 0)):
                log.info(
                    "Model %r: canary version %s takes %.0f %% of the default traffic",
                    name,
                    state.canary_version,
                    100 * state.canary_weight,
                )
        for name in old.models.keys() - snapshot.models.keys():
            log.info("Model %r left the store; no longer served", name)
        self._snapshot = snapshot

    def _path(self, name: str, version: int) -> Path:
        return self.store.version_dir(name, version)


def _folder_fingerprint(path: Path) -> FolderFingerprint:
    """A version folder's files by name, size and mtime: whether they changed."""
    files = []
    try:
        for entry in sorted(path.iterdir()):
            if entry.is_file():
                stat = entry.stat()
                files.append((entry.name, stat.st_size, stat.st_mtime_ns))
    except OSError:
        return ()
    return tuple(files)


def _reasons(state: ModelState) -> str:
    return "; ".join(
        f"version {version}: {failure.reason}"
        for version, failure in sorted(state.failures.items())
    )
