"""Hostile inputs to fairseq's own commands with the plugin loaded (issue 22): one line, exit 2, no traceback.

Parse-time refusals are checked in-process through fairseq's (wrapped) parser; checkpoint refusals run the
real fairseq-generate / fairseq-train on the toy corpus, since the exit status is decided at the top level.
"""
import os
import sys
from pathlib import Path

import pytest
import torch
from fairseq import checkpoint_utils, options

from fairseq_eb.compat import CheckpointLoadError
from tests.fairseq_tools import SAFE_LOADING_BY_DEFAULT, TINY_MODEL, TRAIN_COMMON, USER_DIR, run_fairseq, torch_at_least

TASK = ["--task", "translation_with_replacement"]


def parse_train(argv, capsys):
    """fairseq-train's parsing with the plugin's validation; returns (exit code or None, stderr)."""
    try:
        options.parse_args_and_arch(options.get_training_parser(), ["/nonexistent-data", *argv])
        code = None
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def test_replacement_with_a_language_model_says_it_needs_an_encoder_decoder(capsys):
    code, err = parse_train([*TASK, "--arch", "transformer_lm", "--replace-pool", "model"], capsys)
    assert code == 2
    assert err.strip().endswith("error: --replace-pool model (the model's own guesses) needs an encoder-decoder model "
                                "such as --arch transformer; --arch transformer_lm is TransformerLanguageModel, "
                                "which has no encoder")
    assert len(err.strip().splitlines()) == 1
    code, err = parse_train([*TASK, "--arch", "transformer_lm"], capsys)
    assert code == 2 and "error: --task translation_with_replacement needs an encoder-decoder model" in err
    assert parse_train([*TASK, "--arch", "transformer", "--replace-pool", "model"], capsys)[0] is None


def test_restore_file_that_does_not_exist_is_refused(tmp_path, capsys):
    missing = tmp_path / "nonexistent.pt"
    code, err = parse_train(["--arch", "transformer", "--restore-file", str(missing)], capsys)
    assert code == 2
    assert err.strip().endswith(f"error: --restore-file {missing}: no such checkpoint file (fairseq would train from "
                                "scratch without a word); give an existing checkpoint, or leave the option out to "
                                "resume from SAVE_DIR/checkpoint_last.pt")
    (tmp_path / "there.pt").write_bytes(b"x")
    assert parse_train(["--arch", "transformer", "--restore-file", str(tmp_path / "there.pt")], capsys)[0] is None
    assert parse_train(["--arch", "transformer"], capsys)[0] is None  # the default checkpoint_last.pt


@pytest.mark.parametrize("argv,warning", [
    (["--replace-model-temperature", "0.5"],
     "warning: --replace-model-temperature 0.5 has no effect with --replace-pool target (it applies to "
     "--replace-pool model only)"),
    (["--replace-schedule", "linear", "--replace-schedule-updates", "10", "--replace-schedule-shape", "3"],
     "warning: --replace-schedule-shape 3.0 has no effect with --replace-schedule linear (it sets the steepness of "
     "the exponential and inverse_sigmoid schedules only)"),
])
def test_options_without_effect_get_a_one_line_warning(capsys, argv, warning):
    code, err = parse_train([*TASK, "--arch", "transformer", *argv], capsys)
    assert code is None
    assert [line for line in err.splitlines() if "warning:" in line] == [f"{Path(sys.argv[0]).name}: {warning}"]
    code, err = parse_train([*TASK, "--arch", "transformer", "--replace-pool", "model",
                             "--replace-model-temperature", "0.5", "--replace-schedule", "inverse_sigmoid",
                             "--replace-schedule-updates", "10", "--replace-schedule-shape", "3"], capsys)
    assert code is None and "warning:" not in err


