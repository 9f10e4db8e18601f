"""Only the store package (``models/store/``) knows where things are on disk: no other
module of the product joins a store root with a model name or version, or spells the
store's hidden folders and record files (issue 27)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "training", "service", "cli")
OWNER = ROOT / "models" / "store"
# What building a store path by hand looks like.
STORE_JOINS = {
    "a path joined with a version": re.compile(r"/\s*str\(\s*[\w.]*version\s*\)"),
    "a store root joined by hand": re.compile(
        r"(?<![\w\"'/])(store|store_root|model_store)(\.root)?\s+/\s"
        r"|Path\(\s*[\w.]*store[\w.]*\s*\)\s*/"
    ),
    "a name of the store's layout": re.compile(
        r"[\"'](\.jobs|\.queue|\.staging|labels\.json|\.labels\.lock|\.runner\.lock|job\.json"
        r"|state-owned|progress\.json|epochs_[{*])"
    ),
    "a lock file's name": re.compile(r"\.lock[\"']"),
}
# Lines that match but build no store path: (module, the line), with why.
NOT_THE_STORE = {
    # `ktl export` lays its own output folder out as a TF Serving base path.
    ("models/engines/export.py", "return Path(out) / bundle.name / str(bundle.version)"),
}


def store_joins(text: str) -> list[str]:
    """``what: line`` for each line of ``text`` that builds a store path by hand."""
    return [
        f"{what}: {line.strip()}"
        for line in text.splitlines()
        for what, pattern in STORE_JOINS.items()
        if pattern.search(line)
    ]


@pytest.mark.parametrize(
    "line",
    [
        # Each of these was in the code before the store package owned the paths.
        "return version, store.root / name / str(version)",
        "path = model_store.root / job.name / str(version) / METADATA_FILE",
        "path = store.root / validate_name(name)",
        "return self.store.root / name / str(version)",
        'lock_path = root.parent / f"{root.name}.lock"',
        'return self.root / _JOBS / validate_name(name)  # _JOBS = ".jobs"',
        'QUEUE_DIR = ".queue"',
        'path = self.folder(job_id) / "job.json"',
        'earlier = state.read(f"epochs_{phase.name}.json") or []',
        'progress = state.read("progress.json") or {"done": [], "history": []}',
        'with open(self.root / ".runner.lock", "w") as lock:',
        "root = Path(store_root) / QUEUE_DIR",
    ],
)
def test_the_pattern_catches_hand_built_store_paths(line):
    assert store_joins(line), line


@pytest.mark.parametrize(
    "line",
    [
        "return version, store.version_dir(name, version)",
        "root = ModelStore(store).job_dir(job.name)",
        "lock_path = job_lock_for(root)",
        "found = by_path.get((root / name).resolve()) if name else None",
        'bundle = load_bundle("model_store/demo/1")',
        'if phase.get("epochs_asked"):',
        'print(f"Deleted {args.name} version {args.version} from {store.root}")',
    ],
)
def test_the_pattern_leaves_store_calls_and_other_folders_alone(line):
    assert store_joins(line) == []


def test_no_module_outside_the_store_package_builds_a_store_path():
    found = [
        f"{path.relative_to(ROOT)}: {hit}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if OWNER not in path.parents
        for hit in store_joins(path.read_text(encoding="utf-8"))
        if (str(path.relative_to(ROOT)), hit.split(": ", 1)[1]) not in NOT_THE_STORE
    ]
    assert found == [], "ask models.store (ModelStore, QueuePaths) for these paths:\n" + "\n".join(
        found
    )
