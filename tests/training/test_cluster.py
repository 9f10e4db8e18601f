"""The parts of multi-device training that need no second process: TF_CONFIG,
shards, padded batches, merged reports and the one-device path. Two real
workers on 127.0.0.1 are in tests/e2e/test_distributed_train.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.support.data import COLOURS, colour_image, make_colour_dataset
from training.config import ConfigError, build_config
from training.dataset.data import list_samples, prepare
from training.dataset.health import merge_reports
from training.fitting import finetune
from training.multiworker.cluster import (
    Cluster,
    ClusterError,
    _peer_lost,
    connect,
    plan,
    read_tf_config,
    shard,
)  # fmt: skip


def _tf_config(cluster: dict, kind: str = "worker", index: int = 0) -> str:
    return json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})


WORKERS = {"worker": ["127.0.0.1:2222", "127.0.0.1:2223", "127.0.0.1:2224"]}


@pytest.mark.parametrize("text", [None, ""])
def test_no_tf_config_means_no_cluster(text):
    assert read_tf_config(text) is None


@pytest.mark.parametrize("index", [0, 1, 2])
def test_worker_positions_follow_the_worker_list(index):
    assert read_tf_config(_tf_config(WORKERS, "worker", index)) == (3, index)


def test_a_chief_task_comes_first_and_is_the_one_that_publishes():
    cluster = {"chief": ["host0:2222"], "worker": ["host1:2222", "host2:2222"]}
    assert read_tf_config(_tf_config(cluster, "chief", 0)) == (3, 0)
    assert read_tf_config(_tf_config(cluster, "worker", 0)) == (3, 1)
    assert read_tf_config(_tf_config(cluster, "worker", 1)) == (3, 2)
    assert Cluster(None, 3, 0).is_chief and not Cluster(None, 3, 1).is_chief


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "TF_CONFIG must be JSON"),
        (json.dumps({"cluster": WORKERS}), "TF_CONFIG must be JSON"),
        (_tf_config({**WORKERS, "ps": ["h:1"]}), "ps tasks"),
        (_tf_config(WORKERS, "evaluator", 0), "must be a chief or worker"),
        (_tf_config(WORKERS, "worker", 3), "task index 3 is not in"),
        (_tf_config({"chief": ["a:1", "b:1"], **WORKERS}, "chief", 0), "one chief task"),
    ],
)
def test_bad_tf_config_is_explained(text, message):
    with pytest.raises(ClusterError, match=message):
        read_tf_config(text)


def test_multiworker_without_tf_config_says_what_to_set():
    with pytest.raises(ClusterError, match="needs TF_CONFIG") as caught:
        connect("multiworker", environ={})
    assert '"task"' in str(caught.value) and "Scaling out" in str(caught.value)


def test_auto_on_one_cpu_uses_no_strategy():
    cluster = connect("auto", environ={})
    assert cluster.strategy is None and cluster.workers == 1 and cluster.is_chief
    assert cluster.describe() == "one device"


def test_mirrored_refuses_a_cluster_whose_workers_would_each_publish():
    environ = {"TF_CONFIG": _tf_config(WORKERS, "worker", 1)}
    with pytest.raises(ClusterError, match="names 3 workers .* use --strategy multiworker"):
        plan("mirrored", environ)
    assert plan("auto", environ) == ("multiworker", 3, 1)
    assert plan("multiworker", environ) == ("multiworker", 3, 1)
    assert plan("mirrored", {}) == ("mirrored", 1, 0)


def test_only_errors_of_a_missing_peer_count_as_a_lost_worker():
    from tensorflow import errors

    assert _peer_lost(errors.UnavailableError(None, None, "task 1 stopped sending heartbeats"))
    assert _peer_lost(errors.InternalError(None, None, "Collective ops is aborted by: ..."))
    assert not _peer_lost(errors.ResourceExhaustedError(None, None, "OOM when allocating"))
    assert not _peer_lost(errors.InvalidArgumentError(None, None, "bad input"))


def test_unknown_strategy_is_refused_by_the_config_and_connect():
    with pytest.raises(ConfigError, match="--strategy parameter-server: must be one of auto"):
        build_config({}, {"data": "d", "name": "n", "strategy": "parameter-server"})
    with pytest.raises(ClusterError, match="--strategy must be one of"):
        connect("parameter-server", environ={})


def test_one_device_gathers_only_itself_and_batches_as_asked():
    cluster = Cluster()
    assert cluster.allgather_json({"a": 1}) == [{"a": 1}]
    assert cluster.per_replica_batch(32) == 32
    data, steps = cluster.distribute(lambda batch, pad_to: (batch, pad_to), 10, 4)
    assert (data, steps) == ((4, None), None)
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(cluster.mean([a])[0], a)


def test_shards_are_disjoint_cover_everything_and_split_each_class_evenly():
    items = [("red", i) for i in range(7)] + [("blue", i) for i in range(5)]
    shards = [shard(items, Cluster(None, 3, k)) for k in range(3)]
    assert sorted(sum(shards, [])) == sorted(items)
    assert not set(shards[0]) & set(shards[1])
    for part in shards:
        reds = sum(1 for label, _ in part if label == "red")
        assert reds in (2, 3)


def _collect(dataset) -> list[tuple]:
    return [tuple(np.asarray(t) for t in batch) for batch in dataset]


def test_padded_batches_repeat_the_first_items_with_weight_zero():
    inputs = np.arange(5, dtype=np.float32)[:, None]
    targets = np.array([0, 1, 0, 1, 1], np.int32)
    batches = _collect(
        finetune.batches(inputs, targets, np.arange(5), 2, shuffle=False, seed=0, pad_to=8)
    )
    assert [len(b[0]) for b in batches] == [2, 2, 2, 2]
    assert np.concatenate([b[0] for b in batches])[:, 0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    # the padding counts in no loss or metric
    assert np.concatenate([b[2] for b in batches]).tolist() == [1, 1, 1, 1, 1, 0, 0, 0]


def test_shuffled_padded_batches_hold_every_item_each_epoch():
    inputs = np.arange(7, dtype=np.float32)[:, None]
    targets = np.zeros(7, np.int32)
    weights = {0: 3.0}
    dataset = finetune.batches(
        inputs, targets, np.arange(7), 3, shuffle=True, seed=1, pad_to=9, class_weight=weights
    )
    for _ in range(2):  # every epoch: all 7 with their class weight, then 2 of weight 0
        batches = _collect(dataset)
        seen = np.concatenate([b[0] for b in batches])[:, 0]
        assert len(seen) == 9 and set(seen[:7].tolist()) == set(range(7))
        assert np.concatenate([b[2] for b in batches]).tolist() == [3.0] * 7 + [0.0] * 2


def test_unpadded_unweighted_batches_have_no_weights():
    inputs = np.arange(5, dtype=np.float32)[:, None]
    (batch, _, _) = _collect(
        finetune.batches(inputs, np.zeros(5, np.int32), np.arange(5), 2, shuffle=False, seed=0)
    )
    assert len(batch) == 2


def test_class_weights_ride_with_the_training_batches():
    inputs = np.zeros((4, 1), np.float32)
    targets = np.array([0, 1, 1, 2], np.int32)
    weights = {0: 2.0, 1: 0.5, 2: 1.0}
    (batch,) = _collect(
        finetune.batches(
            inputs, targets, np.arange(4), 4, shuffle=False, seed=0, class_weight=weights
        )
    )
    assert batch[2].tolist() == [2.0, 0.5, 0.5, 1.0]


def test_merged_report_counts_every_shard_and_recomputes_the_class_weights(tmp_path):
    data = make_colour_dataset(tmp_path / "data", per_class=6, size=8)
    rng = np.random.default_rng(1)
    for extra in range(10):  # red becomes the large class
        colour_image(COLOURS["red"], 8, rng).save(data / "red" / f"more_{extra:03d}.png")
    copy = (data / "blue" / "blue_000.png").read_bytes()
    (data / "blue" / "copy.png").write_bytes(copy)
    listing = list_samples(data)
    whole = prepare(listing, (8, 8), val_split=0.25, seed=0, log=lambda m: None).report
    reports = []
    for k in range(2):
        part = shard(listing.samples, Cluster(None, 2, k))
        shard_listing = type(listing)(listing.layout, part, listing.ignored)
        reports.append(
            prepare(shard_listing, (8, 8), val_split=0.25, seed=0, log=lambda m: None).report
        )
    merged = merge_reports(reports)
    assert merged["shards"] == 2
    assert (
        merged["train_images"] + merged["val_images"] == whole["train_images"] + whole["val_images"]
    )
    for label, counts in merged["classes"].items():
        assert counts["train"] == sum(r["classes"][label]["train"] for r in reports)
    train = [merged["classes"][label]["train"] for label in merged["classes"]]
    assert merged["imbalance_ratio"] == round(max(train) / min(train), 3)
    total = sum(train)
    assert merged["class_weights"] == {
        str(k): round(total / (3 * n), 6) for k, n in enumerate(train)
    }
    assert any("identical images" in w for w in merged["warnings"])
    assert any("class imbalance" in w for w in merged["warnings"])
