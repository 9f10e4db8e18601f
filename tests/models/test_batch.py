"""The scoring job's parts without a model (models/batch/): what it lists from a
folder, a CSV and an fsspec prefix, how it shards, what a rerun reads back from the
output, and the progress line."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fsspec
import pytest

from models.batch.inputs import Inputs, list_inputs, parse_shard, shard_of
from models.batch.output import Writer, done_images, part_path
from models.batch.progress import Progress, eta
from models.errors import ConfigError


def _tree(root: Path) -> Path:
    for name in ("b.png", "a.jpg", "deep/er/c.PNG", "notes.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(name.encode())
    return root


def test_a_folder_lists_its_images_by_relative_path_and_reads_them(tmp_path):
    inputs = list_inputs(str(_tree(tmp_path / "in")))
    assert inputs.keys == ["a.jpg", "b.png", "deep/er/c.PNG"]
    assert inputs.read("deep/er/c.PNG") == b"deep/er/c.PNG"


def test_a_csv_lists_its_path_column_relative_to_its_folder(tmp_path):
    _tree(tmp_path)
    (tmp_path / "list.csv").write_text("label,path\nx,b.png\ny,deep/er/c.PNG\n")
    inputs = list_inputs(str(tmp_path / "list.csv"))
    assert inputs.keys == ["b.png", "deep/er/c.PNG"]  # the file's order
    assert inputs.read("b.png") == b"b.png"
    (tmp_path / "plain.csv").write_text("a.jpg\nb.png\n")
    assert list_inputs(str(tmp_path / "plain.csv")).keys == ["a.jpg", "b.png"]
    (tmp_path / "twice.csv").write_text("a.jpg\na.jpg\n")
    with pytest.raises(ConfigError, match="more than once"):
        list_inputs(str(tmp_path / "twice.csv"))


def test_a_url_prefix_is_listed_and_read_through_fsspec():
    fs = fsspec.filesystem("memory")
    for name in ("x/1.png", "x/sub/2.jpeg", "x/readme.md", "y/3.png"):
        fs.pipe(f"/score-test/{name}", name.encode())
    try:
        inputs = list_inputs("memory://score-test/x/")
        assert inputs.keys == ["1.png", "sub/2.jpeg"]
        assert inputs.read("sub/2.jpeg") == b"x/sub/2.jpeg"
        assert list_inputs("memory://score-test/nothing").keys == []
    finally:
        fs.rm("/score-test", recursive=True)


def test_something_else_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not a folder, a .csv file or a URL"):
        list_inputs(str(tmp_path / "missing"))


def test_shards_split_the_keys_whoever_lists_them():
    keys = [f"img/{i:05d}.png" for i in range(2000)]
    inputs = Inputs(keys, lambda key: b"")
    parts = [inputs.shard(i, 4).keys for i in range(4)]
    assert sorted(k for part in parts for k in part) == keys  # each key exactly once
    assert all(400 < len(part) < 600 for part in parts)  # roughly even
    # A pod that lists fewer (or more) images still gives each key the same shard.
    assert all(shard_of(k, 4) == i for i, part in enumerate(parts) for k in part[::7])


@pytest.mark.parametrize("text", ["4/4", "1", "-1/2", "a/b", "1/0"])
def test_a_bad_shard_is_refused(text):
    with pytest.raises(ConfigError, match="--shard"):
        parse_shard(text)


def test_each_shard_writes_its_own_part():
    assert part_path(Path("o/s.jsonl"), 0, 1) == Path("o/s.jsonl")
    assert part_path(Path("o/s.jsonl"), 2, 8) == Path("o/s-00002-of-00008.jsonl")


def _line(image: str, version: int = 1) -> dict:
    return {"image": image, "model": "m", "version": version, "predictions": []}


def test_a_rerun_skips_every_complete_line_and_cuts_a_torn_one(tmp_path):
    out = tmp_path / "o" / "s.jsonl"
    assert done_images(out, "m", 1) == set()
    writer = Writer(out)
    writer.write([_line("a.png"), {"image": "bad.png", "error": "x", "code": "invalid_image"}])
    writer.close()
    with open(out, "a") as f:
        f.write('{"image": "c.png", "mod')  # killed mid-write
    assert done_images(out, "m", 1) == {"a.png", "bad.png"}
    assert out.read_text().endswith("\n") and len(out.read_text().splitlines()) == 2
    writer = Writer(out)
    writer.write([_line("c.png")])
    writer.close()
    images = [json.loads(line)["image"] for line in out.read_text().splitlines()]
    assert images == ["a.png", "bad.png", "c.png"]


def test_a_file_of_another_version_or_not_of_ktl_score_is_refused(tmp_path):
    out = tmp_path / "s.jsonl"
    out.write_text(json.dumps(_line("a.png", version=2)) + "\n")
    with pytest.raises(ConfigError, match="m version 2 .* not m version 1"):
        done_images(out, "m", 1)
    out.write_text("path,label\n")
    with pytest.raises(ConfigError, match="line 1: not a line of ktl score"):
        done_images(out, "m", 1)


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_progress_line_gives_rate_and_eta():
    stream, clock = io.StringIO(), _Clock()
    progress = Progress(1000, stream, log_every=5.0, clock=clock)
    clock.now += 2.0
    progress.update(100, 1)
    assert stream.getvalue() == ""  # a log gets a line every 5 s, not every batch
    clock.now += 3.0
    progress.update(150, 0)
    assert stream.getvalue() == "scored 250/1,000 (25%) 50.0 images/s, ETA 0:00:15, 1 errors\n"
    assert eta(3725) == "1:02:05"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_line_is_redrawn_in_place_and_ends_with_a_newline():
    stream, clock = _Terminal(), _Clock()
    progress = Progress(10, stream, clock=clock)
    clock.now += 1.0
    progress.update(5, 0)
    progress.finish()
    drawn = stream.getvalue()
    assert drawn.startswith("\rscored 5/10 (50%) 5.0 images/s, ETA 0:00:01\033[K")
    assert drawn.count("\r") == 2 and drawn.endswith("\n") and drawn.count("\n") == 1
