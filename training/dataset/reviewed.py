"""``ktl train DATA --add-reviewed MODEL``: the captures of MODEL that a person
labelled with ``ktl review`` (``models.capture.review.reviewed_images``), added to
DATA's listing.

How they are split: DATA's split is drawn on DATA as it is (as ``ktl evaluate`` and
``--promote-if-better`` draw it again), and each reviewed image is drawn after, by
the same seeded hash of its content at the shares DATA's draw used
(``training.dataset.splits.drawn_alike``). So a reviewed image has one split, a copy
of one of DATA's images lands where DATA's copy lands, adding reviews never moves
one of DATA's images, and the rules applied after the draw hold for them too: a
validation or test image that is a copy or a near-copy of a training image (DATA's
or reviewed) is left out. A reviewed label must be one of DATA's classes.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

from models.capture.folder import CaptureFolder
from models.capture.review import reviewed_images
from models.errors import ConfigError, UserError
from training.dataset.data import Listing, Sample


class NoReview(UserError):
    """``--add-reviewed`` with nothing to add: no capture folder, or no reviewed image."""

    code = "no_review"


def with_reviewed(listing: Listing, model: str, capture_dir: str | None) -> Listing:
    """``listing`` with the reviewed captures of ``model`` appended (their versions in
    ``listing.reviewed``, by path)."""
    if not capture_dir:
        raise ConfigError(
            f"--add-reviewed {model} reads the service's capture folder: give --capture-dir "
            "DIR or set KTL_CAPTURE_DIR"
        )
    if not Path(capture_dir).is_dir():
        raise ConfigError(f"--capture-dir {capture_dir}: no such folder")
    found = reviewed_images(CaptureFolder(Path(capture_dir)), model)
    if not found:
        raise NoReview(
            f"--add-reviewed {model}: no reviewed captures of {model} in {capture_dir}; "
            f"label some first with ktl review {model}"
        )
    classes = {sample.label for sample in listing.samples}
    strangers = Counter(image.label for image in found if image.label not in classes)
    if strangers:
        named = ", ".join(f"{label!r} ({n})" for label, n in sorted(strangers.items()))
        raise ConfigError(
            f"--add-reviewed {model}: reviewed labels that are not classes of the data: "
            f"{named}; the classes are {', '.join(sorted(classes))}. Add a folder of images "
            "for a new class to the data, or label those captures again"
        )
    added = [Sample(image.path, image.label) for image in found]
    return dataclasses.replace(
        listing,
        samples=[*listing.samples, *added],
        reviewed={str(image.path): image.version for image in found},
        review_model=model,
    )
