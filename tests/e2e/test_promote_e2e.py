"""The real ``ktl train --promote-if-better``: a version that learnt next to nothing
stays out of stable, and the summary says so with both figures. The first, good
version is trained in the test's process (``ktl_here``): only the second run's
output is what a user reads."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import ktl, ktl_here
from tests.support.data import make_colour_dataset

pytestmark = pytest.mark.slow


def test_a_worse_version_is_published_but_kept_out_of_stable(tmp_path):
    data = make_colour_dataset(tmp_path / "data", per_class=12, size=16)
    store = str(tmp_path / "store")
    common = ["train", str(data), "--name", "colours", "--store", store,
              "--backbone", "smallcnn", "--image-size", "16", "--test-split", "0"]  # fmt: skip
    good = ktl_here(*common, "--epochs", "6", "--promote", "--json")  # in this process
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["release"]["stable"] == 1
    # A learning rate too small to move the weights: about chance.
    worse = ktl(*common, "--epochs", "1", "--lr", "1e-9", "--promote-if-better")
    assert worse.returncode == 0, worse.stderr
    assert "Published colours version 2" in worse.stdout
    assert "not promoted, version 1 stays stable: validation accuracy" in worse.stdout
    assert "serving     version 1 by default" in worse.stdout
    listing = ktl_here("versions", "colours", "--store", store, "--json")
    result = json.loads(listing.stdout)
    assert (result["default_version"], result["version_labels"]) == (1, {"stable": 1})
    assert [row["version"] for row in result["versions"]] == [2, 1]
