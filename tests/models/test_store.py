"""The model store: safe names, numbered versions that appear only complete, never reused."""

from __future__ import annotations

import errno
import json
import os
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from models.store import (
    METADATA_FILE,
    InvalidName,
    ModelNotFound,
    ModelStore,
    PublishError,
    validate_name,
)

# -- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "0", "flowers", "my-model_2", "9lives", "a" * 64, "a-"])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "..",
        ".",
        "%2e%2e",
        "a/b",
        "a\\b",
        "Flowers",
        "a" * 65,
        "",
        "-x",
        "_x",
        ".staging",
        "a b",
        "a.b",
        "x\n",
        "café",
        None,
        5,
    ],
)
def test_invalid_names(name):
    with pytest.raises(InvalidName, match="Invalid model name"):
        validate_name(name)


def test_invalid_name_is_checked_before_touching_the_disk(tmp_path):
    store = ModelStore(tmp_path / "store")
    with pytest.raises(InvalidName):
        store.versions("../outside")
    with pytest.raises(InvalidName):
        store.staging_dir("../outside")
    assert not (tmp_path / "store").exists()


# -- publishing -----------------------------------------------------------------------------


def publish(store: ModelStore, name: str, payload: str = "weights") -> int:
    staging = store.staging_dir(name)
    (staging / "model.keras").write_text(payload)
    (staging / "reports").mkdir()
    (staging / "reports" / "metrics.json").write_text("{}")
    return store.publish(staging, name, {"name": name, "labels": ["a", "b"]})


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with the content of files, to compare whole stores."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes() if path.is_file() else None
        for path in sorted(root.rglob("*"))
    }


def test_publish_numbers_versions_1_2_3(tmp_path):
    store = ModelStore(tmp_path)
    assert [publish(store, "flowers", f"v{i}") for i in range(3)] == [1, 2, 3]
    assert store.versions("flowers") == [1, 2, 3]
    assert store.latest("flowers") == 3
    for version in (1, 2, 3):
        folder = tmp_path / "flowers" / str(version)
        assert (folder / "model.keras").read_text() == f"v{version - 1}"
        assert (folder / "reports" / "metrics.json").is_file()
        metadata = json.loads((folder / METADATA_FILE).read_text())
        assert metadata == {"name": "flowers", "labels": ["a", "b"], "version": version}


def test_publish_moves_the_staging_folder(tmp_path):
    store = ModelStore(tmp_path)
    staging = store.staging_dir("flowers")
    assert staging.parent.name.startswith(".")  # hidden: never listed as a model
    (staging / "model.keras").write_text("x")
    store.publish(staging, "flowers", {})
    assert not staging.exists()
    assert list((tmp_path / ".staging").iterdir()) == []


def test_models_are_numbered_independently(tmp_path):
    store = ModelStore(tmp_path)
    assert publish(store, "cats") == 1
    assert publish(store, "dogs") == 1
    assert publish(store, "cats") == 2
    assert store.names() == ["cats", "dogs"]


def test_published_versions_are_never_overwritten(tmp_path):
    store = ModelStore(tmp_path)
    publish(store, "flowers", "first")
    publish(store, "flowers", "second")
    assert (tmp_path / "flowers" / "1" / "model.keras").read_text() == "first"


# -- listing ignores what is not a complete version ----------------------------------------


@pytest.fixture
def cluttered(tmp_path) -> ModelStore:
    """Two complete versions of ``flowers`` among everything a store may also hold."""
    store = ModelStore(tmp_path)
    publish(store, "flowers")
    publish(store, "flowers")
    (tmp_path / "flowers" / "3").mkdir()  # a crashed copy: no metadata.json
    (tmp_path / "flowers" / "3" / "model.keras").write_text("half")
    for junk in ("latest", "07", "0", "1.5", "-4", "backup"):
        (tmp_path / "flowers" / junk).mkdir()
        (tmp_path / "flowers" / junk / METADATA_FILE).write_text("{}")
    (tmp_path / "flowers" / "9").write_text("a file, not a folder")
    store.staging_dir("flowers")
    store.job_dir("flowers").mkdir(parents=True)
    (tmp_path / "empty").mkdir()  # a model with no complete version
    (tmp_path / "empty" / "1").mkdir()
    (tmp_path / "Upper").mkdir()
    (tmp_path / "Upper" / "1").mkdir()
    (tmp_path / "Upper" / "1" / METADATA_FILE).write_text("{}")
    (tmp_path / "README.txt").write_text("not a model")
    return store


def test_versions_lists_only_complete_numbered_folders(cluttered):
    assert cluttered.versions("flowers") == [1, 2]
    assert cluttered.latest("flowers") == 2


def test_names_lists_only_models_with_a_complete_version(cluttered):
    assert cluttered.names() == ["flowers"]


def test_a_stray_incomplete_version_is_never_reused(tmp_path):
    store = ModelStore(tmp_path)
    publish(store, "flowers")
    publish(store, "flowers")
    (tmp_path / "flowers" / "3").mkdir()
    (tmp_path / "flowers" / "3" / "model.keras").write_text("half")
    assert store.versions("flowers") == [1, 2]
    assert publish(store, "flowers") == 4
    assert store.versions("flowers") == [1, 2, 4]
    assert (tmp_path / "flowers" / "3" / "model.keras").read_text() == "half"


def test_publishing_among_clutter_takes_a_number_above_everything(cluttered, tmp_path):
    version = publish(cluttered, "flowers")
    assert version == 10  # one above the file named 9: no numbered name is ever reused
    assert cluttered.versions("flowers") == [1, 2, version]


