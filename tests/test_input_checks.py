"""The recipe's inputs checked before anything runs (issue 22): one line naming the file or option."""
import json
from pathlib import Path

import pytest

from fairseq_eb.recipe.configs import get_config
from fairseq_eb.recipe.input_checks import (
    blame,
    check_floor_cache,
    check_run_options,
    load_chosen_checked,
    train_options_error,
)
from fairseq_eb.recipe.methods import method_args
from fairseq_eb.recipe.run_steps import RunSpec


def chosen_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chosen.json"
    path.write_text(text)
    return path


def test_a_well_formed_chosen_file_loads_as_the_table_expects(tmp_path):
    path = chosen_file(tmp_path, json.dumps({"config": "tiny", "chosen": {
        "rr": {"variant": "vocab-pt0.1", "args": ["--replace-pool", "vocab"], "valid_rouge_l": 3.0},
        "baseline": {"variant": "default", "args": []}}}))
    assert load_chosen_checked(path) == {"rr": {"variant": "vocab-pt0.1", "args": ["--replace-pool", "vocab"]},
                                         "baseline": {"variant": "default", "args": []}}


@pytest.mark.parametrize("text,fault", [
    ('{"chosen": {', "not valid JSON (Expecting property name enclosed in double quotes: line 1 column 13 "
                     "(char 12)); a sweep writes"),
    ('{"config": "tiny"}', 'no "chosen" object; a sweep writes'),
    ('[1, 2]', 'no "chosen" object; a sweep writes'),
    ('{"chosen": {"rr": {"variant": "x"}}}', 'the entry of rr has no "args" list'),
    ('{"chosen": {"rr": ["--replace-pool", "vocab"]}}', 'the entry of rr has no "args" list'),
    ('{"chosen": {"rr": {"variant": "x", "args": "--replace-pool vocab"}}}',
     "\"args\" of rr must be a list of strings (fairseq options), got '--replace-pool vocab'"),
    ('{"chosen": {"rr": {"variant": "../x", "args": []}}}',
     "\"variant\" of rr must be a name usable as a directory, got '../x'"),
    ('{"chosen": {"magic": {"variant": "x", "args": []}}}', "unknown method 'magic'; valid methods are baseline"),
])
def test_a_malformed_chosen_file_is_one_line_naming_the_file(tmp_path, text, fault):
    path = chosen_file(tmp_path, text)
    with pytest.raises(ValueError) as e:
        load_chosen_checked(path)
    message = str(e.value)
    assert message.startswith(f"--chosen {path}: {fault}"), message
    assert "\n" not in message


def test_train_options_error_uses_fairseqs_parser_and_the_plugins_validators():
    cfg = get_config("tiny")
    tiny = list(cfg.train_args) + method_args("baseline", cfg)
    assert train_options_error(tiny) is None
    rr = list(cfg.train_args) + method_args("rr", cfg)
    assert train_options_error(rr + ["--replace-token-prob", "2"]) == (
        "--replace-token-prob must be a probability in [0, 1], got 2.0")
    assert "argument --max-update" in train_options_error(tiny + ["--max-update", "many"])


def run_spec(tmp_path: Path, method: str = "rr", variant_args=(), extra=()) -> RunSpec:
    return RunSpec(method=method, seed=1, data_dir=tmp_path, run_dir=tmp_path / "runs" / method, cfg=get_config("tiny"),
                   beams=[1], tokenize="word", device_args=["--cpu"], extra_train_args=tuple(extra),
                   variant_args=tuple(variant_args))


def test_check_run_options_blames_the_train_args(tmp_path):
    spec = run_spec(tmp_path, extra=["--replace-token-prob", "2"])
    with pytest.raises(ValueError) as e:
        check_run_options([spec], train_args="--replace-token-prob 2")
    assert str(e.value) == ("--train-args '--replace-token-prob 2': --replace-token-prob must be a probability in "
                            "[0, 1], got 2.0")
    assert not (tmp_path / "runs").exists()  # nothing written: settings.json comes later


def test_check_run_options_blames_the_chosen_file(tmp_path):
    path = tmp_path / "chosen.json"
    spec = run_spec(tmp_path, "gp", variant_args=["--gp-epsilon", "-1"])
    with pytest.raises(ValueError) as e:
        check_run_options([spec, spec], chosen_path=path)
    assert str(e.value) == f"--chosen {path} (gp): --gp-epsilon must be a finite number >= 0, got -1.0"
    with pytest.raises(ValueError) as e:  # the sweep: its own grid's variant
        check_run_options([spec])
    assert str(e.value) == "the sweep's variant runs (gp): --gp-epsilon must be a finite number >= 0, got -1.0"


def test_check_run_options_accepts_every_method_of_a_config(tmp_path):
    check_run_options([run_spec(tmp_path, m) for m in ("baseline", "rr", "gp", "ss")], train_args="")


def test_blame_takes_the_last_source_holding_the_flag():
    sources = [("config", ["--lr", "1"]), ("chosen", ["--lr", "2"]), ("train-args", ["--seed", "1"])]
    assert blame("--lr must be positive", sources) == "chosen"
    assert blame("something without a flag", sources) == "config"


def test_floor_of_another_experiment_is_refused_and_kept(tmp_path):
    out, data, other = tmp_path / "out", tmp_path / "data", tmp_path / "other"
    out.mkdir()
    check_floor_cache(out, data)  # no floor yet: fine
    floor = {"k": 10, "data": str(other.resolve()), "tokenize": "word"}
    (out / "floor.json").write_text(json.dumps(floor))
    before = (out / "floor.json").read_bytes()
    with pytest.raises(ValueError) as e:
        check_floor_cache(out, data)
    assert str(e.value) == (f"--out {out} holds an experiment on other data ({out / 'floor.json'} records "
                            f"{other.resolve()}, not {data.resolve()}); use a new --out directory, or delete "
                            f"{out / 'floor.json'} to replace it")
    assert (out / "floor.json").read_bytes() == before
    check_floor_cache(out, other)  # the same data: fine
