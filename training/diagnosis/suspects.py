"""The doctor's findings, one row per suspect image and kind: label issues (by
confident learning on out-of-sample probabilities), near-duplicate groups and odd
images, each with the action suggested for the CSV a person edits.

Scores are in [0, 1], higher meaning more suspect, and mean per kind:
``label_issue`` 1 - the out-of-sample probability of the given label;
``near_duplicate`` the hash similarity to the group's kept image (1 - bits
apart / 64; 1.0 for identical files); ``odd_image`` 1.0 for a rule (tiny, long,
flat, grey) and, for an outlier, the share of images lying closer to their
neighbours in feature space.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.decision import SEPARATOR
from models.near_duplicates import HASH_BITS, MIN_CONTRAST, Look

ASPECT_LIMIT = 3.0  # longer side / shorter side above this: an extreme aspect ratio
TINY_SIDE = 16  # pixels: below this, or below half the input size, an image is tiny
GREY_SPREAD = 2.0  # mean |R-G| + |G-B| under this: the picture is grey
COLOUR_SET_SHARE = 0.8  # "grayscale in a colour set" needs this share of colour images
NEIGHBOURS = 5  # an outlier's distance is its mean cosine distance to this many nearest
# A placeholder ("image not found"): grey marks (text, an icon) on a flat grey
# background covering this share of the picture. In hymenoptera only its "WE'RE
# SORRY, THIS IMAGE COULD NOT BE FOUND" GIF passes (0.88; the next grey photo 0.53).
PLACEHOLDER_BACKGROUND = 0.8
OUTLIER_Z = 5.0  # robust z-score (median, MAD) of that distance above which it is flagged


def label_issue_rows(
    probabilities: np.ndarray, targets: np.ndarray, labels: Sequence[str], strong: bool = True
) -> list[dict]:
    """Confident learning (Northcutt et al. 2021, ``cleanlab``): the images whose
    given label the out-of-sample probabilities contradict, most suspect first.
    Suggested action: exclude from a ``strong`` probe (a person relabels after
    looking), else review: a weaker probe's suggestions are mostly wrong.

    The filter is the paper's own ``confident_learning`` (an image is an issue when
    the probe is confident of another label), not cleanlab's default
    ``prune_by_noise_rate``, which prunes as many images as the estimated noise
    rate: on hymenoptera with 10 % of the labels flipped, on EfficientNet-Lite0's
    ImageNet features, the default flagged correct hard photos too (precision
    0.72, recall 0.89) where this filter kept precision above 0.8 (measured by
    ``benchmarks/doctor_flips.py``, docs/doctor.md)."""
    from cleanlab.filter import find_label_issues

    # n_jobs=1: cleanlab would fork a pool of this TensorFlow process, whose workers
    # are then killed at exit (tracebacks on stderr) for a few milliseconds of work
    ranked = find_label_issues(
        targets,
        probabilities,
        filter_by="confident_learning",
        return_indices_ranked_by="self_confidence",
        n_jobs=1,
    )
    rows = []
    for i in ranked:
        others = probabilities[i].copy()
        others[targets[i]] = -1  # the suggestion is another label than the given one
        rows.append(
            {
                "index": int(i),
                "given_label": labels[targets[i]],
                "suggested_label": labels[int(others.argmax())],
                "kind": "label_issue",
                "score": round(1 - float(probabilities[i, targets[i]]), 4),
                "action": "exclude" if strong else "review",
                "reason": f"out-of-sample p({labels[int(others.argmax())]}) = "
                f"{others.max():.2f}, p(given) = {probabilities[i, targets[i]]:.2f}",
            }
        )
    return rows


def multilabel_issue_rows(
    probabilities: np.ndarray, targets: np.ndarray, labels: Sequence[str], strong: bool = True
) -> list[dict]:
    """Confident learning for multi-label data (cleanlab's
    ``multilabel_classification.filter.find_label_issues``, the same filter and
    ranking as ``label_issue_rows``, each label one-vs-rest): the images whose given
    label set the out-of-sample sigmoid probabilities contradict, most suspect first.
    The suggested set is the probe's (each label at 0.5), or the given set with its
    most contradicted label switched where the two agree; the score is 1 - the
    agreement of that most contradicted label (p where given, 1 - p where not)."""
    from cleanlab.multilabel_classification.filter import find_label_issues

    given = [[int(k) for k in np.flatnonzero(row >= 0.5)] for row in targets]
    ranked = find_label_issues(
        given,
        probabilities,
        filter_by="confident_learning",
        return_indices_ranked_by="self_confidence",
        n_jobs=1,  # as label_issue_rows
    )
    has = targets >= 0.5
    rows = []
    for i in ranked:
        agreement = np.where(has[i], probabilities[i], 1 - probabilities[i])
        worst = int(agreement.argmin())
        suggested = probabilities[i] >= 0.5
        if (suggested == has[i]).all():
            suggested[worst] = not has[i, worst]
        changed = np.flatnonzero(suggested != has[i])
        rows.append(
            {
                "index": int(i),
                "given_label": label_set(labels, has[i]),
                "suggested_label": label_set(labels, suggested),
                "kind": "label_issue",
                "score": round(1 - float(agreement[worst]), 4),
                "action": "exclude" if strong else "review",
                "reason": "; ".join(
                    f"out-of-sample p({labels[int(k)]}) = {probabilities[i, k]:.2f}, "
                    + ("given" if has[i, k] else "not given")
                    for k in changed
                ),
            }
        )
    return rows


def label_set(labels: Sequence[str], chosen: np.ndarray) -> str:
    """A label set as a CSV's ``labels`` cell writes it: ``;`` between, empty for none."""
    return SEPARATOR.join(labels[int(k)] for k in np.flatnonzero(chosen))


