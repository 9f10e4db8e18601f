"""The one definition of the training options (models.options.TrainOptions): no
TensorFlow to import it, and the CLI's flags, the TOML job file and the HTTP options
with their OpenAPI schema all generated from it."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from cli.commands.train import add_train_options
from models.errors import ConfigError
from models.jobqueue.jobs import InvalidOptions, check_options
from models.options import TrainOptions, extra, http_options, http_options_schema
from service.jobs_api.job_bodies import JobRequest
from training.config import build_config, read_toml

FIELDS = list(TrainOptions.model_fields)


def test_importing_the_options_imports_no_tensorflow():
    code = (
        "import sys\nimport models.options, training.config\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ktl train")
    add_train_options(parser)
    return parser


def test_every_option_is_a_flag_whose_help_shows_its_default():
    actions = {action.dest: action for action in train_parser()._actions}
    for name in FIELDS:
        assert name in actions, f"no flag for {name}"
        field = TrainOptions.model_fields[name]
        if field.is_required():
            continue
        shown = extra(name)["shown"]
        if shown is None:
            shown = (
                ("on" if field.default else "off") if field.annotation is bool else field.default
            )
        assert f"(default: {shown})" in str(actions[name].help).replace("%%", "%"), name
    assert "(default: efficientnet_lite0" in str(actions["backbone"].help)


def test_every_flag_is_an_option():
    """Nothing restated beside TrainOptions: the parser's settings are its fields, but
    for --capture-dir, a folder of this machine like --store's $KTL_MODEL_STORE (the
    default is $KTL_CAPTURE_DIR), which no job file or HTTP request names."""
    dests = {action.dest for action in train_parser()._actions}
    assert dests - set(FIELDS) == {"help", "config", "json", "capture_dir"}


def test_every_option_is_a_key_of_the_job_file(tmp_path):
    job = tmp_path / "job.toml"
    lines = [f"{name.replace('_', '-')} = 1" for name in FIELDS]  # values are checked later
    job.write_text("\n".join(lines) + "\n")
    assert set(read_toml(job)) == set(FIELDS)


def test_the_http_options_are_the_fields_marked_so_in_the_allow_list_and_the_schema():
    marked = [name for name in FIELDS if extra(name)["http"]]
    assert list(http_options()) == marked
    schema = http_options_schema()
    assert list(schema["properties"]) == marked and schema["additionalProperties"] is False
    assert schema["properties"]["epochs"]["anyOf"][0] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 10_000,
    }
    assert schema["properties"]["backbone"]["default"] == "efficientnet_lite0"
    document = JobRequest.model_json_schema()["properties"]["options"]
    assert document["properties"] == schema["properties"]


@pytest.mark.parametrize(
    ("cli", "toml", "http"),
    [
        ("--epochs 0: must be from 1 to 10,000", "epochs = 0: must be", "options.epochs = 0"),
        ("--dropout 1.0: must be", "dropout = 1.0: must be", "options.dropout = 1.0: must be"),
    ],
)
def test_one_range_in_the_words_of_each_interface(tmp_path, cli, toml, http):
    key, value = http.removeprefix("options.").split(":")[0].split(" = ")
    number = int(value) if value.isdigit() else float(value)
    with pytest.raises(ConfigError, match=cli):
        build_config({}, {"data": "d", "name": "n", key: number})
    job = tmp_path / "job.toml"
    job.write_text(f"{key} = {value}\n")
    with pytest.raises(ConfigError, match=toml):
        build_config(read_toml(job), {"data": "d", "name": "n"})
    with pytest.raises(InvalidOptions, match=http):
        check_options({"name": "n", key: number})


def test_a_misspelt_option_gets_the_closest_name_in_the_job_file_and_over_http(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text("epoch = 3\n")
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        read_toml(job)
    with pytest.raises(InvalidOptions, match="did you mean 'epochs'"):
        check_options({"name": "n", "epoch": 3})


def test_add_reviewed_reads_a_server_folder_so_http_refuses_it(tmp_path):
    """Like --exclude (a CSV of the server), --add-reviewed reads the service's capture
    folder: a job file may name it, HTTP may not; the folder is this machine's setting
    (--capture-dir, $KTL_CAPTURE_DIR), in no job file."""
    for key in ("add_reviewed", "capture_dir"):
        with pytest.raises(InvalidOptions, match=f"options \\['{key}'\\] cannot be set over HTTP"):
            check_options({"name": "n", key: "flowers"})
    job = tmp_path / "job.toml"
    job.write_text('add-reviewed = "flowers"\n')
    assert read_toml(job) == {"add_reviewed": "flowers"}
    job.write_text('capture-dir = "/srv/capture"\n')
    with pytest.raises(ConfigError, match="unknown settings \\['capture_dir'\\]"):
        read_toml(job)


def test_the_capture_folder_is_ktl_capture_dir_only_for_add_reviewed(tmp_path, monkeypatch):
    from cli.commands.train import train_config
    from cli.main import build_parser
    from cli.settings import CliSettings

    monkeypatch.setenv("KTL_CAPTURE_DIR", str(tmp_path / "capture"))
    parser = build_parser(CliSettings.from_env())
    common = ["train", "d", "--name", "n", "--backbone", "smallcnn"]
    assert train_config(parser.parse_args(common)).capture_dir is None  # not read, not kept
    reviewing = train_config(parser.parse_args([*common, "--add-reviewed", "bees"]))
    assert reviewing.capture_dir == str(tmp_path / "capture")
    given = parser.parse_args([*common, "--add-reviewed", "bees", "--capture-dir", "/c"])
    assert train_config(given).capture_dir == "/c"  # the flag wins
    job = tmp_path / "job.toml"
    job.write_text('add_reviewed = "bees"\n')
    from_file = train_config(parser.parse_args([*common, "--config", str(job)]))
    assert (from_file.add_reviewed, from_file.capture_dir) == ("bees", str(tmp_path / "capture"))
