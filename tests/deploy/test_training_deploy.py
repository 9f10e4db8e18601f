"""Training mode's deployments (deploy/training/, compose.yaml's training service, the
Dockerfile's serve-train image) agree with each other, with what training.jobs.kube
expects, and leave read-only serving as it was.

Each object of deploy/training/ is validated with the Kubernetes client's own models
(unknown fields refused) and must serialize back to exactly what the file says.
Nothing here talks to a cluster: docs/jobs-kubernetes.md says what was run where.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the deployment files")
kubernetes = pytest.importorskip("kubernetes", reason="pip install 'ktl[kubernetes]'")
from kubernetes import client  # noqa: E402

from models.jobqueue.jobs import DATASET_DIR, JobQueue  # noqa: E402
from service.config import ServiceConfig  # noqa: E402
from tests.support.kube_models import validate  # noqa: E402
from training.jobs.kube import KubeSettings, job_manifest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TRAINING = ROOT / "deploy" / "training"
IMAGE = "ktl-serve-train:latest"
TARGET = "serve-train"
STORE_CLAIM = "ktl-model-store"
MODELS = {
    "Deployment": "V1Deployment",
    "Service": "V1Service",
    "ServiceAccount": "V1ServiceAccount",
    "Role": "V1Role",
    "RoleBinding": "V1RoleBinding",
}


def _objects(*paths: Path) -> list[dict]:
    return [obj for path in paths for obj in yaml.safe_load_all(path.read_text()) if obj]


@pytest.fixture(scope="module")
def training() -> dict[str, dict]:
    """deploy/training/'s objects by ``Kind/name``."""
    kustomization = yaml.safe_load((TRAINING / "kustomization.yaml").read_text())
    paths = [TRAINING / name for name in kustomization["resources"] if name.endswith(".yaml")]
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in _objects(*paths)}


@pytest.fixture(scope="module")
def base() -> dict[str, dict]:
    """deploy/'s objects that ``kubectl apply -k deploy/`` creates, by ``Kind/name``."""
    kustomization = yaml.safe_load((ROOT / "deploy" / "kustomization.yaml").read_text())
    objects = _objects(*(ROOT / "deploy" / name for name in kustomization["resources"]))
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


