"""One settings object per kind of process (models/settings.py): the service's
ServiceConfig, the job runner's RunnerSettings, the command line's CliSettings.
Each KTL_ variable is defined once, read only by them, and documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli.main import main as ktl
from cli.settings import CliSettings
from models.errors import ConfigError
from models.settings import KtlSettings
from service.config import ServiceConfig
from training.jobs.runner import main as runner_main
from training.jobs.runner import make_launcher
from training.jobs.settings import RunnerSettings

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = (ServiceConfig, RunnerSettings, CliSettings)
SETTINGS_MODULES = {
    "models/settings.py",
    "service/config.py",
    "training/jobs/settings.py",
    "cli/settings.py",
}
# Modules that may read a KTL_ variable from the environment themselves, and why.
READ_ELSEWHERE: dict[str, str] = {}
# A read of the environment that names a KTL_ variable on the same line.
ENV_READ = re.compile(r"(environ\.get|environ\[|getenv)\(?\s*[\"']KTL_")
# compose.yaml's own variables: documented, read by compose, never by ktl's code.
COMPOSE_ONLY = {"KTL_DATA", "KTL_MODEL_NAME", "KTL_BACKBONE", "KTL_WEIGHTS", "KTL_HTTP_PORT"}


def variables(settings: type[KtlSettings]) -> set[str]:
    return {settings.variable(name) for name in settings.model_fields}


def test_no_module_outside_the_settings_reads_a_ktl_variable():
    readers = sorted(
        str(path.relative_to(ROOT))
        for package in ("models", "training", "service", "cli")
        for path in (ROOT / package).rglob("*.py")
        if str(path.relative_to(ROOT)) not in SETTINGS_MODULES | set(READ_ELSEWHERE)
        and ENV_READ.search(path.read_text(encoding="utf-8"))
    )
    gunicorn = (ROOT / "service" / "gunicorn.conf.py").read_text(encoding="utf-8")
    assert readers == [] and not ENV_READ.search(gunicorn)


def test_the_pattern_finds_a_read():
    assert ENV_READ.search('kind = os.environ.get("KTL_JOB_RUNNER", "")')
    assert ENV_READ.search("os.environ['KTL_PORT']")
    assert not ENV_READ.search('env = {"KTL_MODEL_STORE": settings.store}')


def documented() -> set[str]:
    rows = [
        line
        for name in ("configuration.md", "jobs-kubernetes.md")
        for line in (ROOT / "docs" / name).read_text(encoding="utf-8").splitlines()
        if line.startswith("| `KTL_")
    ]
    names = {name for row in rows for name in re.findall(r"`(KTL_\w+)`", row.split("|")[1])}
    return names - COMPOSE_ONLY


def test_every_variable_read_is_documented_and_every_documented_one_is_read():
    read = set().union(*(variables(settings) for settings in PROCESSES))
    assert sorted(read - documented()) == [], "read by ktl, missing from docs/"
    assert sorted(documented() - read) == [], "documented, read by no settings object"


def shared() -> list[tuple[str, str, type[KtlSettings], type[KtlSettings]]]:
    pairs = []
    for i, first in enumerate(PROCESSES):
        for second in PROCESSES[i + 1 :]:
            for name in sorted(set(first.model_fields) & set(second.model_fields)):
                pairs.append((name, first.variable(name), first, second))
    return pairs


def test_the_shared_variables_are_the_ones_the_issue_names():
    names = {variable for _, variable, _, _ in shared()}
    assert {"KTL_MODEL_STORE", "KTL_JOB_RUNNER", "KTL_INT8_MIN_AGREEMENT"} <= names


@pytest.mark.parametrize(
    "value", ["", " ", "local", " kubernetes ", "none", "docker", "x", "0.5", "2", "-1", "/s"]
)
@pytest.mark.parametrize(("name", "variable", "first", "second"), shared())
def test_a_shared_variable_is_read_alike_by_every_process(name, variable, first, second, value):
    answers = []
    for settings in (first, second):
        try:
            answers.append(getattr(settings.from_env({variable: value}), name))
        except ConfigError as exc:
            answers.append(str(exc))
    assert answers[0] == answers[1]
    assert first.model_fields[name].default == second.model_fields[name].default


def test_the_job_runner_takes_the_services_values():
    for kind in ("local", "kubernetes", "none"):
        assert RunnerSettings.from_env({"KTL_JOB_RUNNER": kind}).job_runner == kind
        assert ServiceConfig.from_env({"KTL_JOB_RUNNER": kind}).job_runner == kind
    with pytest.raises(ConfigError, match="none means no runner"):
        make_launcher("store", settings=RunnerSettings(job_runner="none"))


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KTL_JOB_THREADS", "0"),
        ("KTL_JOB_THREADS", "many"),
        ("KTL_JOB_NICE", "25"),
        ("KTL_K8S_CPU", "two"),
        ("KTL_JOB_RUNNER", "docker"),
    ],
)
def test_a_bad_runner_setting_names_the_variable(variable, value):
    with pytest.raises(ConfigError) as caught:
        RunnerSettings.from_env({variable: value})
    message = str(caught.value)
    assert f"{variable}={value!r} is not valid" in message and "default" in message


def test_runner_defaults_and_blank_values():
    settings = RunnerSettings.from_env({"KTL_JOB_THREADS": "", "KTL_JOB_NICE": " "})
    assert (settings.job_threads, settings.job_nice, settings.job_runner) == (None, 10, "local")
    assert settings.threads >= 1
    assert RunnerSettings.from_env({"KTL_JOB_THREADS": "3"}).threads == 3


def test_the_runner_refuses_a_bad_setting_at_its_start(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KTL_JOB_RUNNER", "docker")
    assert runner_main(["--store", str(tmp_path), "--once"]) == 2
    assert "KTL_JOB_RUNNER='docker' is not valid" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variable", "value"), [("KTL_MODEL_STORE", " "), ("KTL_INT8_MIN_AGREEMENT", "1.5")]
)
def test_ktl_refuses_a_bad_setting_naming_it(monkeypatch, capsys, variable, value):
    monkeypatch.setenv(variable, value)
    assert ktl(["models"]) == 2
    assert f"ktl: error: {variable}={value!r} is not valid" in capsys.readouterr().err


def test_the_settings_are_read_from_the_environment_only_by_from_env(monkeypatch):
    monkeypatch.setenv("KTL_TOP_K", "3")
    assert ServiceConfig().top_k == 5  # constructed: the defaults, no environment
    assert ServiceConfig.from_env().top_k == 3
