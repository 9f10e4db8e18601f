"""training.jobs.kube: the Kubernetes Job each training job becomes, and the launcher that
creates, follows and deletes it, against a stand-in for the API (no cluster here).

The manifest is validated the strictest way the client offers: its own models
(pydantic, unknown fields refused), and the model's serialization must give back
exactly the manifest, so a misspelt field fails here rather than in a cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

kubernetes = pytest.importorskip("kubernetes", reason="pip install 'ktl[kubernetes]'")
from kubernetes import client  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402

from models.errors import ConfigError, OperationalError  # noqa: E402
from models.jobqueue.jobs import DATASET_DIR, Job, JobQueue  # noqa: E402
from training.jobs import kube  # noqa: E402
from training.jobs.kube import KubernetesLauncher, KubeSettings, job_manifest, job_name  # noqa: E402
from training.jobs.runner import build_parser, make_launcher  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "registry.example/ktl-serve-train:1.0"


def validated(manifest: dict, model: str) -> Any:
    """The manifest as the client's model; its serialization is the manifest again."""
    cls = getattr(client, model)
    obj = cls.model_validate(manifest) if hasattr(cls, "model_validate") else None
    if obj is None:  # clients before the pydantic models: a lenient round trip only
        obj = client.ApiClient()._ApiClient__deserialize(manifest, model)
    assert client.ApiClient().sanitize_for_serialization(obj) == manifest
    return obj


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


def _job(store: Path, name: str = "flowers") -> Job:
    queue = JobQueue(store)
    job_id, folder = queue.reserve()
    (folder / DATASET_DIR).mkdir()
    queue.submit(
        job_id, options={"name": name}, data=folder / DATASET_DIR, source="upload", limit=8
    )
    claimed = queue.claim("kubernetes")
    assert claimed is not None
    return claimed


def _settings(store: Path, **env: str) -> KubeSettings:
    environ = {"KTL_K8S_IMAGE": IMAGE, "KTL_K8S_NAMESPACE": "ml", **env}
    return KubeSettings.from_env(store, environ)


def test_the_job_manifest_is_a_valid_batch_v1_job(store):
    job = _job(store)
    manifest = job_manifest(job, _settings(store))
    validated(manifest, "V1Job")
    spec, meta = manifest["spec"], manifest["metadata"]
    assert meta["name"] == job_name(job) == f"ktl-train-{job.id}-1"
    assert len(meta["name"]) <= 63 and meta["name"] == meta["name"].lower()
    assert meta["namespace"] == "ml"
    labels = {"app.kubernetes.io/name": "ktl", "ktl.job-id": job.id}
    assert labels.items() <= meta["labels"].items()
    assert labels.items() <= spec["template"]["metadata"]["labels"].items()
    assert spec["backoffLimit"] == 0  # the runner resumes a job, Kubernetes never retries it
    assert spec["activeDeadlineSeconds"] == 86400 and spec["ttlSecondsAfterFinished"] == 86400
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001


def test_the_pod_runs_the_runners_child_on_the_store_at_the_same_path(store):
    job = _job(store)
    settings = _settings(store, KTL_K8S_STORE_CLAIM="models-rwx")
    pod = job_manifest(job, settings)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    runner = ["python", "-m", "training.jobs.runner"]
    assert container["command"] + container["args"] == [
        *runner, "--run-job", job.id, "--store", str(store.resolve()),
    ]  # fmt: skip
    args = build_parser().parse_args(container["command"][3:] + container["args"])
    assert (args.run_job, args.store) == (job.id, str(store.resolve()))  # the runner's child
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    store_mount = mounts[str(store.resolve())]
    assert not store_mount.get("readOnly", False)
    assert volumes[store_mount["name"]]["persistentVolumeClaim"] == {"claimName": "models-rwx"}
    # The job's dataset lies in the store, so its path holds in the pod too.
    assert Path(job.data).is_relative_to(store.resolve())


