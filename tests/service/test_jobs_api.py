"""The training-job routes on Flask's test client: switches and keys, uploads and
their limits, the JSON form under KTL_DATA_ROOT, reads, cancel and event streams.
The runner is not started here (tests/e2e/test_jobs_e2e.py runs it for real)."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.jobqueue.jobs import JobQueue
from tests.support.apps import shared_app
from tests.support.archives import hostile_corpus, zip_folder
from tests.support.data import make_colour_dataset

TRAIN_KEY = "tr4in-key"
CORPUS_NAMES = (
    "zip-slip", "nested zip-slip", "absolute path (zip)", "absolute path (tar)",
    "symlink (tar)", "symlink (zip)", "hard link (tar)", "device (tar)", "1 GB zip bomb",
    "100,000 files", "truncated zip", "not an archive (jpeg)", "empty body",
    "pax header of 150,000 digits", "sparse member (tar)", "path over 1,024 bytes",
    "empty zip", "only macOS junk", "gzip of zeros",
)  # fmt: skip
DEEP = "[" * 50_000 + "]" * 50_000


@pytest.fixture(scope="module")
def dataset_zip(tmp_path_factory) -> bytes:
    return zip_folder(make_colour_dataset(tmp_path_factory.mktemp("colours"), per_class=3))


@pytest.fixture
def open_app(make_app, store):
    return make_app(model_store=store, training="open")


def multipart(archive: bytes, options: str, boundary: str = "b0undary") -> bytes:
    """A multipart body of the fields options and dataset, encoded here: the test client
    would spool a large one to a temporary file it does not always close."""
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="options"\r\n\r\n'
        f"{options}\r\n--{boundary}\r\nContent-Disposition: form-data; "
        f'name="dataset"; filename="data.zip"\r\n\r\n'
    )
    return head.encode() + archive + f"\r\n--{boundary}--\r\n".encode()


def _post(client, archive: bytes, options: dict | str, **headers):
    text = options if isinstance(options, str) else json.dumps(options)
    return client.post(
        "/v1/jobs",
        input_stream=io.BytesIO(multipart(archive, text)),
        content_type="multipart/form-data; boundary=b0undary",
        headers=headers,
    )


def _leftovers(store: Path) -> list[str]:
    """What the queue holds besides its lock files."""
    root = store / ".queue"
    if not root.exists():
        return []
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))


def test_training_is_off_by_default_and_says_how_to_enable_it(make_app, store):
    client = make_app(model_store=store).test_client()
    for response in (client.get("/v1/jobs"), client.post("/v1/jobs", json={})):
        assert response.status_code == 403
        assert response.json["code"] == "training_disabled"
        assert "KTL_TRAIN_KEYS" in response.json["error"]
        assert "KTL_TRAINING=open" in response.json["error"]


def test_training_keys_are_their_own(make_app, store, dataset_zip):
    client = make_app(model_store=store, api_keys=("pr3dict",), train_keys=(TRAIN_KEY,))
    client = client.test_client()
    assert client.get("/v1/jobs").status_code == 401
    predict_key = {"Authorization": "Bearer pr3dict"}
    assert client.get("/v1/jobs", headers=predict_key).status_code == 401
    train_key = {"Authorization": f"Bearer {TRAIN_KEY}"}
    assert client.get("/v1/jobs", headers=train_key).status_code == 200
    # and a training key does not predict
    assert client.get("/v1/models", headers=train_key).status_code == 401
    response = _post(client, dataset_zip, {"name": "colours"}, **train_key)
    assert response.status_code == 202, response.json


def test_an_upload_is_queued_with_its_dataset_unpacked(open_app, store, dataset_zip):
    client = open_app.test_client()
    response = _post(client, dataset_zip, {"name": "colours", "epochs": 2})
    assert response.status_code == 202, response.json
    body = response.json
    assert body["state"] == "queued" and body["name"] == "colours"
    assert response.headers["Location"] == f"/v1/jobs/{body['id']}"
    assert body["links"]["events"] == f"/v1/jobs/{body['id']}/events"
    job = JobQueue(store).get(body["id"])
    assert job.options == {"name": "colours", "epochs": 2} and job.source == "upload"
    assert sorted(p.name for p in Path(job.data).iterdir()) == ["blue", "green", "red"]
    assert "data" not in body  # no server path in the answer
    listed = client.get("/v1/jobs").json["jobs"]
    assert [item["id"] for item in listed] == [body["id"]]


def test_a_wrapping_folder_in_the_archive_is_looked_through(open_app, store, tmp_path):
    archive = zip_folder(make_colour_dataset(tmp_path / "c", per_class=2), prefix="mydata/")
    response = _post(open_app.test_client(), archive, {"name": "colours"})
    assert response.status_code == 202
    job = JobQueue(store).get(response.json["id"])
    assert Path(job.data).name == "mydata"


def test_a_train_val_test_archive_is_kept_split(open_app, store, tmp_path):
    """What the train page sends for a train/val(/test) folder: the job reads its splits."""
    for split in ("train", "val", "test"):
        make_colour_dataset(tmp_path / "split" / split, per_class=2)
    response = _post(open_app.test_client(), zip_folder(tmp_path / "split"), {"name": "colours"})
    assert response.status_code == 202, response.json
    data = Path(JobQueue(store).get(response.json["id"]).data)
    assert sorted(p.name for p in data.iterdir()) == ["test", "train", "val"]
    assert sorted(p.name for p in (data / "val").iterdir()) == ["blue", "green", "red"]


@pytest.mark.parametrize(("prefix", "where"), [("", "at its top level"), ("pics/", "“pics/”")])
def test_loose_images_are_refused_in_the_archives_own_terms(
    open_app, store, tmp_path, prefix, where
):
    loose = tmp_path / "loose"
    for path in make_colour_dataset(tmp_path / "c", per_class=4).rglob("*.png"):
        loose.mkdir(exist_ok=True)
        path.rename(loose / path.name)
    response = _post(open_app.test_client(), zip_folder(loose, prefix=prefix), {"name": "x"})
    assert response.status_code == 400 and response.json["code"] == "empty_dataset"
    message = response.json["error"]
    assert "12 images" in message and where in message and "no class folders" in message
    assert ".queue" not in message and "dataset" not in message and str(store) not in message
    assert _leftovers(store) == []


@pytest.mark.parametrize(
    ("options", "status", "code"),
    [
        ({"name": "x", "store": "/tmp"}, 400, "invalid_options"),
        ({"epochs": 2}, 400, "invalid_options"),
        ("{not json", 400, "bad_request"),
        (DEEP, 400, "bad_request"),
        ('{"name": "x", "lr": Infinity}', 400, "invalid_options"),
        ({"name": "x", "lr": 1e300}, 400, "invalid_options"),
        ({"name": "Not Valid!"}, 400, "invalid_options"),
    ],
)
def test_bad_options_leave_nothing_behind(open_app, store, dataset_zip, options, status, code):
    response = _post(open_app.test_client(), dataset_zip, options)
    assert response.status_code == status
    assert response.json["code"] == code, response.json
    assert _leftovers(store) == []


def test_hostile_archive_gets_a_json_4xx_and_leaves_nothing(open_app, store):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../evil.txt", b"x")
    response = _post(open_app.test_client(), buffer.getvalue(), {"name": "x"})
    assert response.status_code == 400 and response.json["error"]
    assert _leftovers(store) == []
    assert not (store.parent / "evil.txt").exists()


@pytest.fixture(scope="module")
def corpus() -> dict[str, bytes]:
    return hostile_corpus()


@pytest.fixture(scope="module")
def refusing(tmp_path_factory, tiny_store) -> Iterator[tuple]:
    """One open app and its store (alone in its folder) for the refusals below: each
    must leave the store as it found it, so they can share them: (client, store)."""
    store = tmp_path_factory.mktemp("refusals") / "store"
    shutil.copytree(tiny_store, store)
    with shared_app(model_store=store, training="open") as app:
        yield app.test_client(), store


@pytest.mark.parametrize("name", list(CORPUS_NAMES))
def test_each_hostile_archive_is_a_json_4xx_and_leaves_nothing(refusing, corpus, name):
    client, store = refusing
    outside = sorted(p.name for p in store.parent.iterdir())
    response = _post(client, corpus[name], {"name": "x"})
    assert 400 <= response.status_code < 500, (name, response.status_code)
    assert response.is_json and response.json["error"] and response.json["code"], name
    assert _leftovers(store) == [], name
    assert sorted(p.name for p in store.parent.iterdir()) == outside, name
    assert not list(store.rglob("evil.txt")) and not list(store.parent.rglob("evil.txt"))


def test_the_dataset_has_its_own_limit_above_the_upload_limit(make_app, store, dataset_zip):
    assert len(dataset_zip) > 10_000
    client = make_app(model_store=store, training="open", max_upload_mb=0.005).test_client()
    assert _post(client, dataset_zip, {"name": "colours"}).status_code == 202
    small = make_app(model_store=store, training="open", max_dataset_mb=0.005).test_client()
    response = _post(small, dataset_zip, {"name": "colours"})
    assert response.status_code == 413 and response.json["code"] == "payload_too_large"


def test_a_chunked_dataset_is_cut_at_its_limit_with_a_413(make_app, store, dataset_zip):
    client = make_app(model_store=store, training="open", max_dataset_mb=0.005).test_client()
    body = multipart(dataset_zip, '{"name": "x"}')
    response = client.post(
        "/v1/jobs",
        input_stream=io.BytesIO(body),
        content_type="multipart/form-data; boundary=b0undary",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413, response.get_data(as_text=True)
    assert _leftovers(store) == []


def test_a_missing_field_or_media_type(open_app):
    client = open_app.test_client()
    response = client.post("/v1/jobs", data={"options": "{}"}, content_type="multipart/form-data")
    assert response.status_code == 400 and "dataset" in response.json["error"]
    response = client.post("/v1/jobs", data=b"x", content_type="text/plain")
    assert response.status_code == 415


def test_a_full_queue_is_503_with_retry_after(make_app, store, dataset_zip):
    client = make_app(model_store=store, training="open", job_queue_size=1).test_client()
    assert _post(client, dataset_zip, {"name": "one"}).status_code == 202
    response = _post(client, dataset_zip, {"name": "two"})
    assert response.status_code == 503 and response.json["code"] == "queue_full"
    assert int(response.headers["Retry-After"]) >= 1
    assert len(_leftovers(store)) == 1


def test_a_folder_under_the_data_root(make_app, store, tmp_path):
    root = tmp_path / "datasets"
    make_colour_dataset(root / "colours", per_class=2)
    (tmp_path / "secret").mkdir()
    client = make_app(model_store=store, training="open", data_root=root).test_client()
    response = client.post("/v1/jobs", json={"data": "colours", "options": {"name": "c"}})
    assert response.status_code == 202, response.json
    assert JobQueue(store).get(response.json["id"]).data == str((root / "colours").resolve())
    for outside in ("../secret", str(tmp_path / "secret"), ".", "missing"):
        response = client.post("/v1/jobs", json={"data": outside, "options": {"name": "c"}})
        assert response.status_code == 400, outside
        assert response.json["code"] == "invalid_data"


def test_json_jobs_need_a_data_root(open_app):
    response = open_app.test_client().post(
        "/v1/jobs", json={"data": "colours", "options": {"name": "c"}}
    )
    assert response.status_code == 400 and "KTL_DATA_ROOT" in response.json["error"]


def test_read_and_cancel_a_job(open_app, store, dataset_zip):
    client = open_app.test_client()
    job_id = _post(client, dataset_zip, {"name": "colours"}).json["id"]
    JobQueue(store).append_log(job_id, "Decoding 9 images")
    detail = client.get(f"/v1/jobs/{job_id}").json
    assert detail["state"] == "queued" and detail["log"] == ["Decoding 9 images"]
    response = client.delete(f"/v1/jobs/{job_id}")
    assert response.status_code == 200 and response.json["state"] == "cancelled"
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 409
    assert client.get("/v1/jobs/20990101-000000-abcdef").status_code == 404
    assert client.delete("/v1/jobs/nope").status_code == 404


def test_cancelling_a_running_job_is_202_until_the_runner_stops_it(open_app, store, dataset_zip):
    client = open_app.test_client()
    job_id = _post(client, dataset_zip, {"name": "colours"}).json["id"]
    JobQueue(store).claim("local")
    response = client.delete(f"/v1/jobs/{job_id}")
    assert response.status_code == 202
    assert response.json["state"] == "running" and response.json["cancel_requested"]


def _events(text: str) -> list[tuple[str | None, str, dict]]:
    """(id, event, data) of each event of a stream's text."""
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields.get("id"), fields["event"], json.loads(fields["data"])))
    return events


