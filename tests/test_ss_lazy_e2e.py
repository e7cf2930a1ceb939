"""The model pool, schedules and the lazy penalty through fairseq's own fairseq-train: resume and 2 ranks."""
import json
import re
from pathlib import Path

import pytest

from tests.fairseq_tools import TINY_MODEL, TRAIN_COMMON, USER_DIR, run_data_parallel_train, run_fairseq
from tests.test_ddp import CPU_DDP

pytestmark = pytest.mark.slow  # end-to-end trainings (CONTRIBUTING.md: the fast loop)

ALL_OF_IT = ["--user-dir", USER_DIR, "--task", "translation_with_replacement", "--replace-pool", "model",
             "--replace-schedule", "inverse_sigmoid", "--replace-schedule-updates", "4", "--replace-sample-prob", "1",
             "--criterion", "label_smoothed_cross_entropy_with_gp", "--gp-interval", "2", "--gp-warmup-updates", "3",
             "--dropout", "0.1"]


def train_args(toy_bin, save_dir, max_update, *extra):
    return [toy_bin, *ALL_OF_IT, *TINY_MODEL, *TRAIN_COMMON, "--save-dir", save_dir, "--max-update", str(max_update),
            *extra]


def inner(log: str):
    """{update: (loss, gp or None, replaced)} from the train_inner lines."""
    out = {}
    for line in re.findall(r"train_inner \| .*", log):
        update = int(re.search(r"num_updates=(\d+)", line).group(1))
        gp = re.search(r"\bgp=([\d.eE+-]+)", line)
        out[update] = (float(re.search(r"\bloss=([\d.]+)", line).group(1)), gp and float(gp.group(1)),
                       float(re.search(r"replaced=([\d.]+)", line).group(1)))
    return out


def test_resume_continues_identically_with_model_pool_schedule_and_lazy_penalty(toy_bin, tmp_path):
    run_fairseq("train", train_args(toy_bin, tmp_path / "ck", 3))
    resumed = run_fairseq("train", train_args(toy_bin, tmp_path / "ck", 7))
    straight = run_fairseq("train", train_args(toy_bin, tmp_path / "straight", 7))
    after, whole = inner(resumed.stdout + resumed.stderr), inner(straight.stdout + straight.stderr)
    assert "@ 3 updates" in resumed.stdout + resumed.stderr and set(after) == {4, 5, 6, 7}
    for update in (4, 5, 6, 7):
        assert after[update] == whole[update], (after, whole)
    # fairseq logs num_updates after the update: update u+1's line is update_num u. Penalised: u = 2, 4, 6
    # (u = 0 has warm-up weight 0) -> lines 3, 5, 7 carry gp; the schedule starts at p_s = 0 (no replacement).
    assert [u for u in sorted(whole) if whole[u][1] is not None] == [3, 5, 7]
    assert whole[1][2] == 0.0 and whole[7][2] > 0.0


RECORD = """
import json, os
import fairseq_eb.criterions.label_smoothed_cross_entropy_with_gp as m
_orig = m.LabelSmoothedCrossEntropyWithGpCriterion.forward
def forward(self, model, sample, reduce=True):
    out = _orig(self, model, sample, reduce)
    if model.training:
        with open(os.environ["EB_OUT"] + "/rank" + os.environ["EB_RANK"] + ".jsonl", "a") as f:
            f.write(json.dumps({"update": self.num_updates, "penalised": out[2]["gp_sample_size"] > 0}) + "\\n")
    return out
m.LabelSmoothedCrossEntropyWithGpCriterion.forward = forward
"""


def test_lazy_penalty_identical_on_two_ranks_and_all_micro_batches(toy_bin, tmp_path, monkeypatch):
    monkeypatch.setenv("EB_OUT", str(tmp_path))
    run_data_parallel_train(train_args(toy_bin, tmp_path / "ck", 5, "--ddp-backend", "pytorch_ddp",
                                       "--gp-warmup-updates", "0", "--update-freq", "2"),
                            python_prelude=CPU_DDP + RECORD)
    ranks = [[json.loads(line) for line in Path(tmp_path, f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    expected = [{"update": u, "penalised": u % 2 == 0} for u in range(5) for _ in range(2)]  # 2 micro-batches
    assert ranks[0] == ranks[1] == expected