def test_every_container_has_a_read_only_root_and_writable_tmp_and_keras_home(store):
    pod = job_manifest(_job(store), _settings(store))["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for container in pod["initContainers"] + pod["containers"]:
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        resources = container["resources"]
        assert resources["requests"] == resources["limits"] == {"cpu": "2", "memory": "4Gi"}
    (train,) = pod["containers"]
    mounts = {m["mountPath"]: m["name"] for m in train["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]] and "emptyDir" in volumes[mounts["/opt/keras"]]
    env = {e["name"]: e["value"] for e in train["env"]}
    assert env["KERAS_HOME"] == "/opt/keras" and env["TF_NUM_INTRAOP_THREADS"] == "2"
    assert not [name for name in env if name.startswith("KTL_") and name != "KTL_MODEL_STORE"]
    # The weights baked into the image's KERAS_HOME are copied into the writable one first.
    (seed,) = pod["initContainers"]
    assert seed["image"] == train["image"] and "/opt/keras" in seed["command"]
    (seed_mount,) = seed["volumeMounts"]
    assert seed_mount["name"] == mounts["/opt/keras"] and seed_mount["mountPath"] in seed["command"]


def test_no_secret_of_the_service_reaches_the_job(store):
    settings = KubeSettings.from_env(
        store,
        {"KTL_K8S_IMAGE": IMAGE, "KTL_TRAIN_KEYS": "s3cret", "KTL_API_KEYS": "k3y"},
        namespace_file=store / "missing",
    )
    text = yaml.safe_dump(job_manifest(_job(store), settings))
    assert "s3cret" not in text and "k3y" not in text
    assert settings.namespace == "default"


def test_settings_come_from_the_environment(store, tmp_path):
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("team-a\n")
    settings = KubeSettings.from_env(
        store,
        {"KTL_K8S_IMAGE": IMAGE, "KTL_K8S_CPU": "500m", "KTL_K8S_MEMORY": "12Gi",
         "KTL_K8S_DEADLINE_S": "3600", "KTL_K8S_TTL_S": "60", "KTL_K8S_PULL_POLICY": "Always"},
        namespace_file=namespace_file,
    )  # fmt: skip
    assert settings.namespace == "team-a"  # the service account's namespace
    assert (settings.cpu, settings.memory, settings.threads) == ("500m", "12Gi", 1)
    manifest = job_manifest(_job(store), settings)
    validated(manifest, "V1Job")
    assert manifest["spec"]["activeDeadlineSeconds"] == 3600
    assert manifest["spec"]["ttlSecondsAfterFinished"] == 60
    env = {"KTL_K8S_IMAGE": IMAGE, "KTL_K8S_NAMESPACE": "explicit"}
    assert KubeSettings.from_env(store, env, namespace_file).namespace == "explicit"
    assert _settings(store, KTL_K8S_CPU="1.5").threads == 2


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KTL_K8S_IMAGE": ""}, "KTL_K8S_IMAGE"),
        ({"KTL_K8S_CPU": "two"}, "KTL_K8S_CPU"),
        ({"KTL_K8S_CPU": "0"}, "KTL_K8S_CPU"),
        ({"KTL_K8S_MEMORY": "4GB"}, "KTL_K8S_MEMORY"),
        ({"KTL_K8S_DEADLINE_S": "-5"}, "KTL_K8S_DEADLINE_S"),
        ({"KTL_K8S_TTL_S": "soon"}, "KTL_K8S_TTL_S"),
        ({"KTL_K8S_PULL_POLICY": "Sometimes"}, "KTL_K8S_PULL_POLICY"),
        ({"KTL_K8S_DATA_CLAIM": "photos"}, "KTL_DATA_ROOT"),
    ],
)
def test_a_bad_setting_is_named(store, env, named):
    with pytest.raises(ConfigError, match=named):
        _settings(store, **env)


def test_a_data_root_claim_is_mounted_read_only_where_the_service_has_it(store):
    job = _job(store)
    settings = _settings(store, KTL_K8S_DATA_CLAIM="photos", KTL_DATA_ROOT="/data")
    pod = validated(job_manifest(job, settings), "V1Job").spec.template.spec
    (mount,) = [m for m in pod.containers[0].volume_mounts if m.mount_path == "/data"]
    (volume,) = [v for v in pod.volumes if v.name == mount.name]
    assert mount.read_only is True and volume.persistent_volume_claim.claim_name == "photos"


def test_a_name_stays_a_valid_label_value(store):
    job = _job(store)
    job.attempts = 10**60
    name = job_name(job)
    assert len(name) <= 63 and not name.endswith("-") and name.startswith("ktl-train-")


# The launcher, against a stand-in for the API that records every call.


def _job_object(name: str, job_id: str, **status: Any) -> Any:
    conditions = status.pop("conditions", None)
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name, labels={"ktl.job-id": job_id}),
        status=client.V1JobStatus(
            conditions=[
                client.V1JobCondition(type=kind, status="True", reason=reason, message=message)
                for kind, reason, message in conditions or []
            ]
            or None,
            **status,
        ),
    )


