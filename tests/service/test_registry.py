from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from models.bundle import load_bundle
from models.inference import Classifier
from models.store import ModelStore
from service.errors import ModelNotFound, ModelUnavailable
from service.predictor import BatchSettings, Predictor
from service.registry import ModelRegistry

BATCHING = BatchSettings(max_batch_size=4, max_delay_s=0, queue_size=8)


class CountingLoader:
    def __init__(self):
        self.loaded: list[Path] = []

    def __call__(self, path: Path) -> Predictor:
        self.loaded.append(path)
        return Predictor(Classifier(load_bundle(path)), BATCHING, max_pixels=10**6)


@pytest.fixture
def loader():
    return CountingLoader()


@pytest.fixture
def registry(store, loader):
    registry = ModelRegistry(ModelStore(store), loader, reload_interval=0)
    registry.reload()
    yield registry
    registry.close()


def corrupt(bundle: Path) -> None:
    with open(bundle / "model.keras", "ab") as f:
        f.write(b"tampered")


def blank() -> np.ndarray:
    return np.zeros((1, 32, 32, 3), np.uint8)


def test_the_highest_version_is_loaded_at_start_and_older_ones_on_demand(store, publish, loader):
    publish(store)
    registry = ModelRegistry(ModelStore(store), loader)
    registry.reload()
    state = registry.snapshot.models["tiny"]
    assert (state.default_version, state.versions, list(state.loaded)) == (2, (1, 2), [2])
    assert registry.get("tiny").bundle.version == 2

    assert registry.get("tiny", 1).bundle.version == 1
    assert sorted(registry.snapshot.models["tiny"].loaded) == [1, 2]
    assert registry.get("tiny", 1) is registry.get("tiny", 1)  # loaded once
    assert len(loader.loaded) == 2


def test_a_new_version_is_swapped_in_and_the_old_one_keeps_answering(registry, store, publish):
    before = registry.get("tiny")
    publish(store)
    snapshot = registry.reload()
    assert snapshot.models["tiny"].default_version == 2
    assert registry.get("tiny").bundle.version == 2
    # A request that resolved version 1 before the swap finishes on it.
    assert before.bundle.version == 1
    assert before.infer(blank()).shape == (1, 3)


def test_a_corrupt_new_version_leaves_the_old_default_serving(
    registry, store, publish, loader, caplog
):
    version = publish(store)
    corrupt(store / "tiny" / str(version))
    with caplog.at_level(logging.ERROR, logger="ktl.service"):
        registry.reload()
    state = registry.snapshot.models["tiny"]
    assert state.default_version == 1
    assert registry.get("tiny").bundle.version == 1
    assert "sha256" in state.failures[2].reason
    assert str(store) not in state.failures[2].reason  # no server paths for clients
    assert any("version 2 is unavailable" in r.getMessage() for r in caplog.records)
    with pytest.raises(ModelUnavailable, match="sha256"):
        registry.get("tiny", 2)

    # Not retried (and re-logged) on every poll while its files stay the same.
    attempts = len(loader.loaded)
    registry.reload()
    assert len(loader.loaded) == attempts


def test_a_model_whose_only_version_is_broken_is_unavailable_and_others_serve(
    registry, store, publish
):
    publish(store, "broken")
    corrupt(store / "broken" / "1")
    snapshot = registry.reload()
    assert snapshot.ready
    assert snapshot.models["broken"].default_version is None
    with pytest.raises(ModelUnavailable, match="version 1: .*sha256"):
        registry.get("broken")
    assert registry.get("tiny").infer(blank()).shape == (1, 3)


def test_a_bundle_stored_under_another_name_is_refused(registry, store):
    shutil.copytree(store / "tiny" / "1", store / "copy" / "1")
    registry.reload()
    reason = registry.snapshot.models["copy"].failures[1].reason
    assert "describes 'tiny' version 1, not 'copy' version 1" in reason


@pytest.mark.parametrize("name", ["nope", "../tiny", "..", "Tiny", "a" * 65, "a/b", ""])
def test_unknown_and_invalid_names_are_not_found(registry, name):
    with pytest.raises(ModelNotFound):
        registry.get(name)


def test_an_unknown_version_is_not_found(registry):
    with pytest.raises(ModelNotFound, match="no version 3; its versions are \\[1\\]"):
        registry.get("tiny", 3)


def test_a_version_removed_from_the_store_is_dropped(registry, store, publish):
    publish(store)
    registry.reload()
    shutil.rmtree(store / "tiny" / "2")
    registry.reload()
    state = registry.snapshot.models["tiny"]
    assert (state.default_version, list(state.loaded)) == (1, [1])


def test_an_empty_or_missing_store_is_not_ready(tmp_path, loader):
    registry = ModelRegistry(ModelStore(tmp_path / "missing"), loader)
    assert not registry.reload().ready
    with pytest.raises(ModelNotFound):
        registry.get("tiny")


def test_polling_picks_up_a_new_version_and_stops(store, publish, loader):
    registry = ModelRegistry(ModelStore(store), loader, reload_interval=0.05)
    registry.reload()
    try:
        assert registry.start_polling()
        assert not registry.start_polling()  # one thread per process
        publish(store)
        deadline = time.monotonic() + 20
        while registry.snapshot.models["tiny"].default_version != 2:
            assert time.monotonic() < deadline, "version 2 was not picked up"
            time.sleep(0.02)
        poller = registry._poller
        assert poller is not None and poller.daemon
    finally:
        registry.close()
    assert not poller.is_alive()
    assert not registry.start_polling()  # closed means closed


def test_polling_is_off_with_a_zero_interval(registry):
    assert not registry.start_polling()
    assert registry._poller is None
