"""label_smoothed_cross_entropy_with_gp through fairseq's own CLIs: train -> validate -> generate, 2 ranks."""
import math
import re

import pytest

from tests.fairseq_tools import TINY_MODEL, TRAIN_COMMON, USER_DIR, run_data_parallel_train, run_fairseq

pytestmark = pytest.mark.slow  # end-to-end trainings (CONTRIBUTING.md: the fast loop)

GP = ["--user-dir", USER_DIR, "--criterion", "label_smoothed_cross_entropy_with_gp",
      "--attention-dropout", "0"]  # fairseq's default, spelled out: the fused-SDPA trap (docs/method.md §3.4)


def train_args(toy_bin, save_dir, max_update, *extra):
    return [toy_bin, *GP, *TINY_MODEL, *TRAIN_COMMON, "--save-dir", save_dir, "--max-update", str(max_update), *extra]


def inner_gp(log: str):
    return [float(x) for x in re.findall(r"train_inner \| .*?\bgp=([\d.eE+-]+|nan|inf)", log)]


@pytest.mark.parametrize("extra", [[], ["--gp-method", "fgm", "--gp-over", "table", "--label-smoothing", "0.1"]],
                         ids=["exact-lookups", "fgm-table"])
def test_train_logs_gp_column_and_validates_without_it(toy_bin, tmp_path, extra):
    proc = run_fairseq("train", train_args(toy_bin, tmp_path / "ck", 3, *extra))
    log = proc.stdout + proc.stderr
    gps = inner_gp(log)
    assert len(gps) == 3, log[-3000:]
    assert all(math.isfinite(g) and g > 0 for g in gps)
    valid = [line for line in log.splitlines() if "valid on 'valid' subset" in line]
    assert valid and " loss " in valid[-1] and " nll_loss " in valid[-1], log[-3000:]
    assert " gp " not in valid[-1]
    assert (tmp_path / "ck" / "checkpoint_last.pt").exists()


def test_composes_with_replacement_task_and_generate(toy_bin, tmp_path):
    task = ["--task", "translation_with_replacement"]
    proc = run_fairseq("train", train_args(toy_bin, tmp_path / "ck", 4, *task))
    log = proc.stdout + proc.stderr
    assert len(inner_gp(log)) == 4 and re.search(r"replaced=[\d.]+", log), log[-3000:]
    gen = run_fairseq("generate", [toy_bin, "--user-dir", USER_DIR, *task,
                                   "--path", tmp_path / "ck" / "checkpoint_last.pt",
                                   "--beam", "2", "--cpu", "--max-tokens", "500", "--gen-subset", "test"])
    assert len(re.findall(r"^H-\d+\t", gen.stdout, flags=re.M)) == 20, gen.stdout[-2000:]


def test_bad_option_fails_before_training(toy_bin, tmp_path):
    proc = run_fairseq("train", train_args(toy_bin, tmp_path / "ck", 2, "--gp-epsilon", "-1"), check=False)
    assert proc.returncode != 0
    assert "--gp-epsilon must be a finite number >= 0, got -1.0" in proc.stderr
    assert "train_inner" not in proc.stdout + proc.stderr


def test_two_rank_legacy_ddp_finishes(toy_bin, tmp_path):
    results = run_data_parallel_train(train_args(toy_bin, tmp_path / "ck", 3, "--ddp-backend", "legacy_ddp"))
    log0 = results[0].stdout + results[0].stderr
    gps = inner_gp(log0)
    assert len(gps) == 3 and all(math.isfinite(g) and g > 0 for g in gps), log0[-3000:]
    for rank, result in enumerate(results):
        assert f"distributed init (rank {rank})" in result.stdout + result.stderr
    assert (tmp_path / "ck" / "checkpoint_last.pt").exists()
