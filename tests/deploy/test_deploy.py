"""The Kubernetes example and compose.yaml agree with the Dockerfile.

Port, health paths, user, image name and the model store path are written in
four places (Dockerfile, compose.yaml, deploy/*.yaml); a change to one that is
not made to the others breaks a deployment only at run time. These tests parse
them all and compare.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from service.config import ServiceConfig

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the deployment files")

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "ktl:latest"  # the service (Dockerfile target serve, the default)
TRAIN_IMAGE = "ktl-train:latest"  # the fine-tune job (target train)
SERVE_TARGET, TRAIN_TARGET = "serve", "train"
STORE_CLAIM = "ktl-model-store"
MULTIWORKER = "train-multiworker.yaml"


def _dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """(INSTRUCTION, arguments) of each named stage, continuation lines joined; a stage
    built ``FROM`` another starts with that one's instructions. The last stage is also
    under "" (what a build without --target makes)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            base, _, name = rest.partition(" AS ")
            current = list(stages.get(base.strip(), []))
            stages[name.strip()] = current
            stages[""] = current
        current.append((keyword.upper(), rest.strip()))
    return stages


def _instruction(name: str, stage: str = SERVE_TARGET) -> list[str]:
    return [rest for keyword, rest in _dockerfile_stages()[stage] if keyword == name]


@pytest.fixture(scope="module")
def dockerfile() -> dict:
    (expose,) = _instruction("EXPOSE")
    (user,) = _instruction("USER")
    (healthcheck,) = _instruction("HEALTHCHECK")
    (volume,) = _instruction("VOLUME")
    env = " ".join(_instruction("ENV"))
    uid, _, gid = user.partition(":")
    return {
        "port": int(expose.split("/")[0]),
        "uid": int(uid),
        "gid": int(gid or uid),
        "health_path": re.search(r"(/[a-z]+)'", healthcheck).group(1),
        "store": re.search(r"KTL_MODEL_STORE=(\S+)", env).group(1),
        "host": re.search(r"KTL_HOST=(\S+)", env).group(1),
        "volume": volume.strip(),
        "cmd": _instruction("CMD")[-1],
    }


def _extras(target: str) -> list[str]:
    """The extras of each ``ktl[...]`` the image of ``target`` installs, in its own steps
    or in the stages it copies from."""
    copies = " ".join(_instruction("COPY", target))
    stages = [target, *re.findall(r"--from=(\S+)", copies)]
    runs = " ".join(run for stage in stages for run in _instruction("RUN", stage))
    return re.findall(r'"ktl\[([a-z0-9,]+)\]"', runs)


def test_the_default_image_is_the_service_and_the_job_has_its_own():
    stages = _dockerfile_stages()
    assert stages[""] is stages[SERVE_TARGET]
    # The job's image has no web framework, the service's no training report tools.
    assert _extras(SERVE_TARGET) == ["cpu,serve,grpc,s3"]
    assert _extras(TRAIN_TARGET) == ["cpu,train,export,s3"]
    for target in (SERVE_TARGET, TRAIN_TARGET):
        assert _instruction("USER", target) == _instruction("USER", SERVE_TARGET)
        # The wheels stay in the build stages: the image copies an installed venv only.
        assert "/wheels" not in " ".join(_instruction("COPY", target)), target
    assert "PRETRAINED" in " ".join(_instruction("ARG", TRAIN_TARGET))


def test_no_step_bind_mounts_from_another_stage():
    # buildah 1.28 (Debian 12's podman) cannot bind-mount from a stage it took from its
    # cache: the second image built (make container-check) found no wheels.
    runs = {run for stage in _dockerfile_stages().values() for k, run in stage if k == "RUN"}
    mounts = re.findall(r"--mount=\S+", " ".join(runs))
    assert mounts and not [m for m in mounts if "from=" in m], mounts


