"""No absolute path of the server in any response: the rewriting itself, then every
route of the OpenAPI document walked, for every key, over a bundle and a failed job
whose records are full of the store's and the dataset's paths."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from models.bundle import save_bundle
from models.ids import new_id
from models.jobqueue.jobs import JobQueue
from models.store import ModelStore
from service.guards.redaction import public_log, public_metadata, relative_text
from tests.support.tiny import tiny_metadata

KEYS = {"predict": "pr3dict", "report": "rep0rt", "train": "tr4in"}


def test_paths_under_the_dataset_become_relative_and_others_their_last_part():
    text = "bad /srv/data/flowers/cats/1.jpg, see /opt/ktl/training/data.py"
    shown = relative_text(text, ["/srv/data/flowers"])
    assert shown == "bad cats/1.jpg, see data.py"
    assert relative_text("http://host/a/b and cats/x.png", []) == "http://host/a/b and cats/x.png"


def test_an_uploaded_jobs_dataset_folder_is_left_out_though_its_root_is_not_given():
    """Reports of bundles trained over HTTP before they kept relative paths."""
    relative = "model_store/.queue/20261207-101010-abc/dataset/red/1.png"
    assert relative_text(relative, []) == "red/1.png"
    text = 'no "/srv/model_store/.queue/20261207-101010-abc/dataset/flowers/cats/2.png"'
    assert relative_text(text, ["/srv/other"]) == 'no "flowers/cats/2.png"'


def test_the_store_and_cache_are_left_out_of_the_metadata():
    shown = public_metadata(
        {
            "training": {"data": "/srv/d", "store": "/srv/store", "cache_dir": "/c", "lr": 0.1},
            "dataset": {"removed_near_copies": ["/srv/d/a/1.png"]},
        }  # fmt: skip
    )
    assert shown == {
        "training": {"data": "d", "lr": 0.1},
        "dataset": {"removed_near_copies": ["a/1.png"]},
    }


def test_the_capture_folder_of_add_reviewed_is_left_out_of_the_metadata():
    training = {"data": "/srv/d", "capture_dir": "/srv/capture", "add_reviewed": "flowers"}
    near = "/srv/capture/flowers/images/01J.png"  # a reviewed capture, a near-copy
    shown = public_metadata({"training": training, "dataset": {"removed_near_copies": [near]}})
    assert shown == {
        "training": {"data": "d", "add_reviewed": "flowers"},
        "dataset": {"removed_near_copies": ["flowers/images/01J.png"]},
    }


def test_the_source_lines_of_a_traceback_are_dropped():
    lines = [
        "Traceback (most recent call last):",
        '  File "/opt/ktl/x.py", line 3, in f',
        "    f()",
        "ValueError: /srv/d/a.png",
    ]
    assert public_log(lines, ["/srv/d"]) == [
        "Traceback (most recent call last):",
        "    f()",
        "ValueError: a.png",
    ]


@pytest.fixture
def leaky(tmp_path, store, tiny_model):
    """A bundle and a failed job whose records name absolute paths everywhere."""
    data = tmp_path / "datasets" / "flowers"
    training = {"data": str(data), "store": str(store), "cache_dir": str(tmp_path / "cache")}
    metadata = tiny_metadata().replace(
        training=training, dataset={"removed_near_copies": [str(data / "a" / "near.png")]}
    )
    worst = [{"thumbnail": "worst/00.png", "file": str(data / "a" / "1.png"), "true": "a"}]
    version, _ = save_bundle(
        ModelStore(store), tiny_model, metadata, {"worst.json": json.dumps(worst).encode()}
    )
    queue = JobQueue(store)
    job_id, folder = queue.reserve()
    queue.submit(
        job_id, options={"name": "tiny"}, data=folder / "dataset", source="upload", limit=9
    )
    queue.append_log(job_id, f'  File "{Path(json.__file__)}", line 1, in loads')
    queue.append_log(job_id, f"Error: cannot read {folder / 'dataset' / 'a' / 'x.png'}")
    queue.claim("local")
    queue.finish(job_id, "failed", error=f"{folder}/dataset/a/x.png is not an image ({store})")
    return version, job_id


def _urls(document: dict, values: dict[str, str]) -> list[tuple[str, str]]:
    found = []
    for path, operations in document["paths"].items():
        url = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
        found += [(method.upper(), url) for method in operations]
    return found


def test_no_route_answers_any_key_with_an_absolute_path(make_app, store, tmp_path, leaky):
    version, job_id = leaky
    app = make_app(
        model_store=store, api_keys=(KEYS["predict"],), report_keys=(KEYS["report"],),
        train_keys=(KEYS["train"],),
    )  # fmt: skip
    client = app.test_client()
    headers = {name: {"Authorization": f"Bearer {key}"} for name, key in KEYS.items()}
    document = client.get("/openapi.json", headers=headers["predict"]).json
    values = {"name": "tiny", "version": str(version), "label": "stable", "job_id": job_id,
              "file": "worst.json", "filename": "app.js", "identifier": new_id()}  # fmt: skip
    secret = str(tmp_path)
    seen = 0
    for method, url in _urls(document, values):
        if method == "DELETE":
            continue
        for header in [{}, *headers.values()]:
            response = client.open(url, method=method, headers=header, json={})
            body = response.get_data(as_text=True)
            response.close()  # a static file's response holds the file open
            assert secret not in body, (method, url, header, body[:300])
            seen += response.status_code == 200
    assert seen > 20
    shown = client.get(f"/v1/models/tiny/versions/{version}", headers=headers["predict"]).json
    assert shown["training"]["data"] == "flowers" and "store" not in shown["training"]
    worst = client.get(
        f"/v1/models/tiny/versions/{version}/reports/worst.json", headers=headers["report"]
    )
    assert worst.json[0]["file"] == "a/1.png"
    job = client.get(f"/v1/jobs/{job_id}", headers=headers["train"]).json
    assert job["error"].startswith("a/x.png is not an image") and len(job["log"]) == 1
