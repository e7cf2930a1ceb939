"""translation_with_replacement through fairseq's own CLIs: preprocess -> train -> resume -> generate."""
import re
from pathlib import Path

import pytest

from tests.fairseq_tools import TINY_MODEL, TRAIN_COMMON, USER_DIR, run_data_parallel_train, run_fairseq

pytestmark = pytest.mark.slow  # end-to-end trainings (CONTRIBUTING.md: the fast loop)

TASK = ["--user-dir", USER_DIR, "--task", "translation_with_replacement"]


def train_args(toy_bin, save_dir, max_update, *extra):
    return [toy_bin, *TASK, *TINY_MODEL, *TRAIN_COMMON, "--save-dir", save_dir,
            "--max-update", str(max_update), *extra]


def inner_losses(log: str):
    """{update: loss} from fairseq's train_inner log lines."""
    found = re.findall(r"train_inner \| .*?loss=([\d.]+).*?num_updates=(\d+)", log)
    return {int(u): float(loss) for loss, u in found}


@pytest.fixture(scope="module")
def trained(toy_bin, tmp_path_factory):
    """6 updates, then a resume to 10, plus a straight run to 10 for comparison."""
    root = tmp_path_factory.mktemp("twr")
    first = run_fairseq("train", train_args(toy_bin, root / "ck", 6))
    resumed = run_fairseq("train", train_args(toy_bin, root / "ck", 10))
    straight = run_fairseq("train", train_args(toy_bin, root / "ck_straight", 10))
    return root, first, resumed, straight


def test_train_logs_replacement_share(trained):
    _, first, _, _ = trained
    log = first.stdout + first.stderr
    shares = [float(x) for x in re.findall(r"replaced=([\d.]+)", log)]
    assert shares, log[-2000:]
    # p_s * p_t = 15% of eligible tokens; the share is of all target tokens (EOS included): ~12%
    assert 5.0 < sum(shares) / len(shares) < 20.0


def test_resume_continues_with_identical_corruption_and_result(trained):
    root, _, resumed, straight = trained
    log_resumed = resumed.stdout + resumed.stderr
    assert "Loaded checkpoint" in log_resumed and "@ 6 updates" in log_resumed, log_resumed[-2000:]
    after_resume, uninterrupted = inner_losses(log_resumed), inner_losses(straight.stdout + straight.stderr)
    assert set(after_resume) == {7, 8, 9, 10}
    for update in (7, 8, 9, 10):
        assert after_resume[update] == uninterrupted[update], (after_resume, uninterrupted)


def test_generate_and_interactive_on_checkpoint(trained, toy_bin, tmp_path):
    root, _, _, _ = trained
    ckpt = root / "ck" / "checkpoint_best.pt"
    gen = run_fairseq("generate", [toy_bin, *TASK, "--path", ckpt, "--beam", "2", "--cpu",
                                   "--max-tokens", "500", "--gen-subset", "test"])
    assert len(re.findall(r"^H-\d+\t", gen.stdout, flags=re.M)) == 20
    query = tmp_path / "query.txt"
    query.write_text("w1 w2 w3 w4 w5\nw7 w8 w9\n")
    inter = run_fairseq("interactive", [toy_bin, *TASK, "--path", ckpt, "--beam", "2", "--cpu",
                                        "--source-lang", "src", "--target-lang", "tgt", "--input", query])
    assert len(re.findall(r"^H-\d+\t", inter.stdout, flags=re.M)) == 2


def test_options_in_help():
    out = run_fairseq("train", ["--user-dir", USER_DIR, "--task", "translation_with_replacement", "--help"]).stdout
    for flag in ("--replace-sample-prob", "--replace-token-prob", "--replace-pool", "--replace-warmup-updates",
                 "--replace-model-temperature", "--replace-schedule", "--replace-schedule-updates",
                 "--replace-schedule-shape"):
        assert flag in out


@pytest.mark.parametrize("flag,value,message", [
    ("--replace-sample-prob", "1.5", "--replace-sample-prob must be a probability in [0, 1], got 1.5"),
    ("--replace-warmup-updates", "-1", "--replace-warmup-updates must be an integer >= 0"),
    ("--replace-pool", "words", "invalid choice: 'words'"),
])
def test_bad_option_fails_before_training(toy_bin, tmp_path, flag, value, message):
    proc = run_fairseq("train", train_args(toy_bin, tmp_path / "ck", 2, flag, value), check=False)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "train_inner" not in proc.stdout + proc.stderr


RECORD_SEEDS = """
import json, os
from fairseq_eb.tasks.translation_with_replacement import TranslationWithReplacementTask as T
_orig = T.corrupt_sample
def _recording(self, sample, update_num, **kw):
    result = _orig(self, sample, update_num, **kw)
    with open(os.environ["EB_OUT"] + "/rank" + os.environ["EB_RANK"] + ".jsonl", "a") as f:
        f.write(json.dumps({"update": update_num, "rng": result.seed,
                            "prev": result.sample["net_input"]["prev_output_tokens"].tolist()}) + "\\n")
    return result
T.corrupt_sample = _recording
"""


def test_two_rank_data_parallel_ranks_draw_differently(toy_bin, tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("EB_OUT", str(tmp_path))
    run_data_parallel_train(train_args(toy_bin, tmp_path / "ck", 3, "--ddp-backend", "legacy_ddp"),
                            python_prelude=RECORD_SEEDS)
    ranks = [[json.loads(line) for line in Path(tmp_path, f"rank{r}.jsonl").read_text().splitlines()]
             for r in (0, 1)]
    assert [r["update"] for r in ranks[0]] == [r["update"] for r in ranks[1]] == [0, 1, 2]
    for a, b in zip(*ranks):
        assert a["rng"] != b["rng"]
    assert (tmp_path / "ck" / "checkpoint_last.pt").exists()
    # resuming with 2 ranks: rank 0 loads and broadcasts the state (omegaconf containers) to rank 1
    resumed = run_data_parallel_train(train_args(toy_bin, tmp_path / "ck", 5, "--ddp-backend", "legacy_ddp"),
                                      python_prelude=RECORD_SEEDS)
    assert "@ 3 updates" in resumed[0].stdout + resumed[0].stderr
    after = [json.loads(line)["update"] for line in Path(tmp_path, "rank1.jsonl").read_text().splitlines()]
    assert after == [0, 1, 2, 3, 4]
