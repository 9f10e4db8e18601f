from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from models.bundle import load_bundle
from models.engines.inference import Classifier
from models.store import ModelStore
from models.store.labels import LabelNotFound
from models.store.releases import delete_version, remove_label, set_label
from service.contract.errors import ModelNotFound, ModelUnavailable
from service.serving.predictor import BatchSettings, Predictor
from service.serving.registry import ModelRegistry

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


def test_the_first_request_of_an_idle_process_sees_what_moved_since_its_start(
    store, publish, loader
):
    """A gunicorn worker polls from its first request on; labels moved before it must
    not answer that request."""
    registry = ModelRegistry(ModelStore(store), loader, reload_interval=0.05)
    registry.reload()
    publish(store)
    set_label(ModelStore(store), "tiny", "stable", 2)
    time.sleep(0.1)
    try:
        assert registry.snapshot.models["tiny"].default_version == 1  # nothing polled yet
        assert registry.start_polling()
        assert registry.snapshot.models["tiny"].default_version == 2
    finally:
        registry.close()


def test_polling_is_off_with_a_zero_interval(registry):
    assert not registry.start_polling()
    assert registry._poller is None


# --- labels --------------------------------------------------------------------------


def test_the_stable_version_serves_and_a_new_version_does_not_take_its_place(
    registry, store, publish
):
    publish(store)
    set_label(ModelStore(store), "tiny", "stable", 1)
    publish(store)
    state = registry.reload().models["tiny"]
    assert (state.default_version, state.policy, state.versions) == (1, "stable", (1, 2, 3))
    assert sorted(state.loaded) == [1], "versions that are not served load on demand"
    set_label(ModelStore(store), "tiny", "stable", 3)
    assert registry.reload().models["tiny"].default_version == 3


def test_a_stable_version_that_does_not_load_leaves_the_last_default_serving(
    registry, store, publish
):
    publish(store)
    set_label(ModelStore(store), "tiny", "stable", 1)
    registry.reload()
    broken = publish(store)
    corrupt(store / "tiny" / str(broken))
    set_label(ModelStore(store), "tiny", "stable", broken)
    state = registry.reload().models["tiny"]
    assert state.default_version == 1 and broken in state.failures
    assert state.labels.version_of("stable") == broken, "the listing shows what was asked"


def test_unreadable_labels_keep_the_labels_as_they_were_and_are_logged_once(
    registry, store, publish, caplog
):
    publish(store)
    set_label(ModelStore(store), "tiny", "stable", 1)
    registry.reload()
    (store / "tiny" / "labels.json").write_text("{half a file")
    with caplog.at_level(logging.ERROR, logger="ktl.service"):
        registry.reload()
        registry.reload()
    assert registry.snapshot.models["tiny"].default_version == 1
    assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
    assert "labels.json" in caplog.records[0].getMessage()


def test_the_canary_loads_with_the_default_and_takes_its_share(registry, store, publish):
    publish(store)
    set_label(ModelStore(store), "tiny", "stable", 1)
    set_label(ModelStore(store), "tiny", "canary", 2, weight=0.3)
    state = registry.reload().models["tiny"]
    assert (state.canary_version, state.canary_weight, sorted(state.loaded)) == (2, 0.3, [1, 2])
    assert registry.route("tiny", 0.29)[1] == "canary"
    assert registry.route("tiny", 0.3) == (registry.get("tiny"), "default")
    assert registry.get_label("tiny", "canary").bundle.version == 2
    remove_label(ModelStore(store), "tiny", "canary")
    state = registry.reload().models["tiny"]
    assert (state.canary_version, state.canary_weight) == (None, 0)
    assert registry.route("tiny", 0.0)[1] == "default"
    with pytest.raises(LabelNotFound, match="no version labelled 'canary'; its labels: stable"):
        registry.get_label("tiny", "canary")


def test_a_deleted_version_goes_on_the_next_poll_and_requests_on_it_finish(
    registry, store, publish
):
    publish(store)
    set_label(ModelStore(store), "tiny", "stable", 1)
    set_label(ModelStore(store), "tiny", "canary", 2, weight=0.5)
    registry.reload()
    in_flight = registry.get_label("tiny", "canary")
    delete_version(ModelStore(store), "tiny", 2, force=True)
    state = registry.reload().models["tiny"]
    assert (state.versions, sorted(state.loaded), state.canary_version) == ((1,), [1], None)
    assert in_flight.infer(blank()).shape == (1, 3)
    with pytest.raises(ModelNotFound):
        registry.get("tiny", 2)


def test_the_log_says_which_version_serves_and_what_it_replaced(store, publish, loader, caplog):
    registry = ModelRegistry(ModelStore(store), loader, reload_interval=0)
    with caplog.at_level(logging.INFO, logger="ktl.service"):
        registry.reload()
        publish(store)
        registry.reload()
    registry.close()
    messages = [r.getMessage() for r in caplog.records if "by default" in r.getMessage()]
    assert messages == [
        "Model 'tiny' now serves version 1 by default",
        "Model 'tiny' now serves version 2 by default (was 1)",
    ]