def test_the_build_context_holds_every_file_the_dockerfile_copies():
    # .dockerignore is an allowlist: a COPY or bind mount of a file left out of it fails
    # the build (as the proxy's nginx configuration once did).
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    runs = {run for stage in _dockerfile_stages().values() for k, run in stage if k == "RUN"}
    copies = {run for stage in _dockerfile_stages().values() for k, run in stage if k == "COPY"}
    sources = re.findall(r"--mount=type=bind,source=([^,\s]+)", " ".join(runs))
    for copy in copies - {c for c in copies if c.startswith("--from=")}:
        sources += copy.split()[:-1]
    assert sources
    for source in sources:
        source = source.rstrip("/")
        assert (ROOT / source).exists(), source
        assert [a for a in allowed if source == a or source.startswith(a + "/")], source


def test_the_wheel_stage_copies_every_package_pyproject_lists():
    # The build stage once lacked ktl/ (the Python API's collision-free name): pip could
    # not build the wheel, and only a real build (make container-check) showed it.
    import tomllib

    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    roots = {package.split(".")[0] for package in listed}
    build = dict.fromkeys(
        c.split()[0].rstrip("/") for k, c in _dockerfile_stages()["build"] if k == "COPY"
    )
    assert roots <= set(build), sorted(roots - set(build))


def test_every_install_takes_the_pinned_versions():
    (wheels,) = [run for run in _instruction("RUN", "build") if "pip wheel" in run]
    assert "-c constraints.txt" in wheels
    makefile = (ROOT / "Makefile").read_text()
    assert "-c $(CONSTRAINTS)" in makefile and "CONSTRAINTS := constraints.txt" in makefile
    assert (ROOT / "constraints.txt").is_file()


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
    """Every object of deploy/*.yaml by kind (the Job by its kind too)."""
    objects = {}
    for path in sorted((ROOT / "deploy").glob("*.yaml")):
        if path.name == MULTIWORKER:
            continue  # its own Service and Job, read by ``multiworker``
        for obj in yaml.safe_load_all(path.read_text()):
            if obj and obj["kind"] != "PersistentVolumeClaim":
                objects[obj["kind"]] = obj
            elif obj:
                objects[f"PersistentVolumeClaim/{obj['metadata']['name']}"] = obj
    return objects


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def _container(workload: dict) -> dict:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def _probe_port(probe: dict, container: dict) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    return {p["name"]: p["containerPort"] for p in container["ports"]}[port]


def test_dockerfile_is_what_the_deployments_assume(dockerfile):
    assert dockerfile["uid"] != 0
    assert dockerfile["health_path"] == "/healthz"
    assert dockerfile["store"] == dockerfile["volume"] == "/models"
    assert "serve" in dockerfile["cmd"]
    assert dockerfile["host"] == "0.0.0.0"  # reachable from outside the container


