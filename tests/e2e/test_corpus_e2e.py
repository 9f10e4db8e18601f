"""The bad-input corpus (tests/corpus.py) against a live gunicorn, byte for byte as
the Flask test client got it, plus what only a real server sees (chunked bodies);
then the same worker still answers. And the corpus files through ``ktl predict``
and ``ktl train``: bad files skipped, counted and named, never a traceback."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest

from models.store import ModelStore
from tests import corpus
from tests.support.cli import ktl
from tests.support.server import Gunicorn
from tests.support.tiny import make_tiny_store

pytestmark = pytest.mark.slow

IMAGE_SUFFIXES = {".jpg", ".png", ".gif", ".tiff", ".webp", ".bmp"}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_tiny_store(tmp_path_factory.mktemp("corpus") / "store")


def send(base_port: int, method: str, path: str, body, headers: dict, **options):
    connection = http.client.HTTPConnection("127.0.0.1", base_port, timeout=60)
    try:
        try:
            connection.request(method, path, body=body, headers=headers, **options)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (413) before reading the whole body
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


def test_the_corpus_against_gunicorn_then_it_still_serves(store, tmp_path):
    with Gunicorn(store, threads=4, env=corpus.ENV, log_path=tmp_path / "server.log") as server:
        workers = server.workers()
        assert len(workers) == 1
        wrong = []
        for case in corpus.http_cases():
            status, content_type, body = send(
                server.port, case.method, case.path, case.body or None, dict(case.headers)
            )
            try:
                corpus.check_response(case, status, content_type, body)
            except AssertionError as exc:
                wrong.append(str(exc)[:300])
        assert not wrong, "\n".join(wrong)

        # A chunked body has no Content-Length; the limit still holds while reading it.
        chunks = (b"\0" * 65536 for _ in range(40))  # 2.5 MB
        status, _, body = send(
            server.port, "POST", "/v1/models/tiny/predict", chunks,
            {"Content-Type": "image/png"}, encode_chunked=True,
        )  # fmt: skip
        assert status == 413, body[:300]
        assert json.loads(body)["code"] == "payload_too_large"

        status, _, body = send(server.port, "GET", "/healthz", None, {})
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        png = corpus.image_files()[0].data
        status, _, body = send(
            server.port, "POST", "/v1/models/tiny/predict", png, {"Content-Type": "image/png"}
        )
        assert status == 200 and len(json.loads(body)["predictions"]) == 1
        assert server.workers() == workers, "a worker died or was replaced during the corpus"
        assert "Traceback" not in server.log(), server.log()[-3000:]


def write_corpus(folder: Path, files) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for file in files:
        path = folder / file.filename
        path.write_bytes(file.data)
        paths.append(path)
    return paths


def test_ktl_predict_skips_and_counts_every_bad_file(store, tmp_path):
    files = corpus.image_files()
    paths = write_corpus(tmp_path / "images", files)
    result = ktl("predict", *map(str, paths), "--name", "tiny", "--store", str(store), "--json")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    body = json.loads(result.stdout)
    assert [p["filename"] for p in body["predictions"]] == [f.filename for f in files if f.valid]
    bad = [f for f in files if not f.valid]
    for file in bad:
        assert f"skipped {tmp_path / 'images' / file.filename}:" in result.stderr, file.filename
    assert f"{len(bad)} of {len(files)} files could not be classified" in result.stderr


def test_ktl_train_skips_names_and_counts_bad_files_and_publishes(tmp_path):
    files = corpus.image_files()
    data = tmp_path / "data"
    good = [f for f in files if f.valid]
    write_corpus(data / "odd", good[0::2])
    write_corpus(data / "even", good[1::2])
    bad = [f for f in files if not f.valid]
    write_corpus(data / "odd", bad)
    store = tmp_path / "store"
    result = ktl(
        "train", str(data), "--name", "corpus", "--store", str(store), "--backbone", "smallcnn",
        "--weights", "none", "--image-size", "16", "--epochs", "1", "--batch-size", "8", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    summary = json.loads(result.stdout)
    images = [f for f in bad if Path(f.filename).suffix in IMAGE_SUFFIXES]
    others = [f for f in bad if f not in images]  # .svg: not an image suffix, so ignored
    assert others, "the corpus has a non-image suffix"
    assert summary["dataset"]["skipped"] == len(images)
    assert sorted(Path(s["path"]).name for s in summary["dataset"]["skipped_files"]) == sorted(
        f.filename for f in images
    )
    assert all(s["reason"] for s in summary["dataset"]["skipped_files"])
    assert summary["dataset"]["ignored_files"] == len(others)
    # The corpus holds the same picture in several encodings: near-copies of a training
    # image leave validation (and are named), every other good file is learnt from.
    dataset = summary["dataset"]
    removed = dataset.get("removed_near_copies", [])
    assert dataset["train_images"] + dataset["val_images"] + len(removed) == len(good)
    assert {Path(path).name for path in removed} <= {f.filename for f in good}
    assert summary["version"] == 1 and ModelStore(store).versions("corpus") == [1]
