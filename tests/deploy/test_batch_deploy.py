"""deploy/batch/: the scoring job's Indexed Job. Validated with the Kubernetes
client's own models (unknown fields refused, serializing back to exactly the file),
its arguments parsed by ktl's own parser, and each pod's index turned into the shard
and the part file ktl score would write. Nothing here talks to a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the deployment files")
kubernetes = pytest.importorskip("kubernetes", reason="pip install 'ktl[kubernetes]'")
from kubernetes import client  # noqa: E402

from cli.commands.score import INDEX_VARIABLE, shard_of_args  # noqa: E402
from cli.main import build_parser  # noqa: E402
from cli.settings import CliSettings  # noqa: E402
from models.batch.output import part_path  # noqa: E402
from tests.support.kube_models import validate  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
JOB = ROOT / "deploy" / "batch" / "score-job.yaml"


@pytest.fixture(scope="module")
def job() -> dict:
    (obj,) = [obj for obj in yaml.safe_load_all(JOB.read_text()) if obj]
    return obj


@pytest.fixture(scope="module")
def serving() -> dict:
    return yaml.safe_load((ROOT / "deploy" / "deployment.yaml").read_text())


def _container(workload: dict) -> dict:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def test_the_job_is_valid_for_the_kubernetes_api(job):
    model = validate("V1Job", job)
    assert client.ApiClient().sanitize_for_serialization(model) == job
    assert "namespace" not in job["metadata"]


def test_each_pod_scores_its_own_shard_into_its_own_part(job):
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    args = _container(job)["args"]
    assert args[:2] == ["ktl", "score"]
    parsed = build_parser(CliSettings()).parse_args(args[1:])
    assert parsed.shards == spec["completions"] == spec["parallelism"]
    shards = [shard_of_args(parsed, {INDEX_VARIABLE: str(i)}) for i in range(parsed.shards)]
    assert shards == [(i, parsed.shards) for i in range(parsed.shards)]
    parts = {part_path(Path(parsed.out), i, n) for i, n in shards}
    assert len(parts) == parsed.shards  # no two pods append to one file
    mounts = {m["mountPath"]: m for m in _container(job)["volumeMounts"]}
    (results,) = [m for path, m in mounts.items() if Path(parsed.out).is_relative_to(path)]
    assert not results.get("readOnly")
    assert mounts[parsed.input]["readOnly"] is True


def test_the_pods_read_the_store_read_only_and_are_locked_down_like_the_service(job, serving):
    container, served = _container(job), _container(serving)
    assert container["image"] == served["image"]  # the serving image: TF and the INT8 engine
    assert container["securityContext"] == served["securityContext"]
    pod, serving_pod = job["spec"]["template"]["spec"], serving["spec"]["template"]["spec"]
    assert pod["securityContext"] == serving_pod["securityContext"]
    assert pod["enableServiceLinks"] is False
    env = {e["name"]: e["value"] for e in container["env"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (store,) = [m for m in container["volumeMounts"] if m["mountPath"] == env["KTL_MODEL_STORE"]]
    assert store["readOnly"] is True
    assert volumes[store["name"]]["persistentVolumeClaim"]["claimName"] == "ktl-model-store"