def _finished_job(store: Path, dataset_zip: bytes, client) -> str:
    job_id = _post(client, dataset_zip, {"name": "colours"}).json["id"]
    queue = JobQueue(store)
    queue.claim("local")
    rows = [{"phase": "head", "epoch": n, "loss": 1.0 / n} for n in (1, 2, 3)]
    queue.update(job_id, phase="head", epoch=3, epochs=rows)
    queue.finish(job_id, "succeeded", version=2)
    return job_id


def test_the_events_of_a_finished_job_then_the_stream_ends(open_app, store, dataset_zip):
    client = open_app.test_client()
    job_id = _finished_job(store, dataset_zip, client)
    response = client.get(f"/v1/jobs/{job_id}/events")
    assert response.mimetype == "text/event-stream"
    events = _events(response.get_data(as_text=True))
    assert [(event_id, kind) for event_id, kind, _ in events] == [
        ("1", "epoch"), ("2", "epoch"), ("3", "epoch"), ("3", "state"),
    ]  # fmt: skip
    assert events[1][2] == {"phase": "head", "epoch": 2, "loss": 0.5}
    state = events[-1][2]
    assert state["state"] == "succeeded" and state["version"] == 2
    assert state["links"]["report"] == "/models/colours/versions/2/report"
    # a reconnect carries on after the last id it saw
    again = client.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "2"})
    assert [kind for _, kind, _ in _events(again.get_data(as_text=True))] == ["epoch", "state"]