def test_hidden_folders_are_not_models(tmp_path):
    store = ModelStore(tmp_path)
    store.staging_dir("flowers")
    store.job_dir("flowers").mkdir(parents=True)
    assert store.names() == []
    assert store.job_dir("flowers").parent.name.startswith(".")


def test_missing_store_is_empty(tmp_path):
    store = ModelStore(tmp_path / "nothing-here")
    assert store.names() == []
    assert store.versions("flowers") == []


def test_resolve(cluttered, tmp_path):
    assert cluttered.resolve("flowers") == (2, tmp_path / "flowers" / "2")
    assert cluttered.resolve("flowers", 1) == (1, tmp_path / "flowers" / "1")
    with pytest.raises(ModelNotFound, match="no version 3"):
        cluttered.resolve("flowers", 3)
    with pytest.raises(ModelNotFound, match="'roses'"):
        cluttered.resolve("roses")
    with pytest.raises(ModelNotFound):
        cluttered.latest("empty")


# -- failures leave the store as it was -----------------------------------------------------


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_failed_publish_of_a_new_model_leaves_no_trace(tmp_path, monkeypatch):
    store = ModelStore(tmp_path)
    publish(store, "cats")
    before = tree(tmp_path)
    staging = store.staging_dir("dogs")
    (staging / "model.keras").write_text("x")
    monkeypatch.setattr(os, "rename", _no_space)
    with pytest.raises(PublishError, match="No space left") as caught:
        store.publish(staging, "dogs", {})
    assert "unchanged" in str(caught.value)
    assert not staging.exists()
    assert tree(tmp_path) == before
    assert store.names() == ["cats"]


def test_failed_publish_of_a_new_version_leaves_no_trace(tmp_path, monkeypatch):
    store = ModelStore(tmp_path)
    publish(store, "cats")
    before = tree(tmp_path)
    staging = store.staging_dir("cats")
    (staging / "model.keras").write_text("x")
    monkeypatch.setattr(os, "rename", _no_space)
    with pytest.raises(PublishError):
        store.publish(staging, "cats", {})
    assert tree(tmp_path) == before
    monkeypatch.undo()
    assert publish(store, "cats") == 2


# -- concurrency and a state machine --------------------------------------------------------


def test_concurrent_publishers_get_distinct_versions_and_readers_see_only_complete_ones(
    tmp_path,
):
    store = ModelStore(tmp_path)
    publishers, each = 6, 4
    start = threading.Barrier(publishers + 1)
    done = threading.Event()
    results: list[int] = []
    problems: list[str] = []

    def publisher(index: int) -> None:
        start.wait()
        for round_ in range(each):
            results.append(publish(store, "flowers", f"{index}-{round_}"))

    def reader() -> None:
        start.wait()
        while not done.is_set():
            for version in store.versions("flowers"):
                folder = tmp_path / "flowers" / str(version)
                try:
                    metadata = json.loads((folder / METADATA_FILE).read_text())
                except (OSError, ValueError) as exc:
                    problems.append(f"{version}: {exc}")
                    continue
                if metadata.get("version") != version or not (folder / "model.keras").is_file():
                    problems.append(f"{version}: incomplete {metadata}")

    threads = [threading.Thread(target=publisher, args=(i,)) for i in range(publishers)]
    watcher = threading.Thread(target=reader)
    for thread in [*threads, watcher]:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    done.set()
    watcher.join(timeout=60)

    assert problems == []
    assert sorted(results) == list(range(1, publishers * each + 1))
    assert store.versions("flowers") == sorted(results)
    payloads = {(tmp_path / "flowers" / str(v) / "model.keras").read_text() for v in results}
    assert len(payloads) == publishers * each  # no bundle replaced another


class StoreMachine(RuleBasedStateMachine):
    """Publishing, crashes mid-copy and clutter, in any order: what is listed is complete,
    numbers only grow, and the latest is the highest complete version."""

    def __init__(self):
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="ktl-store-"))
        self.store = ModelStore(self.root)
        self.published: dict[str, list[int]] = {}
        self.highest_seen: dict[str, int] = {}

    def teardown(self):
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)

    names = st.sampled_from(["a", "b-2"])

    @rule(name=names)
    def publish(self, name):
        version = publish(self.store, name)
        assert version > self.highest_seen.get(name, 0)
        self.highest_seen[name] = version
        self.published.setdefault(name, []).append(version)

    @rule(name=names, offset=st.integers(1, 3))
    def crash_leaves_an_incomplete_version(self, name, offset):
        folder = self.root / name / str(self.highest_seen.get(name, 0) + offset)
        folder.mkdir(parents=True)
        (folder / "model.keras").write_text("partial")
        self.highest_seen[name] = self.highest_seen.get(name, 0) + offset

    @rule(name=names)
    def abandoned_staging(self, name):
        (self.store.staging_dir(name) / "model.keras").write_text("abandoned")

    @precondition(lambda self: self.published)
    @rule(data=st.data())
    def failed_publish(self, data):
        name = data.draw(st.sampled_from(sorted(self.published)))
        before = tree(self.root / name)
        staging = self.store.staging_dir(name)
        original = os.rename
        os.rename = _no_space
        try:
            with pytest.raises(PublishError):
                self.store.publish(staging, name, {})
        finally:
            os.rename = original
        assert tree(self.root / name) == before

    @invariant()
    def listing_matches_what_was_published(self):
        assert self.store.names() == sorted(self.published)
        for name, versions in self.published.items():
            assert self.store.versions(name) == versions
            assert self.store.latest(name) == versions[-1]
            for version in versions:
                assert (self.root / name / str(version) / METADATA_FILE).is_file()


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(max_examples=25, stateful_step_count=12, deadline=None)
