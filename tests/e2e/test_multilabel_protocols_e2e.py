"""A multi-label version served by a real gunicorn answers one batch identically
(diff 0) through the native route, TF Serving's and the Open Inference Protocol's,
the last driven by the stock ``tritonclient.http`` client at its defaults (binary
tensors both ways): the same probabilities to the bit, the same sets (issue 31); and so does ``ktl
predict`` given the same files."""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import requests

from models.bundle import load_bundle
from tests.support.cli import ktl_here
from tests.support.server import Gunicorn

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")

pytestmark = pytest.mark.slow


def test_native_tf_serving_and_tritonclient_answer_the_same_batch_identically(
    multilabel_store, tmp_path
):
    with open(multilabel_store.data, newline="") as f:
        rows = list(csv.DictReader(f))
    # images with none, one and several labels (the session's bundle is too briefly
    # trained to name them right: what is checked is that every route says the same)
    picked = [next(r for r in rows if r["labels"] == "")]
    picked += [next(r for r in rows if r["labels"] and ";" not in r["labels"])]
    picked += [r for r in rows if ";" in r["labels"]][:4]
    paths = [str(multilabel_store.data.parent / r["path"]) for r in picked]
    files = [Path(path).read_bytes() for path in paths]
    labels = load_bundle(multilabel_store.bundle).labels
    store = multilabel_store.copy_to(tmp_path / "store")
    with Gunicorn(store, log_path=tmp_path / "server.log") as server:
        native = requests.post(
            f"{server.base}/v1/models/shapes/predict",
            files=[("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(files)],
            timeout=60,
        )
        tfs = requests.post(
            f"{server.base}/v1/models/shapes:predict",
            json={"instances": [{"b64": base64.b64encode(data).decode()} for data in files]},
            timeout=60,
        )
        client = httpclient.InferenceServerClient(url=server.base.removeprefix("http://"))
        try:
            tensor = httpclient.InferInput("image_bytes", [len(files)], "BYTES")
            tensor.set_data_from_numpy(np.array(files, dtype=np.object_))
            result = client.infer("shapes", [tensor])
        finally:
            client.close()
    assert native.status_code == 200, native.text
    assert tfs.status_code == 200, tfs.text
    answers = native.json()["predictions"]
    native_rows = np.array(
        [[a["probabilities"][label] for label in labels] for a in answers], np.float32
    )
    sets = [a["decision"]["labels"] for a in answers]

    oip_rows = result.as_numpy("probabilities")
    assert oip_rows.dtype == np.float32 and oip_rows.shape == (len(files), len(labels))
    np.testing.assert_array_equal(oip_rows, native_rows)
    np.testing.assert_array_equal(np.array(tfs.json()["predictions"], np.float32), native_rows)
    assert [d.decode() for d in result.as_numpy("decision")] == [";".join(s) for s in sets]
    assert tfs.json()["decisions"] == sets

    done = ktl_here("predict", "--store", str(store), "--name", "shapes", "--json", *paths)
    assert done.returncode == 0, done.stderr
    predicted = json.loads(done.stdout)["predictions"]
    assert [p["decision"] for p in predicted] == [a["decision"] for a in answers]
    mine = np.array(
        [[p["probabilities"][label] for label in labels] for p in predicted], np.float32
    )
    np.testing.assert_array_equal(mine, native_rows)
