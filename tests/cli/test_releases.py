"""ktl label, versions, rollback and delete, run in this process on versions that
hold only their metadata (no TensorFlow): what a person reads, what --json says,
and the exit code of a refusal."""

from __future__ import annotations

import json

import pytest

from cli import main
from tests.support.tiny import publish_metadata_only


@pytest.fixture
def store(tmp_path) -> str:
    root = tmp_path / "store"
    publish_metadata_only(root, labels=["ant", "bee", "wasp"])  # 1: other classes
    for _ in range(3):
        publish_metadata_only(root)
    return str(root)


def ktl(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_label_says_what_moved_and_what_serves(store, capsys):
    code, out, _ = ktl(capsys, "label", "tiny", "stable", "2", "--store", store)
    assert code == 0
    assert "tiny stable: version 2" in out and "serves version 2 by default" in out
    assert "KTL_RELOAD_INTERVAL" in out


def test_a_canary_with_its_weight_in_json_and_in_the_table(store, capsys):
    ktl(capsys, "label", "tiny", "stable", "2", "--store", store)
    code, out, _ = ktl(
        capsys, "label", "tiny", "canary", "3", "--weight", "0.1", "--store", store, "--json"
    )
    result = json.loads(out)
    assert code == 0 and result["version_labels"] == {"stable": 2, "canary": 3}
    assert (result["canary_weight"], result["policy"]) == (0.1, "stable")
    assert [move["label"] for move in result["moves"]] == ["canary"]
    code, out, _ = ktl(capsys, "versions", "tiny", "--store", store)
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "canary 10%" in rows["3"] and rows["2"].rstrip().endswith("yes")
    assert rows["4"].split()[-1] == "-"  # no labels, no test figures, not the default


def test_a_move_to_other_classes_is_refused_with_exit_2_unless_forced(store, capsys):
    code, _, err = ktl(capsys, "label", "tiny", "stable", "1", "--store", store)
    assert code == 2 and "--force" in err and "class labels" in err
    code, out, _ = ktl(capsys, "label", "tiny", "stable", "1", "--force", "--store", store)
    assert code == 0 and "[forced]" in out


def test_rollback_returns_to_the_previous_stable_and_the_history_says_so(store, capsys):
    for version in ("2", "3"):
        ktl(capsys, "label", "tiny", "stable", version, "--store", store)
    code, out, _ = ktl(capsys, "rollback", "tiny", "--store", store)
    assert code == 0 and "stable: version 2 (was 3)" in out
    code, out, _ = ktl(capsys, "versions", "tiny", "--store", store, "--json")
    result = json.loads(out)
    assert result["default_version"] == 2
    assert [m["action"] for m in result["history"]] == ["set", "set", "rollback"]
    assert all(m["at"].endswith("Z") for m in result["history"])


def test_delete_refuses_the_default_unless_forced_and_never_reuses_its_number(store, capsys):
    code, _, err = ktl(capsys, "delete", "tiny", "--version", "4", "--store", store)
    assert code == 2 and "default version" in err and "--force" in err
    code, _, _ = ktl(capsys, "delete", "tiny", "--version", "4", "--force", "--store", store)
    assert code == 0
    code, out, _ = ktl(capsys, "versions", "tiny", "--store", store, "--json")
    assert [row["version"] for row in json.loads(out)["versions"]] == [3, 2, 1]
    assert publish_metadata_only(store) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["label", "tiny", "stable"], "give VERSION"),
        (["label", "tiny", "stable", "2", "--remove"], "give VERSION"),
        (["label", "tiny", "canary", "--remove"], "no label 'canary'"),
        (["label", "tiny", "Stable", "2"], "Stable"),
        (["label", "tiny", "stable", "9"], "no version 9"),
        (["label", "tiny", "stable", "2", "--weight", "0.5"], "--weight"),
        (["rollback", "tiny"], None),
        (["versions", "nothing"], "No model named 'nothing'"),
    ],
)
def test_mistakes_exit_2_with_a_message(store, capsys, args, message):
    code, _, err = ktl(capsys, *args, "--store", store)
    if message is None:  # rollback without stable: below the highest, which is fine
        assert code == 0
        return
    assert code == 2 and message in err, err