class Payload:
    """Pickles to a call that would create a marker file when loaded unsafely."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.fixture
def evil(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": Payload(tmp_path / "PWNED")}, path)
    return path


def truncated(tmp_path, name="checkpoint_last.pt"):
    path = tmp_path / name
    buf_path = tmp_path / "whole.pt"
    torch.save({"model": {"w": torch.ones(64)}}, buf_path)
    path.write_bytes(buf_path.read_bytes()[:200])
    return path


def test_loader_turns_load_failures_into_one_line(tmp_path, evil):
    if torch_at_least(2, 6):
        with pytest.raises(CheckpointLoadError) as e:
            checkpoint_utils.load_checkpoint_to_cpu(str(evil))
        assert str(e.value) == (f"checkpoint {evil}: refused by safe loading: it holds posix.mkdir, which no fairseq "
                                "checkpoint holds, and nothing in it was run; load only checkpoints you made or trust")
        assert not (tmp_path / "PWNED").exists()
    cut = truncated(tmp_path)
    with pytest.raises(CheckpointLoadError) as e:
        checkpoint_utils.load_checkpoint_to_cpu(str(cut))
    assert str(e.value).startswith(f"checkpoint {cut}: truncated or not a torch checkpoint (RuntimeError: ")
    assert "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError):  # fairseq's own checks rely on it
        checkpoint_utils.load_checkpoint_to_cpu(str(tmp_path / "none.pt"))


def assert_one_line_exit_2(proc, expected_start: str) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert expected_start in last, last


@pytest.mark.skipif(not torch_at_least(2, 6), reason=SAFE_LOADING_BY_DEFAULT)
def test_generate_with_a_malicious_checkpoint(toy_bin, tmp_path, evil):
    proc = run_fairseq("generate", [toy_bin, "--user-dir", USER_DIR, "--path", evil, "--cpu", "--beam", "1",
                                    "--gen-subset", "test"], check=False)
    assert_one_line_exit_2(proc, f"error: checkpoint {evil}: refused by safe loading: it holds posix.mkdir")
    assert not (tmp_path / "PWNED").exists()


def train_argv(toy_bin, save_dir, *extra):
    return [toy_bin, "--user-dir", USER_DIR, *TINY_MODEL, *TRAIN_COMMON, "--task", "translation",
            "--criterion", "label_smoothed_cross_entropy", "--max-update", "1", "--save-dir", save_dir, *extra]


@pytest.mark.slow
@pytest.mark.skipif(not torch_at_least(2, 6), reason=SAFE_LOADING_BY_DEFAULT)
def test_train_with_a_malicious_restore_file(toy_bin, tmp_path, evil):
    proc = run_fairseq("train", train_argv(toy_bin, tmp_path / "ck", "--restore-file", evil), check=False)
    assert_one_line_exit_2(proc, f"error: checkpoint {evil}: refused by safe loading")
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.slow
def test_train_resuming_from_a_truncated_checkpoint_last(toy_bin, tmp_path):
    save_dir = tmp_path / "ck"
    save_dir.mkdir()
    cut = truncated(save_dir)
    before = cut.read_bytes()
    proc = run_fairseq("train", train_argv(toy_bin, save_dir), check=False)
    assert_one_line_exit_2(proc, f"error: checkpoint {cut}: truncated or not a torch checkpoint")
    assert cut.read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize("override,message", [
    ("++task.replace_token_prob=1.5", "task.replace_token_prob must be a probability in [0, 1], got 1.5"),
    ("++criterion.gp_epsilon=-1", "criterion.gp_epsilon must be a finite number >= 0, got -1.0"),
])
def test_hydra_train_refuses_out_of_range_values_in_one_line(toy_bin, tmp_path, override, message):
    """fairseq-hydra-train: the same validators, the option written as Hydra's key, exit 2 (not Hydra's traceback)."""
    import subprocess

    criterion = ["criterion._name=label_smoothed_cross_entropy_with_gp"] if "criterion" in override else []
    cmd = [sys.executable, "-m", "fairseq_cli.hydra_train", "task=translation",
           "task._name=translation_with_replacement", f"task.data={toy_bin}", f"common.user_dir={USER_DIR}",
           "model=transformer_lm/transformer_lm_gpt", "++model._name=transformer",
           "criterion=label_smoothed_cross_entropy",
           *criterion, "optimization.max_update=1", "common.cpu=true", "dataset.max_tokens=500", override,
           f"hydra.run.dir={tmp_path / 'hydra'}", f"checkpoint.save_dir={tmp_path / 'ck'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"fairseq-hydra-train: error: {message}"
    assert not list((tmp_path / "ck").glob("*.pt"))  # fairseq makes the directory first; nothing trained