def _pod(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def _container(workload: dict) -> dict:
    (container,) = _pod(workload)["containers"]
    return container


def _store_mounts(workload: dict) -> list[tuple[dict, dict]]:
    """(mount, volume) of each mount of the store claim."""
    volumes = {v["name"]: v for v in _pod(workload).get("volumes", [])}
    return [
        (mount, volumes[mount["name"]])
        for container in _pod(workload)["containers"]
        for mount in container.get("volumeMounts", [])
        if volumes[mount["name"]].get("persistentVolumeClaim", {}).get("claimName") == STORE_CLAIM
    ]


def _env(container: dict) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _stage(name: str) -> str:
    """One stage of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)
    (stage,) = [s for s in stages if s.split("\n", 1)[0].endswith(f" AS {name}")]
    return stage


def test_every_object_is_valid_for_the_kubernetes_api(training):
    kustomization = yaml.safe_load((TRAINING / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (TRAINING / resource).exists(), resource
    for key, obj in training.items():
        model = validate(MODELS[obj["kind"]], obj)
        assert client.ApiClient().sanitize_for_serialization(model) == obj
        assert "namespace" not in obj["metadata"], key  # the namespace applied to


def test_training_mode_adds_to_deploy_and_changes_nothing_of_it(training, base):
    kustomization = yaml.safe_load((TRAINING / "kustomization.yaml").read_text())
    assert "../" in kustomization["resources"]
    # No patches, image or replica overrides: the serving Deployment stays as deploy/ has it.
    assert set(kustomization) == {"apiVersion", "kind", "resources"}
    assert not training.keys() & base.keys()
    serving = base["Deployment/ktl"]
    ((mount, volume),) = _store_mounts(serving)
    assert mount["readOnly"] is True and volume["persistentVolumeClaim"]["readOnly"] is True
    assert "KTL_TRAIN_KEYS" not in _env(_container(serving))
    assert "KTL_TRAINING" not in _env(_container(serving))


def test_only_the_training_service_writes_the_store(training, base):
    writers = [
        key
        for key, obj in {**base, **training}.items()
        if obj["kind"] == "Deployment"
        for mount, volume in _store_mounts(obj)
        if not mount.get("readOnly") and not volume["persistentVolumeClaim"].get("readOnly")
    ]
    assert writers == ["Deployment/ktl-train"]
    deployment = training["Deployment/ktl-train"]
    ((mount, _),) = _store_mounts(deployment)
    assert mount["mountPath"] == "/models"


def test_the_role_is_for_jobs_and_their_pods_in_its_namespace_only(training):
    assert not [key for key in training if key.startswith("Cluster")]
    role, binding = training["Role/ktl-train-jobs"], training["RoleBinding/ktl-train-jobs"]
    rules = {
        (group, resource): sorted(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert rules == {
        ("batch", "jobs"): sorted(["create", "get", "list", "watch", "delete"]),
        ("", "pods"): ["get", "list"],
        ("", "pods/log"): ["get"],
    }
    assert not any("*" in str(rule) or rule.get("resourceNames") for rule in role["rules"])
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    # No namespace on the subject: the binding's own namespace, wherever it is applied.
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ktl-train"}]
    assert "ServiceAccount/ktl-train" in training
    pod = _pod(training["Deployment/ktl-train"])
    assert pod["serviceAccountName"] == "ktl-train"
    assert pod.get("automountServiceAccountToken", True) is True


def test_the_training_service_configures_the_kubernetes_runner(training, base, tmp_path):
    deployment = training["Deployment/ktl-train"]
    container = _container(deployment)
    env = _env(container)
    assert env["KTL_JOB_RUNNER"] == "kubernetes"
    assert env["KTL_TRAIN_KEYS"] == {
        "secretKeyRef": {"name": "ktl-train-keys", "key": "KTL_TRAIN_KEYS"}
    }  # never a literal key, never KTL_TRAINING=open
    assert "KTL_TRAINING" not in env
    assert env["KTL_K8S_IMAGE"] == container["image"] == IMAGE  # the Jobs run this image
    literal = {name: value for name, value in env.items() if isinstance(value, str)}
    config = ServiceConfig.from_env({**literal, "KTL_TRAIN_KEYS": "k"})
    assert config.training_enabled and config.job_runner == "kubernetes"
    ((mount, volume),) = _store_mounts(deployment)
    # What the launcher builds from this environment, in a store at the same path.
    store = tmp_path / mount["mountPath"].lstrip("/")
    settings = KubeSettings.from_env(store, literal, namespace_file=tmp_path / "none")
    queue = JobQueue(store)
    job_id, folder = queue.reserve()
    (folder / DATASET_DIR).mkdir()
    queue.submit(job_id, options={"name": "bees"}, data=folder, source="upload", limit=1)
    manifest = job_manifest(queue.claim("kubernetes"), settings)
    job = validate("V1Job", manifest)
    assert job.spec.template.spec.containers[0].image == container["image"]
    (claim,) = [v for v in job.spec.template.spec.volumes if v.persistent_volume_claim]
    assert claim.persistent_volume_claim.claim_name == volume["persistentVolumeClaim"]["claimName"]
    assert f"PersistentVolumeClaim/{STORE_CLAIM}" in base
    assert "ReadWriteMany" in base[f"PersistentVolumeClaim/{STORE_CLAIM}"]["spec"]["accessModes"]
    # No Service selects the training Jobs' pods; each Service selects its own Deployment.
    job_labels = manifest["spec"]["template"]["metadata"]["labels"]
    objects = {**base, **training}
    chosen = {
        key: [
            name
            for name, obj in objects.items()
            if obj["kind"] == "Deployment"
            and service["spec"]["selector"].items()
            <= obj["spec"]["template"]["metadata"]["labels"].items()
        ]
        for key, service in objects.items()
        if service["kind"] == "Service"
        and not service["spec"]["selector"].items() <= job_labels.items()
    }
    assert chosen == {
        "Service/ktl": ["Deployment/ktl"],
        "Service/ktl-train": ["Deployment/ktl-train"],
    }


def test_the_training_pod_is_locked_down_like_the_serving_pod(training, base):
    deployment = training["Deployment/ktl-train"]
    pod, container = _pod(deployment), _container(deployment)
    serving = _pod(base["Deployment/ktl"])
    for key in ("runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "seccompProfile"):
        assert pod["securityContext"][key] == serving["securityContext"][key], key
    assert container["securityContext"] == _container(base["Deployment/ktl"])["securityContext"]
    assert pod["enableServiceLinks"] is False
    # One job runner per store: one replica, never two during a rollout.
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    (port,) = training["Service/ktl-train"]["spec"]["ports"]
    assert port["targetPort"] in ports


def test_the_serve_train_image_holds_the_service_training_and_the_client():
    stage = _stage(TARGET)
    assert stage.startswith("runtime AS ")
    assert f"COPY --from={TARGET}-venv /opt/ktl /opt/ktl" in stage
    assert '"ktl[cpu,serve,train,export,kubernetes,grpc,s3]"' in _stage(f"{TARGET}-venv")
    assert "kubernetes" in re.search(r"pip wheel [^\n]*", _stage("build")).group(0)
    for other in ("serve", "train"):
        assert "kubernetes" not in _stage(other) + _stage(f"{other}-venv"), other
    assert "USER 10001:10001" in stage and "EXPOSE 8000" in stage and "HEALTHCHECK" in stage
    assert "ENV KTL_HOST=0.0.0.0" in stage and 'CMD ["ktl", "serve"]' in stage
    # The Jobs' writable KERAS_HOME is where the image keeps its weights.
    keras_home = re.search(r"KERAS_HOME=(\S+)", _stage("runtime")).group(1)
    assert KubeSettings(image="i", namespace="n", store="/models").keras_home == keras_home
    # The serving image stays the default (the last stage).
    assert re.findall(r"^FROM \S+ AS (\S+)", (ROOT / "Dockerfile").read_text(), re.M)[-1] == "serve"


def test_compose_training_service_writes_the_store_behind_keys():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    service, training = services["service"], services["training"]
    assert training["profiles"] == ["training"]
    assert (training["image"], training["build"]["target"]) == (IMAGE, TARGET)
    mounts = {name: {m["target"]: m for m in s.get("volumes", [])} for name, s in services.items()}
    assert mounts["service"]["/models"]["read_only"] is True  # serving stays read-only
    assert not mounts["training"]["/models"].get("read_only", False)
    assert mounts["training"]["/models"]["source"] == mounts["service"]["/models"]["source"]
    env = training["environment"]
    assert "KTL_TRAINING" not in env and env["KTL_TRAIN_KEYS"] is None  # passed through
    assert env["KTL_HOST"] == service["environment"]["KTL_HOST"] == "0.0.0.0"
    assert env["KTL_JOB_RUNNER"] == "local"
    assert all(port.startswith("127.0.0.1:") for port in training.get("ports", []))


def test_the_kubernetes_client_is_an_extra_pinned_like_every_other():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert [r.split(">")[0] for r in extras["kubernetes"]] == ["kubernetes"]
    assert any("kubernetes" in r for r in extras["dev"] if r.startswith("ktl["))
    pins = (ROOT / "constraints.txt").read_text()
    assert re.search(r"^kubernetes==\S+$", pins, re.M)


def test_the_page_documents_every_setting_and_what_was_run():
    page = (ROOT / "docs" / "jobs-kubernetes.md").read_text()
    source = (ROOT / "training" / "jobs" / "kube_manifest.py").read_text()
    for name in sorted(set(re.findall(r"KTL_K8S_[A-Z_]+", source))):
        assert f"`{name}`" in page, name
    assert "## What was run here" in page
    for path in ("deploy/training/", "rbac.yaml", "compose"):
        assert path in page


def test_the_models_check_refuses_a_misspelt_field():
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"}}
    job["spec"] = {"template": {"spec": {"containers": [{"name": "a", "imagee": "ktl"}]}}}
    with pytest.raises(ValueError, match="imagee"):
        validate("V1Job", job)
    job["spec"]["template"]["spec"]["containers"][0] = {"name": "a", "image": "ktl"}
    assert validate("V1Job", job).spec.template.spec.containers[0].image == "ktl"