def duplicate_rows(
    groups: Sequence[Sequence[int]],
    looks: Sequence[Look],
    given: Sequence[str],
    splits: Sequence[str | None],
) -> tuple[list[dict], list[dict]]:
    """One row per member of each group (the largest picture kept, the others
    excluded), and the groups themselves with the splits they span."""
    rows, described = [], []
    for number, group in enumerate(groups, start=1):
        keep = max(group, key=lambda i: (looks[i].width * looks[i].height, -i))
        spans = sorted({s for s in (splits[i] for i in group) if s})
        for i in group:
            apart = int((looks[i].bits != looks[keep].bits).sum())
            rows.append(
                {
                    "index": i,
                    "given_label": given[i],
                    "suggested_label": given[keep],
                    "kind": "near_duplicate",
                    "score": round(1 - apart / HASH_BITS, 4),
                    "action": "keep" if i == keep else "exclude",
                    "reason": f"group {number}"
                    + (" (kept: the largest)" if i == keep else f", {apart} bits from the kept"),
                    "group": number,
                }
            )
        described.append(
            {
                "group": number,
                "members": list(group),
                "kept": keep,
                "labels": sorted({given[i] for i in group}),
                "splits": spans,
                "across_splits": "train" in spans and len(spans) > 1,
            }
        )
    return rows, described


def odd_rows(
    looks: Sequence[Look],
    given: Sequence[str],
    features: np.ndarray | None,
    image_size: tuple[int, int],
) -> list[dict]:
    """Tiny, extremely long, nearly uniform, grey in a colour set, or far from
    every other image in feature space: one row per image with all its reasons."""
    reasons: dict[int, list[str]] = {}
    tiny = max(TINY_SIDE, min(image_size) // 2)
    colour_set = np.mean([look.colourfulness >= GREY_SPREAD for look in looks]) >= COLOUR_SET_SHARE
    for i, look in enumerate(looks):
        found = []
        if min(look.width, look.height) < tiny:
            found.append(f"tiny ({look.width}x{look.height}, under {tiny} px)")
        ratio = max(look.width, look.height) / min(look.width, look.height)
        if ratio > ASPECT_LIMIT:
            found.append(f"extreme aspect ratio ({ratio:.1f}:1)")
        if look.spread < MIN_CONTRAST:  # a shape in another hue of the same brightness is not
            found.append(f"nearly uniform (colour std {look.spread:.1f})")
        grey = look.colourfulness < GREY_SPREAD
        if grey and look.spread >= MIN_CONTRAST and look.background >= PLACEHOLDER_BACKGROUND:
            found.append(
                f"placeholder or 'image not found' picture ({look.background:.0%} flat "
                "background with grey marks, e.g. text): not a photo of its class"
            )
        elif colour_set and grey:
            found.append("grayscale in a colour set")
        if found:
            reasons[i] = found
    scores = {i: 1.0 for i in reasons}
    if features is not None and len(features) > NEIGHBOURS + 1:
        for i, (z, share) in outliers(features).items():
            reasons.setdefault(i, []).append(f"outlier in feature space (robust z {z:.1f})")
            scores.setdefault(i, round(share, 4))
    return [
        {
            "index": i,
            "given_label": given[i],
            "suggested_label": given[i],
            "kind": "odd_image",
            "score": scores[i],
            # a blank picture or a placeholder teaches nothing; the others a person judges
            "action": "exclude" if any(r.startswith(_NOTHING_TO_LEARN) for r in found) else "keep",
            "reason": "; ".join(found),
        }
        for i, found in sorted(reasons.items())
    ]


_NOTHING_TO_LEARN = ("nearly uniform", "placeholder")


def outliers(features: np.ndarray) -> dict[int, tuple[float, float]]:
    """``{index: (robust z, share of images closer to their neighbours)}`` of the
    images whose mean cosine distance to their nearest neighbours is extreme."""
    unit = features / (np.linalg.norm(features, axis=1, keepdims=True) + 1e-12)
    distance = np.empty(len(unit))
    for start in range(0, len(unit), 1024):
        similarity = unit[start : start + 1024] @ unit.T
        for row in range(len(similarity)):
            similarity[row, start + row] = -np.inf  # not its own neighbour
        nearest = -np.partition(-similarity, NEIGHBOURS - 1, axis=1)[:, :NEIGHBOURS]
        distance[start : start + 1024] = 1 - nearest.mean(1)
    median = np.median(distance)
    spread = 1.4826 * np.median(np.abs(distance - median)) + 1e-9
    z = (distance - median) / spread
    share = np.argsort(np.argsort(distance)) / max(1, len(distance) - 1)
    return {int(i): (float(z[i]), float(share[i])) for i in np.flatnonzero(z > OUTLIER_Z)}