def test_open_streams_are_bounded_per_worker(make_app, store, dataset_zip):
    app = make_app(model_store=store, training="open", threads=4, max_event_streams=8)
    client = app.test_client()
    job_id = _post(client, dataset_zip, {"name": "colours"}).json["id"]  # stays queued
    opened = [client.get(f"/v1/jobs/{job_id}/events", buffered=False) for _ in range(2)]
    assert all(response.status_code == 200 for response in opened)
    refused = client.get(f"/v1/jobs/{job_id}/events")
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
    assert "KTL_MAX_EVENT_STREAMS" in refused.json["error"]
    assert client.get("/v1/models").status_code == 200  # other routes still answer
    opened[0].close()
    replacement = client.get(f"/v1/jobs/{job_id}/events", buffered=False)
    assert replacement.status_code == 200
    for response in (opened[1], replacement):
        response.close()


def test_the_routes_are_in_the_openapi_document(open_app):
    document = open_app.test_client().get("/openapi.json").json
    paths = document["paths"]
    assert set(paths["/v1/jobs"]) == {"get", "post"}
    assert set(paths["/v1/jobs/{job_id}"]) == {"get", "delete"}
    assert (
        "text/event-stream"
        in paths["/v1/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]
    )
    assert {"trainBearer": []} in paths["/v1/jobs"]["post"]["security"]


def test_the_corpus_names_are_the_corpus(corpus):
    assert tuple(corpus) == CORPUS_NAMES


@pytest.fixture
def rooted(make_app, store, tmp_path):
    """An open app of its own whose data root holds ``colours``."""
    root = tmp_path / "datasets"
    make_colour_dataset(root / "colours", per_class=2)
    return make_app(model_store=store, training="open", data_root=root).test_client()


@pytest.fixture(scope="module")
def rooted_once(tmp_path_factory, tiny_store) -> Iterator[tuple]:
    """An open app whose data root holds ``colours``, once for the malformed JSON jobs,
    which each leave its store as they found it: (client, store)."""
    work = tmp_path_factory.mktemp("rooted")
    shutil.copytree(tiny_store, work / "store")
    make_colour_dataset(work / "datasets" / "colours", per_class=2)
    settings = {"training": "open", "data_root": work / "datasets"}
    with shared_app(model_store=work / "store", **settings) as app:
        yield app.test_client(), work / "store"


BAD_JOBS = {
    "empty object": b"{}",
    "no data": b'{"options": {"name": "c"}}',
    "no options": b'{"data": "colours"}',
    **{
        f"data {value}": b'{"data": %s, "options": {"name": "c"}}' % value.encode()
        for value in ("5", "[]", "{}", "null", "true", '""')
    },
    "options a list": b'{"data": "colours", "options": [1]}',
    "a list": b"[1, 2]",
    "a string": b'"colours"',
    "NUL in data": b'{"data": "col\\u0000ours", "options": {"name": "c"}}',
    "a part over 255 bytes": b'{"data": "%s", "options": {"name": "c"}}' % (b"a" * 300),
    "a path over PATH_MAX": b'{"data": "%s", "options": {"name": "c"}}' % (b"a/" * 3000),
    "nested 50,000 deep": DEEP.encode(),
    "options nested 50,000 deep": b'{"data": "colours", "options": %s}' % DEEP.encode(),
    "lr Infinity": b'{"data": "colours", "options": {"name": "c", "lr": Infinity}}',
    "lr NaN": b'{"data": "colours", "options": {"name": "c", "lr": NaN}}',
    "lr 1e300": b'{"data": "colours", "options": {"name": "c", "lr": 1e300}}',
}


@pytest.mark.parametrize("name", list(BAD_JOBS))
def test_each_malformed_json_job_is_a_json_400_and_leaves_no_folder(rooted_once, name):
    rooted, store = rooted_once
    response = rooted.post("/v1/jobs", data=BAD_JOBS[name], content_type="application/json")
    assert response.status_code == 400, (name, response.json)
    assert response.json["error"] and response.json["code"], name
    assert not (store / ".queue").exists() or _leftovers(store) == [], name


def test_a_json_job_is_bounded_by_the_upload_limit_not_the_dataset_limit(make_app, store):
    client = make_app(model_store=store, training="open", max_upload_mb=1).test_client()
    body = b'{"data": "' + b"a" * (2 * 2**20) + b'", "options": {}}'
    response = client.post("/v1/jobs", data=body, content_type="application/json")
    assert response.status_code == 413 and "KTL_MAX_UPLOAD_MB" in response.json["error"]


def test_the_413_of_a_form_names_the_limit_that_fired(open_app, dataset_zip):
    client = open_app.test_client()
    parts = "".join(
        f'--b0undary\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nx\r\n'
        for i in range(1001)
    )
    response = client.post(
        "/v1/jobs",
        data=parts.encode() + multipart(dataset_zip, "{}"),
        content_type="multipart/form-data; boundary=b0undary",
    )
    assert response.status_code == 413 and "1,000 parts" in response.json["error"]
    response = _post(client, dataset_zip, '{"name": "' + "x" * 600_000 + '"}')
    assert response.status_code == 413 and "500,000 bytes" in response.json["error"]
    assert "KTL_MAX_UPLOAD_MB" not in response.json["error"]