def test_deployment_probes_port_image_and_user_match_the_dockerfile(manifests, dockerfile):
    deployment = manifests["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    assert container["image"] == IMAGE
    assert [p["containerPort"] for p in container["ports"]] == [dockerfile["port"]]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == dockerfile["health_path"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert _probe_port(container[probe], container) == dockerfile["port"], probe
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"]) == (dockerfile["uid"], dockerfile["gid"])
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_deployment_environment_cannot_be_overridden_by_service_links(manifests, dockerfile):
    """A Service named ktl would inject KTL_PORT=tcp://..., which ktl reads."""
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in _container(manifests["Deployment"]).get("env", [])}
    assert pod.get("enableServiceLinks") is False or env.get("KTL_PORT") == str(dockerfile["port"])


def test_deployment_reads_the_store_claim_read_only(manifests, dockerfile):
    deployment = manifests["Deployment"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    (mount,) = [
        m for m in _container(deployment)["volumeMounts"] if m["mountPath"] == dockerfile["store"]
    ]
    assert mount["readOnly"] is True
    claim = volumes[mount["name"]]["persistentVolumeClaim"]
    assert claim["claimName"] == STORE_CLAIM
    assert f"PersistentVolumeClaim/{STORE_CLAIM}" in manifests


def test_service_routes_to_the_container_port(manifests, dockerfile):
    service, deployment = manifests["Service"], manifests["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    container = _container(deployment)
    (port,) = service["spec"]["ports"]
    assert _probe_port({"httpGet": {"port": port["targetPort"]}}, container) == dockerfile["port"]


def test_training_job_writes_into_the_store_claim(manifests, dockerfile):
    job = manifests["Job"]
    pod = job["spec"]["template"]["spec"]
    container = _container(job)
    assert container["image"] == TRAIN_IMAGE
    assert container["args"][:2] == ["ktl", "train"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsUser"] == dockerfile["uid"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == dockerfile["store"]]
    assert not mount.get("readOnly", False)
    assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] == STORE_CLAIM


def test_kustomization_lists_existing_files():
    kustomization = yaml.safe_load((ROOT / "deploy" / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (ROOT / "deploy" / resource).is_file(), resource


def test_compose_service_and_training_job_share_the_store(compose, dockerfile):
    services = compose["services"]
    service, train = services["service"], services["train"]
    assert (service["image"], service["build"]["target"]) == (IMAGE, SERVE_TARGET)
    assert (train["image"], train["build"]["target"]) == (TRAIN_IMAGE, TRAIN_TARGET)
    # `docker compose up` starts only the services without a profile: the service.
    assert [name for name, s in services.items() if not s.get("profiles")] == ["proxy", "service"]
    assert services["service"]["expose"] == [str(dockerfile["port"])]
    mounts = {
        name: {m["target"]: m for m in services[name]["volumes"]} for name in ("service", "train")
    }
    store = dockerfile["store"]
    assert mounts["service"][store]["read_only"] is True
    assert not mounts["train"][store].get("read_only", False)
    assert mounts["service"][store]["source"] == mounts["train"][store]["source"]
    assert mounts["train"][store]["source"] in compose["volumes"]
    assert train["command"][:3] == ["ktl", "train", "/data"]
    assert "/data" in mounts["train"]


def test_compose_publishes_only_the_buffering_proxy_in_front_of_the_service(compose, dockerfile):
    """Stalled clients reach nginx, never the service's threads (tests/e2e/test_slow_clients
    runs the same nginx file against them)."""
    services = compose["services"]
    proxy = services["proxy"]
    # and the training service, on loopback only: its dataset archives are over the
    # proxy's body limit (docs/jobs-kubernetes.md)
    assert [name for name, s in services.items() if s.get("ports")] == ["proxy", "training"]
    assert services["training"]["ports"][0].startswith("127.0.0.1:")
    assert proxy["build"]["target"] == "proxy" and proxy["depends_on"] == ["service"]
    (published,) = proxy["ports"]
    config = (ROOT / "deploy" / "nginx" / "ktl.conf").read_text()
    listen = re.search(r"listen (\d+);", config).group(1)
    assert published.startswith("127.0.0.1:") and published.rsplit(":", 1)[1] == listen
    assert re.search(r"server (\S+);", config).group(1) == f"service:{dockerfile['port']}"
    assert "proxy_request_buffering on;" in config
    stage = dict(_dockerfile_stages()["proxy"])
    assert "deploy/nginx/ktl.conf /etc/nginx/conf.d/" in stage["COPY"]
    assert stage["EXPOSE"] == listen
    upload_limit = ServiceConfig.model_fields["max_upload_mb"].default  # KTL_MAX_UPLOAD_MB
    body_limit = int(re.search(r"client_max_body_size (\d+)m;", config).group(1))
    # The proxy refuses what ktl would, with ktl's JSON (ktl's refusal of a body it
    # has not read would reach the client as nginx's 502).
    assert body_limit == upload_limit
    assert f"upload limit of {body_limit} MB" in config


def test_the_ingress_buffers_requests_and_routes_to_the_service(manifests):
    ingress, service = manifests["Ingress"], manifests["Service"]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "on"
    upload_limit = ServiceConfig.model_fields["max_upload_mb"].default  # KTL_MAX_UPLOAD_MB
    body_size = annotations["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert float(body_size.removesuffix("m")) == upload_limit
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    backend = path["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    # Nothing reaches the pods from outside but through the ingress.
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"


@pytest.fixture(scope="module")
def multiworker() -> dict[str, dict]:
    return {
        obj["kind"]: obj for obj in yaml.safe_load_all((ROOT / "deploy" / MULTIWORKER).read_text())
    }


def _tf_config_of_pod(container: dict, index: int, tmp_path: Path) -> tuple[dict, list[str]]:
    """Run the pod's shell script with a stand-in ``ktl`` that prints what it got."""
    fake = tmp_path / "ktl"
    fake.write_text('#!/bin/sh\nprintf \'%s\\n\' "$TF_CONFIG" "$@"\n')
    fake.chmod(0o755)
    env = {e["name"]: e["value"] for e in container["env"]}
    result = subprocess.run(
        container["args"],
        capture_output=True,
        text=True,
        check=True,
        env={**env, "JOB_COMPLETION_INDEX": str(index), "PATH": f"{tmp_path}:{os.environ['PATH']}"},
    )
    tf_config, *args = result.stdout.splitlines()
    return json.loads(tf_config), args


def test_multiworker_pods_get_a_tf_config_ktl_accepts(multiworker, tmp_path):
    from training.multiworker.cluster import read_tf_config

    job, service = multiworker["Job"], multiworker["Service"]
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    container = _container(job)
    workers = int({e["name"]: e["value"] for e in container["env"]}["WORKERS"])
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == workers
    (grpc,) = service["spec"]["ports"]
    for index in range(workers):
        config, args = _tf_config_of_pod(container, index, tmp_path)
        assert read_tf_config(json.dumps(config)) == (workers, index)
        # Indexed Job pods are <job>-<index>, resolvable under the headless Service
        assert config["cluster"]["worker"] == [
            f"{job['metadata']['name']}-{i}.{pod['subdomain']}:{grpc['port']}"
            for i in range(workers)
        ]
        assert args[:2] == ["train", "/data"] and "--strategy" in args
        assert args[args.index("--strategy") + 1] == "multiworker"
    assert (
        service["spec"]["clusterIP"] == "None" and pod["subdomain"] == service["metadata"]["name"]
    )
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["containerPort"] for p in container["ports"]] == [grpc["targetPort"]]


def test_multiworker_pods_share_the_store_and_image_of_the_single_job(multiworker, manifests):
    job = multiworker["Job"]
    pod, container = job["spec"]["template"]["spec"], _container(job)
    single = manifests["Job"]
    assert container["image"] == _container(single)["image"] == TRAIN_IMAGE
    assert pod["securityContext"] == single["spec"]["template"]["spec"]["securityContext"]
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert volumes[mounts["/models"]["name"]]["persistentVolumeClaim"]["claimName"] == STORE_CLAIM
    assert not mounts["/models"].get("readOnly", False)
    assert "--cache-dir" in container["args"][-1] and "/cache" in mounts
    claim = manifests[f"PersistentVolumeClaim/{STORE_CLAIM}"]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]  # pods on several nodes


def test_every_way_of_running_the_service_binds_all_interfaces_explicitly(dockerfile, compose):
    """ktl serve binds 127.0.0.1 by default; in a container that is unreachable, and
    the image's health check (which probes 127.0.0.1) would stay green regardless."""
    assert dockerfile["host"] == "0.0.0.0"
    assert compose["services"]["service"]["environment"]["KTL_HOST"] == "0.0.0.0"
    for path in ("deployment.yaml", "kserve-inferenceservice.yaml"):
        text = (ROOT / "deploy" / path).read_text()
        env = re.search(r"- name: KTL_HOST[^\n]*\n\s+value: \"([^\"]+)\"", text)
        assert env is not None and env.group(1) == "0.0.0.0", path
