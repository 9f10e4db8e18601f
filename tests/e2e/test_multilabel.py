"""A multi-label version end to end (issue 31), on the session's one trained bundle
(``multilabel_store``): what it publishes, ``ktl evaluate`` agreeing with it, the
native answer, TF Serving's and the Open Inference Protocol's over HTTP and ``ktl
predict`` giving the same set."""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from models.bundle import load_bundle
from models.decision import chosen
from models.engines.int8 import int8_agreement
from models.store import ModelStore
from tests.support.apps import shared_app
from tests.support.cli import ktl_here

pytestmark = pytest.mark.slow


def _images(trained, n: int = 6) -> list[str]:
    with open(trained.data, newline="") as f:
        rows = list(csv.DictReader(f))
    return [str(trained.data.parent / row["path"]) for row in rows[:n]]


def test_the_int8_gate_counts_label_decisions(multilabel_store):
    meta = load_bundle(multilabel_store.bundle).metadata
    agreement = meta.engines["int8"].agreement
    assert set(agreement) == {"validation", "test"}
    shares = [split.decision_agreement for split in agreement.values()]
    assert all(0 <= share <= 1 for share in shares)
    assert int8_agreement(meta) == min(shares)  # not the top label's agreement
    image = _images(multilabel_store, 1)
    args = ("predict", "--store", str(multilabel_store.store), "--name", "shapes", "--json")
    done = ktl_here(*args, "--engine", "int8", *image)
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)["predictions"][0]["decision"]) == {"labels", "thresholds"}


def test_the_bundle_records_its_task_thresholds_and_figures(multilabel_store):
    bundle = load_bundle(multilabel_store.bundle)
    meta = bundle.metadata
    assert meta.task == "multilabel" and bundle.labels == ["circle", "square", "triangle"]
    assert meta.multilabel is not None and meta.decision is None
    assert all(0 < d.threshold < 1 and d.temperature > 0 for d in meta.multilabel.labels.values())
    test = meta.multilabel.evaluation["test"]
    assert set(test.per_label) == set(bundle.labels)
    assert 0 <= test.hamming_loss <= 1 and 0 <= test.map <= 1
    assert meta.metrics.split == "test"
    # independent sigmoid outputs: rows need not sum to 1, each in [0, 1]
    rows = bundle.classifier.predict(np.zeros((2, *bundle.image_size, 3), np.uint8))
    assert rows.shape == (2, 3) and ((rows >= 0) & (rows <= 1)).all()


def test_evaluate_on_the_test_split_agrees_with_the_published_figures(multilabel_store):
    store, data = str(multilabel_store.store), str(multilabel_store.data)
    args = ("evaluate", "--store", store, "shapes", data, "--split", "test")
    done = ktl_here(*args, "--json")
    assert done.returncode == 0, done.stderr
    scored = json.loads(done.stdout)["figures"]
    published = load_bundle(multilabel_store.bundle).metadata.multilabel.evaluation["test"]
    for key in ("micro_f1", "macro_f1", "map", "exact_match", "hamming_loss"):
        assert scored[key] == pytest.approx(getattr(published, key), abs=1e-5), key
    text = ktl_here(*args)
    assert "mAP" in text.stdout and "triangle" in text.stdout


