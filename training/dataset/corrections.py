"""``ktl train --exclude CSV`` and ``--relabel CSV``: a doctor CSV (``ktl doctor``),
edited by a person, applied to the listing of DATA before anything is split.

``--exclude`` leaves out the files of the rows whose action is ``exclude``;
``--relabel`` gives the files of the rows whose action is ``relabel`` their
``suggested_label`` (as the person left it). One file may have several rows (a
label issue and a near-duplicate): it is left out if any row of an ``--exclude``
CSV says so, and a left-out file is not relabelled. What was applied (counts and
each CSV's sha256) goes into the bundle's ``dataset.corrections``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from collections import Counter
from pathlib import Path

from models.errors import UserError
from training.dataset.data import Listing, list_samples

# review: the doctor's suggestion from a weak probe, for a person to decide; like
# keep, neither CSV option acts on it
ACTIONS = ("relabel", "exclude", "review", "keep")
KINDS = ("label_issue", "near_duplicate", "odd_image")
REQUIRED = ("path", "suggested_label", "action")


class CorrectionsError(UserError, ValueError):
    """A doctor CSV that cannot be applied; the message names the file and line."""

    code = "invalid_corrections"


def data_root(data: str | Path) -> Path:
    """What a doctor CSV's paths are relative to: DATA, or the folder of a DATA CSV."""
    path = Path(data)
    return path.parent if path.is_file() else path


def read_rows(csv_path: str | Path, action: str) -> tuple[list[tuple[int, dict]], str]:
    """The ``(line, row)`` pairs of ``csv_path`` whose action is ``action``, and the
    file's sha256; every row's action is checked, not only those."""
    path = Path(csv_path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorrectionsError(f"--{action} {path}: cannot read it ({exc.strerror})") from exc
    try:
        reader = csv.DictReader(data.decode("utf-8-sig").splitlines())
        header = reader.fieldnames or []
        missing = [column for column in REQUIRED if column not in header]
        if missing:
            raise CorrectionsError(
                f"--{action} {path}: not a doctor CSV (no column {', '.join(missing)}); "
                "give the suspects.csv that ktl doctor wrote"
            )
        rows = []
        for line, row in enumerate(reader, start=2):
            chosen = (row.get("action") or "").strip().lower()
            if chosen not in ACTIONS:
                raise CorrectionsError(
                    f"{path}, line {line}: action {row.get('action')!r} is not one of "
                    f"{', '.join(ACTIONS)}"
                )
            if chosen == action:
                rows.append((line, row))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CorrectionsError(f"--{action} {path}: cannot read the CSV: {exc}") from exc
    return rows, hashlib.sha256(data).hexdigest()


def corrected_listing(
    data: str, exclude: str | None, relabel: str | None, *, confine: bool = False
) -> Listing:
    """The listing of ``data`` (``list_samples``, ``confine`` passed on) with the CSVs
    applied; ``listing.corrections`` says what."""
    listing = list_samples(data, confine=confine)
    if not exclude and not relabel:
        return listing
    root = data_root(data)
    by_path = {sample.path.resolve(): k for k, sample in enumerate(listing.samples)}
    corrections: dict = {}
    dropped: set[int] = set()
    if exclude:
        dropped, corrections["exclude"] = excluded(root, by_path, exclude)
    samples = list(listing.samples)
    if relabel:
        rows, digest = read_rows(relabel, "relabel")
        changes: Counter = Counter()
        for line, row in rows:
            k = _find(root, by_path, relabel, line, row)
            label = (row.get("suggested_label") or "").strip()
            if not label:
                raise CorrectionsError(f"{relabel}, line {line}: relabel with no suggested_label")
            if k not in dropped and samples[k].label != label:
                changes[f"{samples[k].label} -> {label}"] += 1
                samples[k] = dataclasses.replace(samples[k], label=label)
        corrections["relabel"] = {
            "csv": str(relabel),
            "sha256": digest,
            "rows": len(rows),
            "relabelled": sum(changes.values()),
            "changes": dict(changes),
        }
    kept = [sample for k, sample in enumerate(samples) if k not in dropped]
    return dataclasses.replace(
        listing,
        samples=kept,
        corrections=corrections,
        withheld=[listing.samples[k] for k in sorted(dropped)],
        original_labels={
            str(was.path): was.label
            for k, (was, now) in enumerate(zip(listing.samples, samples, strict=True))
            if k not in dropped and was.label != now.label
        },
    )


def excluded(root: Path, by_path: dict[Path, int], exclude: str) -> tuple[set[int], dict]:
    """The indices (``by_path``: resolved path -> index) the ``exclude`` rows of the
    CSV ``exclude`` name, and what to record of it (path, sha256, rows, excluded)."""
    rows, digest = read_rows(exclude, "exclude")
    dropped = {_find(root, by_path, exclude, line, row) for line, row in rows}
    record = {"csv": str(exclude), "sha256": digest, "rows": len(rows), "excluded": len(dropped)}
    return dropped, record


def _find(root: Path, by_path: dict[Path, int], csv_path: str, line: int, row: dict) -> int:
    name = (row.get("path") or "").strip()
    found = by_path.get((root / name).resolve()) if name else None
    if found is None:
        raise CorrectionsError(
            f"{csv_path}, line {line}: {name!r} is not an image of {root} (paths are relative "
            "to DATA; was this CSV written for another dataset?)"
        )
    return found


def describe(corrections: dict) -> list[str]:
    """One line per CSV applied, for the job's log."""
    lines = []
    if "exclude" in corrections:
        c = corrections["exclude"]
        lines.append(f"--exclude {c['csv']}: {c['excluded']} files left out")
    if "relabel" in corrections:
        c = corrections["relabel"]
        lines.append(f"--relabel {c['csv']}: {c['relabelled']} files relabelled")
    return lines
