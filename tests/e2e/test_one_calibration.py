"""One calibration whatever the entry point: the same images, options and seed
trained through the service's job queue and runner, and through ``ktl train``,
publish the same temperature and decision threshold. Both go through one
definition of the options (models.options), so neither path has defaults of
its own (issue 28: T 1.00 against 1.30 when the API's and the CLI's differed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cli import main
from models.bundle import read_metadata
from models.jobqueue.jobs import DATASET_DIR, JobQueue, check_options
from models.store import ModelStore
from tests.support.data import make_colour_dataset
from training.jobs.runner_child import run_child

pytestmark = pytest.mark.slow

# Only what a user would give: everything else is each interface's default.
OPTIONS = {"backbone": "smallcnn", "image_size": 32, "batch_size": 8, "epochs": 3, "seed": 7}


def published(store: Path, name: str) -> tuple[float, float]:
    version, folder = ModelStore(store).resolve(name)
    metadata = read_metadata(folder)
    assert metadata.calibration is not None and metadata.decision is not None, version
    return metadata.calibration.temperature, metadata.decision.threshold


def test_the_service_and_the_cli_publish_the_same_calibration(tmp_path, capsys):
    data = make_colour_dataset(tmp_path / "data", per_class=16)
    service_store, cli_store = tmp_path / "service", tmp_path / "cli"

    queue = JobQueue(service_store)
    job_id, folder = queue.reserve()
    shutil.copytree(data, folder / DATASET_DIR)  # as an upload: the same files elsewhere
    options = check_options({"name": "colours", **OPTIONS})
    queue.submit(job_id, options=options, data=folder / DATASET_DIR, source="upload", limit=4)
    assert run_child(job_id, service_store) == 0, queue.log_tail(job_id)

    flags = [f"--{key.replace('_', '-')}={value}" for key, value in OPTIONS.items()]
    argv = ["train", str(data), "--name", "colours", "--store", str(cli_store), *flags]
    assert main([*argv, "--json"]) == 0
    capsys.readouterr()

    service, cli = published(service_store, "colours"), published(cli_store, "colours")
    assert service == pytest.approx(cli, abs=1e-3), f"service {service}, cli {cli}"