def test_native_http_and_ktl_predict_give_the_same_sets(multilabel_store):
    images = _images(multilabel_store)
    bundle = load_bundle(multilabel_store.bundle)
    thresholds = bundle.metadata.multilabel.thresholds(bundle.labels)
    files = [Path(path).read_bytes() for path in images]
    with shared_app(model_store=str(multilabel_store.store)) as app:
        client = app.test_client()
        answers = []
        for data in files:
            reply = client.post(
                "/v1/models/shapes/predict?top_k=10", data=data, content_type="image/png"
            )
            assert reply.status_code == 200, reply.json  # top_k above the label count
            answers.append(reply.json["predictions"][0])
        encoded = [base64.b64encode(data).decode() for data in files]
        tfs = client.post(
            "/v1/models/shapes:predict", json={"instances": [{"b64": e} for e in encoded]}
        )
        oip = client.post(
            "/v2/models/shapes/infer",
            json={
                "inputs": [
                    {
                        "name": "image_bytes",
                        "shape": [len(files)],
                        "datatype": "BYTES",
                        "data": encoded,
                    }
                ]
            },
        )
    sets = [answer["decision"]["labels"] for answer in answers]
    assert tfs.status_code == 200 and tfs.json["decisions"] == sets
    assert oip.status_code == 200, oip.json
    [decision] = [o for o in oip.json["outputs"] if o["name"] == "decision"]
    assert decision["data"] == [";".join(labels) for labels in sets]
    [rows] = [o["data"] for o in oip.json["outputs"] if o["name"] == "probabilities"]
    native = [[answer["probabilities"][label] for label in bundle.labels] for answer in answers]
    assert np.array(rows).ravel() == pytest.approx(np.array(native).ravel(), abs=1e-6)
    assert np.array(tfs.json["predictions"]) == pytest.approx(np.array(native), abs=1e-6)
    for answer in answers:
        assert len(answer["top"]) == 3
        assert answer["decision"]["thresholds"] == dict(zip(bundle.labels, thresholds, strict=True))
        probabilities = np.array([[answer["probabilities"][label] for label in bundle.labels]])
        picked = chosen(probabilities, np.array(thresholds))[0]
        expected = [label for label, on in zip(bundle.labels, picked, strict=True) if on]
        assert answer["decision"]["labels"] == expected
    done = ktl_here(
        "predict",
        "--store",
        str(multilabel_store.store),
        "--name",
        "shapes",
        "--top-k",
        "9",
        "--json",
        *images,
    )
    assert done.returncode == 0, done.stderr
    predicted = json.loads(done.stdout)["predictions"]
    assert [p["decision"] for p in predicted] == [a["decision"] for a in answers]
    for mine, served in zip(predicted, answers, strict=True):
        for label in bundle.labels:
            assert mine["probabilities"][label] == pytest.approx(
                served["probabilities"][label], abs=1e-6
            )


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--mixup", "0.2"], "--mixup is not available with --task multilabel"),
        (["--tta", "--resume"], "--resume, --tta: not available with --task multilabel yet"),
    ],
)
def test_what_a_multilabel_job_cannot_do_is_refused_before_any_work(
    multilabel_store, tmp_path, flags, said
):
    store = tmp_path / "store"
    done = ktl_here(
        "train", str(multilabel_store.data), "--name", "mixed", "--store", str(store), *flags
    )
    assert done.returncode == 2, done.stderr
    assert said in done.stderr
    assert not (store / "mixed").exists()


def test_quantize_says_it_does_not_take_multilabel_yet(multilabel_store, tmp_path):
    store = multilabel_store.copy_to(tmp_path / "store")
    data = str(multilabel_store.data)
    quantized = ktl_here("quantize", "shapes", "--calibration", data, "--store", str(store))
    assert quantized.returncode == 2 and "is multi-label" in quantized.stderr
    assert ModelStore(store).versions("shapes") == [1]


def test_demo_task_multilabel_writes_its_csv_and_reuses_a_published_version(
    multilabel_store, tmp_path
):
    store = multilabel_store.copy_to(tmp_path / "store")
    data = tmp_path / "demo_multilabel"
    done = ktl_here(
        "demo",
        "--task",
        "multilabel",
        "--name",
        "shapes",
        "--store",
        str(store),
        "--data-dir",
        str(data),
    )
    assert done.returncode == 0, done.stderr
    assert "Reusing shapes version 1" in done.stdout
    with open(data / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 600 and any(row["labels"] == "" for row in rows)
    assert any(";" in row["labels"] for row in rows)


def test_the_train_summary_gives_overall_and_per_label_figures(multilabel_store, capsys):
    from cli.train_summary import print_summary

    print_summary(multilabel_store.summary.to_json())
    text = capsys.readouterr().out
    test = multilabel_store.summary.to_json()["evaluation"]["test"]
    assert f"mAP {test['map']:.3f}, micro F1 {test['micro_f1']:.3f}" in text
    assert "3 labels (multi-label)" in text and "empty set means none of these" in text
    rows = [
        line.split()
        for line in text.splitlines()
        if line.split()[:1] in (["circle"], ["square"], ["triangle"])
    ]
    thresholds = multilabel_store.summary.to_json()["multilabel"]["labels"]
    assert {row[0]: float(row[1]) for row in rows} == pytest.approx(
        {label: d["threshold"] for label, d in thresholds.items()}, abs=5e-4
    )