def _pod(name: str, *, terminated=None, waiting=None, unschedulable=None) -> Any:
    state = client.V1ContainerState(
        terminated=client.V1ContainerStateTerminated(exit_code=terminated[0], reason=terminated[1])
        if terminated
        else None,
        waiting=client.V1ContainerStateWaiting(reason=waiting[0], message=waiting[1])
        if waiting
        else None,
    )
    status = client.V1ContainerStatus(
        name="train", image=IMAGE, image_id="", ready=False, restart_count=0, state=state
    )
    conditions = (
        [
            client.V1PodCondition(
                type="PodScheduled", status="False", reason="Unschedulable", message=unschedulable
            )
        ]  # fmt: skip
        if unschedulable
        else None
    )
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        status=client.V1PodStatus(container_statuses=[status], conditions=conditions),
    )


class FakeApi:
    """BatchV1Api and CoreV1Api in one: Jobs by name, pods by Job name, calls recorded."""

    def __init__(self):
        self.calls: list[tuple[str, tuple, dict]] = []
        self.jobs: dict[str, Any] = {}
        self.pods: dict[str, list[Any]] = {}
        self.logs = "Traceback (most recent call last):\nModuleNotFoundError: training\n"
        self.fail: dict[str, BaseException] = {}

    def _call(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((method, args, kwargs))
        if method in self.fail:
            raise self.fail[method]

    def create_namespaced_job(self, namespace, body):
        self._call("create_namespaced_job", namespace, body)
        name = body["metadata"]["name"]
        self.jobs[name] = _job_object(name, body["metadata"]["labels"]["ktl.job-id"], active=1)
        return self.jobs[name]

    def read_namespaced_job(self, name, namespace):
        self._call("read_namespaced_job", name, namespace)
        if name not in self.jobs:
            raise ApiException(status=404, reason="Not Found")
        return self.jobs[name]

    def list_namespaced_job(self, namespace, label_selector):
        self._call("list_namespaced_job", namespace, label_selector=label_selector)
        key, _, value = label_selector.partition("=")
        jobs = [job for job in self.jobs.values() if job.metadata.labels.get(key) == value]
        return client.V1JobList(items=jobs)

    def delete_namespaced_job(self, name, namespace, propagation_policy):
        self._call("delete_namespaced_job", name, namespace, propagation_policy=propagation_policy)
        if self.jobs.pop(name, None) is None:
            raise ApiException(status=404, reason="Not Found")

    def list_namespaced_pod(self, namespace, label_selector):
        self._call("list_namespaced_pod", namespace, label_selector=label_selector)
        return client.V1PodList(items=self.pods.get(label_selector.removeprefix("job-name="), []))

    def read_namespaced_pod_log(self, name, namespace, container, tail_lines):
        self._call("read_namespaced_pod_log", name, namespace, container=container)
        return self.logs


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def launcher(store, api) -> KubernetesLauncher:
    return KubernetesLauncher(_settings(store), batch=api, core=api)


def _log(store: Path, job: Job) -> str:
    return "\n".join(JobQueue(store).log_tail(job.id, 50))


def test_start_creates_the_job_in_its_namespace(launcher, api, store):
    job = _job(store)
    handle = launcher.start(job)
    assert launcher.kind == "kubernetes" and handle == f"ktl-train-{job.id}-1"
    (_list, create) = api.calls
    assert _list == ("list_namespaced_job", ("ml",), {"label_selector": f"ktl.job-id={job.id}"})
    assert create[0] == "create_namespaced_job" and create[1][0] == "ml"
    assert create[1][1] == job_manifest(job, launcher.settings)
    assert f"Kubernetes Job {handle} created in namespace ml" in _log(store, job)
    assert launcher.poll(handle) is None and launcher.alive(handle)


def test_start_follows_a_job_still_running_from_before_instead_of_training_twice(
    launcher, api, store
):
    job = _job(store)
    first = launcher.start(job)
    job.attempts = 2  # the runner died; a new one claimed the job again
    assert launcher.start(job) == first
    assert [call[0] for call in api.calls].count("create_namespaced_job") == 1
    api.jobs[first] = _job_object(first, job.id, failed=1)
    assert launcher.start(job) == f"ktl-train-{job.id}-2"  # that one ended: a new Job


def test_start_explains_an_api_refusal(launcher, api, store):
    api.fail["create_namespaced_job"] = ApiException(status=403, reason="Forbidden")
    with pytest.raises(OperationalError, match="rbac.yaml"):
        launcher.start(_job(store))
    api.fail["create_namespaced_job"] = ApiException(status=409, reason="AlreadyExists")
    job = _job(store, "other")
    assert launcher.start(job) == job_name(job)


def test_poll_reports_success_and_failure_with_the_containers_status(launcher, api, store):
    job = _job(store)
    handle = launcher.start(job)
    api.jobs[handle] = _job_object(handle, job.id, succeeded=1)
    assert launcher.poll(handle) == 0 and not launcher.alive(handle)
    JobQueue(store).append_log(job.id, "ktl train: out of memory at epoch 2")
    api.jobs[handle] = _job_object(
        handle, job.id, failed=1, conditions=[("Failed", "BackoffLimitExceeded", "too many")]
    )
    api.pods[handle] = [_pod("p-1", terminated=(137, "OOMKilled"))]
    assert launcher.poll(handle) == 137
    log = _log(store, job)
    assert "BackoffLimitExceeded" in log and "OOMKilled" in log and "KTL_K8S_MEMORY" in log
    assert "ModuleNotFoundError" not in log  # the child had written lines: no pod log copied


def test_a_job_that_died_before_writing_its_log_gets_the_pods_log(launcher, api, store):
    job = _job(store)
    JobQueue(store).append_log(job.id, "epoch 3/8 of the first attempt")  # then it died
    job.attempts = 2
    JobQueue(store).append_log(job.id, "Job runner: starting attempt 2 (resumed)")
    handle = launcher.start(job)
    api.jobs[handle] = _job_object(
        handle, job.id, failed=1, conditions=[("Failed", "DeadlineExceeded", "too long")]
    )
    api.pods[handle] = [_pod("p-1", terminated=(1, "Error"))]
    assert launcher.poll(handle) == 1
    log = _log(store, job)
    assert "DeadlineExceeded" in log and "pod log: ModuleNotFoundError: training" in log
    assert ("read_namespaced_pod_log", ("p-1", "ml"), {"container": "train"}) in api.calls


def test_poll_waits_through_api_trouble_and_reports_a_vanished_job(launcher, api, store):
    import urllib3

    job = _job(store)
    handle = launcher.start(job)
    api.fail["read_namespaced_job"] = ApiException(status=503, reason="Unavailable")
    assert launcher.poll(handle) is None and launcher.alive(handle)
    api.fail["read_namespaced_job"] = urllib3.exceptions.MaxRetryError(None, "/", "refused")
    assert launcher.poll(handle) is None
    api.fail["read_namespaced_job"] = ApiException(status=403, reason="Forbidden")
    with pytest.raises(OperationalError, match="refused to read"):
        launcher.poll(handle)
    del api.fail["read_namespaced_job"]
    api.jobs.clear()
    assert launcher.poll(handle) == 1 and not launcher.alive(handle)
    assert "no longer exists" in _log(store, job)


def test_a_pod_that_cannot_start_fails_the_job_now(launcher, api, store):
    job = _job(store)
    handle = launcher.start(job)
    api.jobs[handle] = _job_object(handle, job.id, active=1, ready=0)
    api.pods[handle] = [_pod("p-1", unschedulable="0/3 nodes: Insufficient memory")]
    assert launcher.poll(handle) is None and launcher.poll(handle) is None
    assert _log(store, job).count("Insufficient memory") == 1  # said once
    api.pods[handle] = [_pod("p-1", waiting=("ImagePullBackOff", "no such image"))]
    assert launcher.poll(handle) == 1
    assert handle not in api.jobs  # deleted
    assert "ImagePullBackOff: no such image" in _log(store, job)


def test_stop_deletes_the_job_and_its_pod_and_can_be_repeated(launcher, api, store):
    handle = launcher.start(_job(store))
    launcher.stop(handle)
    launcher.stop(handle)
    deletes = [call for call in api.calls if call[0] == "delete_namespaced_job"]
    assert (
        deletes
        == [("delete_namespaced_job", (handle, "ml"), {"propagation_policy": "Background"})] * 2
    )
    assert not launcher.alive(handle)
    api.fail["delete_namespaced_job"] = ApiException(status=500, reason="etcd")
    with pytest.raises(OperationalError, match="delete the Job"):
        launcher.stop(handle)


# What the launcher calls, and what deploy/training/rbac.yaml lets it call.
CALLS = {
    "create_namespaced_job": ("batch", "jobs", "create"),
    "read_namespaced_job": ("batch", "jobs", "get"),
    "list_namespaced_job": ("batch", "jobs", "list"),
    "delete_namespaced_job": ("batch", "jobs", "delete"),
    "list_namespaced_pod": ("", "pods", "list"),
    "read_namespaced_pod_log": ("", "pods/log", "get"),
}


def test_the_role_allows_every_call_the_launcher_makes(store, api):
    launcher = KubernetesLauncher(_settings(store), batch=api, core=api)
    job = _job(store)
    handle = launcher.start(job)
    launcher.poll(handle)
    api.jobs[handle] = _job_object(handle, job.id, failed=1)
    api.pods[handle] = [_pod("p", terminated=(2, "Error"))]
    launcher.poll(handle)
    launcher.stop(handle)
    assert {call[0] for call in api.calls} == set(CALLS)
    (role,) = [
        doc
        for doc in yaml.safe_load_all((ROOT / "deploy/training/rbac.yaml").read_text())
        if doc["kind"] == "Role"
    ]
    allowed = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert set(CALLS.values()) <= allowed
    # The API methods exist under these names in the client this project pins.
    for method in CALLS:
        assert hasattr(client.BatchV1Api, method) or hasattr(client.CoreV1Api, method), method


def test_connect_says_what_is_missing(monkeypatch):
    from kubernetes import config

    def refuse(*args, **kwargs):
        raise config.ConfigException("nothing here")

    monkeypatch.setattr(config, "load_incluster_config", refuse)
    monkeypatch.setattr(config, "load_kube_config", refuse)
    with pytest.raises(OperationalError, match="no Kubernetes API.*KTL_JOB_RUNNER=local"):
        kube.connect()
    monkeypatch.setattr(config, "load_incluster_config", lambda: None)
    batch, core = kube.connect()
    assert isinstance(batch, client.BatchV1Api) and isinstance(core, client.CoreV1Api)
    monkeypatch.setitem(__import__("sys").modules, "kubernetes", None)
    with pytest.raises(OperationalError, match=r"ktl\[kubernetes\]"):
        kube.connect()


def test_from_env_needs_the_image_before_it_connects(store, monkeypatch):
    monkeypatch.setattr(kube, "connect", lambda: pytest.fail("connected"))
    with pytest.raises(ConfigError, match="KTL_K8S_IMAGE"):
        KubernetesLauncher.from_env(store, {})


def test_the_runner_makes_this_launcher_for_kubernetes(store, monkeypatch, api):
    monkeypatch.setattr(kube, "connect", lambda: (api, api))
    monkeypatch.setenv("KTL_K8S_IMAGE", IMAGE)
    monkeypatch.setenv("KTL_K8S_NAMESPACE", "ml")
    launcher = make_launcher(store, "kubernetes")
    assert isinstance(launcher, KubernetesLauncher) and launcher.kind == "kubernetes"
    assert launcher.settings.store == str(store.resolve())
