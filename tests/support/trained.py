"""The session's trained tiny bundle: what ``ktl train`` publishes, trained once in
the test's own process (TensorFlow is imported once) and shared by every test that
needs "a published, trained version" rather than a particular training run.

Tests that train on purpose (interrupts, resume, promotion, calibration, the
service's job queue) keep their own runs: this bundle stands for none of them."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.data import make_colour_dataset

if TYPE_CHECKING:
    from training.job import JobResult
    from training.multilabel.job import MultilabelResult

NAME = "colours"
# smallcnn from scratch on 3 colours x 45 images of 20 px, at 16 px: enough images
# for a validation and a test split, so the bundle carries every figure ktl records.
FLAGS = {"backbone": "smallcnn", "weights": "none", "image_size": 16, "epochs": 3, "patience": 3}
# The same flags as ``ktl train`` spells them, for a run like this one.
CLI_FLAGS = [f"--{key.replace('_', '-')}={value}" for key, value in FLAGS.items()]


@dataclass(frozen=True)
class Trained:
    """``NAME`` version 1 in ``store`` (never written to: copy it with ``copy_to``),
    trained on ``data`` (3 colours, 45 images each), with the job's ``summary``."""

    store: Path
    data: Path
    summary: JobResult | MultilabelResult
    name: str = NAME

    @property
    def bundle(self) -> Path:
        return self.store / self.name / "1"

    def copy_to(self, root: Path) -> Path:
        """A store of one's own holding this version (and nothing else): ``root``."""
        shutil.copytree(self.store, root)
        return root


def train(work: Path) -> Trained:
    """Train and publish ``NAME`` version 1 under ``work`` (``work/store``, ``work/data``)."""
    from training.config import build_config
    from training.job import run_job

    data = make_colour_dataset(work / "data", per_class=45, size=20)
    flags = {"data": str(data), "name": NAME, "store": str(work / "store"), **FLAGS}
    summary = run_job(build_config({}, flags), log=lambda message: None)
    return Trained(work / "store", data, summary)


MULTILABEL_NAME = "shapes"
# smallcnn from scratch on 160 multi-label shape images of 24 px: a published multi-label
# version with every figure (validation and test) and an INT8 engine, not a good model.
MULTILABEL_FLAGS = {**FLAGS, "image_size": 24, "min_steps": 0, "test_split": 0.2, "int8": True}


def train_multilabel(work: Path) -> Trained:
    """Train and publish ``MULTILABEL_NAME`` version 1 under ``work``; ``data`` is the
    CSV ``path,labels``."""
    from training.config import build_config
    from training.dataset.demo import make_multilabel_dataset
    from training.job import run_job

    data = make_multilabel_dataset(work / "data", images=160, size=24)
    flags = {"data": str(data), "name": MULTILABEL_NAME, "store": str(work / "store")}
    summary = run_job(build_config({}, {**flags, **MULTILABEL_FLAGS}), log=lambda message: None)
    return Trained(work / "store", data, summary, MULTILABEL_NAME)
