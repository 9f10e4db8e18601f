"""A model store in object storage, against a real S3 server (moto's, on 127.0.0.1):
versions appear only with their marker, downloads are verified before they are used,
label changes are conditional writes that lose no change, and polling reads a label
object's body only when its ETag changed."""

from __future__ import annotations

import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from models.metadata import METADATA_FILE, BundleError
from models.store import ModelNotFound, UnsupportedStore, open_store
from models.store.layout import MARKER_FILE
from models.store.location import check_location
from models.store.releases import rollback, set_label
from models.store.remote import RemoteModelStore
from tests.support.cli import ktl, ktl_here
from tests.support.s3 import S3Server, s3_server
from tests.support.tiny import make_tiny_store

NAME = "tiny"


@pytest.fixture(scope="module")
def s3() -> S3Server:
    with s3_server() as server, pytest.MonkeyPatch.context() as patch:
        for key, value in server.env.items():
            patch.setenv(key, value)
        yield server


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A published version folder (the tiny untrained model) to publish again."""
    return make_tiny_store(tmp_path_factory.mktemp("local") / "store", NAME) / NAME / "1"


@pytest.fixture
def store(s3, tmp_path) -> RemoteModelStore:
    opened = open_store(s3.bucket(), tmp_path / "cache")
    assert isinstance(opened, RemoteModelStore)
    return opened


def publish(store: RemoteModelStore, bundle: Path, name: str = NAME) -> int:
    """``bundle`` (a published version folder) published again as the next version."""
    staging = store.staging_dir(name)
    shutil.copytree(bundle, staging, dirs_exist_ok=True)
    metadata = json.loads((bundle / METADATA_FILE).read_text())
    return store.publish(staging, name, {k: v for k, v in metadata.items() if k != "version"})


def test_s3_is_served_and_other_schemes_say_why():
    assert check_location("s3://bucket/models") == "s3://bucket/models"
    with pytest.raises(UnsupportedStore, match="gcsfs"):
        check_location("gs://bucket/models")


def test_a_published_version_is_listed_and_its_metadata_read(store, bundle):
    assert store.versions(NAME) == []
    assert publish(store, bundle) == 1
    assert publish(store, bundle) == 2
    assert store.names() == [NAME]
    assert store.versions(NAME) == [1, 2]
    assert store.read_metadata(NAME, 2).version == 2
    assert store.resolve(NAME)[0] == 2


def test_a_version_without_its_marker_is_not_seen(store, bundle):
    publish(store, bundle)
    publish(store, bundle)
    store.fs.rm(f"{store.url}/{NAME}/2/{MARKER_FILE}")  # as if the upload stopped there
    assert store.versions(NAME) == [1]
    assert publish(store, bundle) == 3  # its number is never reused


def test_concurrent_publishers_get_distinct_numbers(store, bundle):
    numbers: list[int] = []
    threads = [
        threading.Thread(target=lambda: numbers.append(publish(store, bundle))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(numbers) == [1, 2, 3]
    assert store.versions(NAME) == [1, 2, 3]


def test_a_download_is_verified_and_cached(store, bundle):
    publish(store, bundle)
    copy = store.local_copy(NAME, 1)
    assert (copy / METADATA_FILE).is_file() and copy.is_relative_to(store.root)
    for relative in store.read_metadata(NAME, 1).files:
        assert (copy / relative).read_bytes() == (bundle / relative).read_bytes()
    store.fs.rm(f"{store.url}/{NAME}/1/{METADATA_FILE}")
    assert store.local_copy(NAME, 1) == copy  # versions never change: the copy is reused


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_damaged_object_is_refused_and_nothing_is_cached(store, bundle, damage):
    publish(store, bundle)
    key = f"{store.url}/{NAME}/1/model.keras"
    data = store.fs.cat_file(key)
    store.fs.pipe_file(key, data[: len(data) // 2] if damage == "truncated" else data[::-1])
    with pytest.raises(BundleError, match="does not match its sha256"):
        store.local_copy(NAME, 1)
    assert not store.version_dir(NAME, 1).exists()
    assert [p.name for p in store.root.iterdir()] == [".staging"]  # no partial download


def test_a_metadata_naming_a_file_outside_its_version_downloads_nothing(store, bundle):
    publish(store, bundle)
    key = f"{store.url}/{NAME}/1/{METADATA_FILE}"
    metadata = json.loads(store.fs.cat_file(key))
    metadata["files"] = {"../../escaped.txt": "0" * 64, **metadata["files"]}
    store.fs.pipe_file(key, json.dumps(metadata).encode())
    with pytest.raises(BundleError, match="outside its version"):
        store.local_copy(NAME, 1)
    assert not list(store.root.parent.rglob("escaped.txt"))


def test_two_writers_lose_no_label_change(store, bundle):
    publish(store, bundle)
    publish(store, bundle)
    labels = [f"w{writer}-{i}" for writer in range(2) for i in range(6)]

    def write(mine: list[str]) -> None:
        other = open_store(store.url, store.root.parent)  # a second process's client
        for label in mine:
            set_label(other, NAME, label, 1 + len(label) % 2)

    threads = [threading.Thread(target=write, args=(labels[w * 6 : w * 6 + 6],)) for w in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = store.labels(NAME)
    assert sorted(final.labels) == sorted(labels)
    assert len(final.history) == len(labels)


def test_labels_are_read_again_only_when_their_etag_changed(store, bundle, monkeypatch):
    publish(store, bundle)
    set_label(store, NAME, "stable", 1)
    reads: list[str] = []
    cat_file = store.fs.cat_file
    monkeypatch.setattr(store.fs, "cat_file", lambda key: reads.append(key) or cat_file(key))
    for _ in range(5):
        assert store.labels(NAME).version_of("stable") == 1
    assert len(reads) <= 1
    publish(store, bundle)
    set_label(open_store(store.url, store.root.parent), NAME, "stable", 2)
    assert store.labels(NAME).version_of("stable") == 2


def test_rollback_and_delete_work_in_a_bucket(store, bundle):
    for _ in range(3):
        publish(store, bundle)
    set_label(store, NAME, "stable", 1)
    set_label(store, NAME, "stable", 2)
    assert rollback(store, NAME).version_of("stable") == 1
    store.remove_version(NAME, 3)
    assert store.versions(NAME) == [1, 2]
    with pytest.raises(ModelNotFound, match="no version 3"):
        store.resolve(NAME, 3)


def test_the_commands_read_and_write_a_bucket(store, bundle, tmp_path, monkeypatch):
    publish(store, bundle)
    publish(store, bundle)
    monkeypatch.setenv("KTL_CACHE_DIR", str(tmp_path / "cli-cache"))
    labelled = ktl_here("label", NAME, "stable", "1", "--store", store.url)
    assert labelled.returncode == 0, labelled
    listed = ktl_here("versions", NAME, "--store", store.url, "--json")
    assert listed.returncode == 0, listed
    assert [row["version"] for row in json.loads(listed.stdout)["versions"]] == [2, 1]
    assert store.labels(NAME).version_of("stable") == 1
    models = ktl_here("models", "--store", store.url, "--json")
    assert models.returncode == 0, models
    assert [(m["name"], m["default_version"]) for m in json.loads(models.stdout)] == [(NAME, 1)]
    missing = ktl_here("versions", "nothing", "--store", store.url)
    assert missing.returncode == 2 and "nothing" in missing.stderr


def test_a_version_loads_from_the_bucket_through_the_cache(store, bundle):
    from cli.common import load_reference

    publish(store, bundle)
    loaded = load_reference(f"{NAME}:1", store)
    assert (loaded.name, loaded.version) == (NAME, 1)
    assert loaded.path == store.version_dir(NAME, 1) and loaded.path.is_relative_to(store.root)


def test_the_service_keeps_serving_while_the_bucket_cannot_be_read(store, monkeypatch):
    from service.serving.registry import ModelRegistry

    def unreachable(pattern: str) -> list[str]:
        raise OSError("connection refused")

    monkeypatch.setattr(store.fs, "glob", unreachable)
    registry = ModelRegistry(store, load_predictor=lambda path: pytest.fail("nothing to load"))
    assert registry.reload().models == {}  # logged, not raised: the worker starts


@pytest.mark.slow
def test_concurrent_ktl_label_processes_lose_no_change(store, bundle, s3, tmp_path):
    publish(store, bundle)
    labels = [f"writer{i}" for i in range(4)]
    env = {**s3.env, "KTL_CACHE_DIR": str(tmp_path / "cli-cache")}
    with ThreadPoolExecutor(len(labels)) as pool:
        runs = list(
            pool.map(
                lambda label: ktl("label", NAME, label, "1", "--store", store.url, env=env), labels
            )
        )
    assert [run.returncode for run in runs] == [0] * len(labels), [run.stderr for run in runs]
    assert sorted(store.labels(NAME).labels) == labels
