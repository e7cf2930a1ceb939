"""The table recipe: aggregation/table maths, the floor, option validation, and one tiny end-to-end run
(train → generate → score → table/JSON/plot) whose second invocation must skip every finished step."""
import json
import math
from pathlib import Path

import pytest

from fairseq_eb.recipe import aggregate, floor
from fairseq_eb.recipe.configs import CONFIGS, get_config
from fairseq_eb.recipe.methods import check_methods, method_args, option_set
from fairseq_eb.recipe.table import main

# ---------------------------------------------------------------- aggregation and tables (pure)

def test_mean_std_is_sample_std():
    mean, std = aggregate.mean_std([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    assert std == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    assert aggregate.mean_std([5.0]) == (5.0, None)
    with pytest.raises(ValueError):
        aggregate.mean_std([])


def _scores():
    # method -> beam -> seed -> metrics
    def m(rl):
        return {"rouge-l": rl, "rouge-1": rl + 1, "rouge-2": rl - 1, "bleu": rl / 2}
    return {"baseline": {1: {1: m(10.0), 2: m(12.0)}, 2: {1: m(11.0), 2: m(11.0)}},
            "rr": {1: {1: m(14.0), 2: m(16.0)}, 2: {1: m(13.0), 2: m(15.0)}}}


def test_summarise_and_reference_table():
    summary = aggregate.summarise(_scores(), ["rouge-l", "rouge-1", "rouge-2", "bleu"])
    assert summary["rr"][1]["rouge-l"]["mean"] == pytest.approx(15.0)
    assert summary["rr"][1]["rouge-l"]["std"] == pytest.approx(math.sqrt(2))
    assert summary["baseline"][2]["bleu"]["std"] == pytest.approx(0.0)
    assert summary["baseline"][1]["rouge-l"]["values"] == [10.0, 12.0]
    table = aggregate.reference_table(summary, ["baseline", "rr"], {"baseline": "baseline", "rr": "RR"}, [1, 2], "toy")
    lines = table.splitlines()
    assert lines[0] == "| data | beam | method | ROUGE-L | ROUGE-1 | ROUGE-2 | BLEU |"
    assert lines[2] == ("| toy | 1 | baseline / RR | 11.00 ± 1.41 / 15.00 ± 1.41 | 12.00 ± 1.41 / 16.00 ± 1.41 "
                        "| 10.00 ± 1.41 / 14.00 ± 1.41 | 5.50 ± 0.71 / 7.50 ± 0.71 |")
    assert len(lines) == 4


def test_long_table_deltas_and_floor():
    summary = aggregate.summarise(_scores(), ["rouge-l", "rouge-1", "rouge-2", "bleu"])
    text = aggregate.long_table(summary, ["baseline", "rr"], {"baseline": "baseline", "rr": "RR"}, [1, 2],
                                floor={"rouge-l": 9.0, "rouge-1": 9.5, "rouge-2": 3.0, "bleu": 2.25},
                                floor_label="first 3")
    rows = text.splitlines()
    assert rows[3].startswith("| 1 | RR | 15.00 ± 1.41 |") and "| +4.00 | 2 |" in rows[3]
    assert rows[5].startswith("| 2 | RR |") and "| +3.00 | 2 |" in rows[5]
    assert rows[-1] == "| – | first 3 | 9.00 | 9.50 | 3.00 | 2.25 | | |"
    assert aggregate.fmt(3.14159, None) == "3.14"


def test_paired_delta_pairs_by_seed_and_states_a_plain_verdict():
    scores = _scores()
    # seed 3 only in rr: ignored (no baseline to pair with); beam 2: rr - baseline = +2, +4 -> better in every seed
    scores["rr"][1][3] = {"rouge-l": 99.0, "rouge-1": 0.0, "rouge-2": 0.0, "bleu": 0.0}
    summary = aggregate.summarise(scores, ["rouge-l", "rouge-1", "rouge-2", "bleu"])
    d = aggregate.paired_delta(summary, "rr", 2)
    assert d["deltas"] == [2.0, 4.0] and d["mean"] == pytest.approx(3.0) and d["std"] == pytest.approx(math.sqrt(2))
    assert (d["up"], d["n"], d["verdict"]) == (2, 2, "better in every seed")
    assert aggregate.paired_delta(summary, "rr", 1)["deltas"] == [4.0, 4.0]
    assert aggregate.paired_delta(summary, "baseline", 1) is None
    mixed = {"baseline": {1: {1: {"rouge-l": 10.0}, 2: {"rouge-l": 10.0}}},
             "gp": {1: {1: {"rouge-l": 11.0}, 2: {"rouge-l": 9.0}}}}
    mixed_summary = aggregate.summarise(mixed, ["rouge-l"])
    assert aggregate.paired_delta(mixed_summary, "gp", 1)["verdict"] == "mixed: within seed noise"
    worse = aggregate.summarise({"baseline": mixed["baseline"], "gp": {1: {1: {"rouge-l": 9.0}, 2: {"rouge-l": 8.0}}}},
                                ["rouge-l"])
    assert aggregate.paired_delta(worse, "gp", 1)["verdict"] == "worse in every seed"
    table = aggregate.paired_table(summary, ["baseline", "rr"], {"baseline": "baseline", "rr": "RR"}, [1, 2])
    assert table.splitlines()[2] == ("| RR | +4.00 ± 0.00 (2/2 seeds up: better in every seed) "
                                     "| +3.00 ± 1.41 (2/2 seeds up: better in every seed) |")


def test_selection_note_follows_the_configuration():
    from fairseq_eb.recipe.table import selection_note

    assert "validation BLEU" in selection_note("finetune")
    assert "validation loss" in selection_note("demo") and "--eval-bleu" in selection_note("demo")


# ---------------------------------------------------------------- floor

def test_first_k_words_and_chars():
    assert floor.first_k(["a b  c d", "x"], 2, "word") == ["a b", "x"]
    assert floor.first_k(["基于 深度学习的", "ab"], 3, "char") == ["基于深", "ab"]
    with pytest.raises(ValueError, match="--tokenize"):
        floor.tokens("x", "bpe")
    assert floor.candidate_ks(["a b c d", "a b c d e f", "a b"], "word") == list(range(2, 9))


def test_floor_counts_and_cuts_the_tokens_the_scorer_scores():
    from fairseq_eb.scoring import score, tokenize

    # lower-casing "\u0130" (I with dot) gives two characters: K must count the scorer's (lower-cased) tokens
    source = "\u0130stanbul Ankara"
    for mode in ("char", "word"):
        for k in (1, 2, 3):
            assert len(tokenize(floor.first_k([source], k, mode)[0], mode)) == min(k, len(tokenize(source, mode)))
    assert floor.candidate_ks(["\u0130\u0130"], "char") == list(range(2, 9))  # median length 4, not 2
    assert score(floor.first_k(["The Cat Sat"], 2, "word"), ["the cat"])["rouge-1"] == 100.0


def test_floor_chooses_k_on_valid_only(tmp_path):
    (tmp_path / "valid.src").write_text("a b c d e f\n" * 4)
    (tmp_path / "valid.tgt").write_text("a b c\n" * 4)
    (tmp_path / "test.src").write_text("p q r s t u\n")
    (tmp_path / "test.tgt").write_text("p q r s t u\n")
    calls = []

    def fake_score(hyps, refs, tokenize):
        calls.append(refs[0])
        # best when the hypothesis is exactly 3 words long
        return {"rouge-l": -abs(len(hyps[0].split()) - 3), "rouge-1": 0, "rouge-2": 0, "bleu": 0}

    k, test_scores, by_k = floor.choose_and_score(tmp_path, "word", fake_score)
    assert k == 3 and by_k[3] == 0 and by_k[1] == -2
    assert calls[-1] == "p q r s t u" and calls.count("p q r s t u") == 1  # test scored once, after choosing


# ---------------------------------------------------------------- options

def test_methods_and_configs_validation():
    assert check_methods(["gp", "baseline"]) == ["baseline", "gp"]
    with pytest.raises(ValueError, match="baseline, rr, gp, rr_gp"):
        check_methods(["dropout"])
    with pytest.raises(ValueError, match="--config must be one of"):
        get_config("huge")
    cfg = CONFIGS["demo"]
    base, rr, gp, both = (method_args(m, cfg) for m in ("baseline", "rr", "gp", "rr_gp"))
    assert base == ["--task", "translation", "--criterion", "label_smoothed_cross_entropy"]
    assert rr[:2] == ["--task", "translation_with_replacement"] and "--replace-token-prob" in rr
    assert "label_smoothed_cross_entropy_with_gp" in gp and "--gp-epsilon" in gp and "translation" in gp
    assert "translation_with_replacement" in both and "label_smoothed_cross_entropy_with_gp" in both


def test_bad_options_fail_early(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "missing bin/" in capsys.readouterr().err
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--tokenize", "bpe"]) == 2
    assert "--tokenize must be one of" in capsys.readouterr().err
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--methods", "x"]) == 2
    assert "--methods" in capsys.readouterr().err
    (tmp_path / "bin").mkdir()
    for needed in ("dict.src.txt", "train.src-tgt.src.bin", "valid.src-tgt.src.bin", "test.src-tgt.src.bin"):
        (tmp_path / "bin" / needed).write_text("")
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--seeds", "-1"]) == 2
    assert "--seeds must be integers >= 0" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "afile")]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--chosen", str(tmp_path / "no.json")]) == 2
    assert "--chosen" in capsys.readouterr().err


# ---------------------------------------------------------------- end to end on the toy corpus

def _recipe_args(data: Path, out: Path, *extra: str):
    return ["--data", str(data), "--out", str(out), "--config", "tiny", "--methods", "baseline", "rr_gp",
            "--seeds", "1", "--beams", "1", "2", "--jobs", "2", "--device", "cpu", "--name", "toy", *extra]


@pytest.mark.slow
def test_recipe_end_to_end_and_resume(toy_bin, tmp_path, capsys):
    data, out = toy_bin.parent, tmp_path / "out"
    assert main(_recipe_args(data, out)) == 0
    first = capsys.readouterr().out
    assert "train_inner" in first  # fairseq's progress reached the console

    results = json.loads((out / "results.json").read_text())
    assert results["methods"] == ["baseline", "rr_gp"] and results["beams"] == [1, 2]
    for method in ("baseline", "rr_gp"):
        run = out / "runs" / method / "default" / "seed1"
        assert (run / "checkpoints" / "checkpoint_best.pt").exists() and (run / "train.done").exists()
        assert (run / "checkpoints" / "checkpoint_best_loss.pt").exists()
        assert not list((run / "checkpoints").glob("checkpoint_[0-9]*_*.pt"))  # interval checkpoints cleaned up
        selection = json.loads((run / "selection.json").read_text())
        assert selection["bleu"]["num_updates"] in (4, 8) and selection["loss"]["num_updates"] in (4, 8)
        assert "$ " in (run / "train.log").read_text().splitlines()[0]
        for beam in (1, 2):
            lines = (run / f"generate-beam{beam}.txt").read_text().splitlines()
            hyps = [line for line in lines if line.startswith("H-")]
            assert len(hyps) == 20  # the toy test split
            sc = results["summary"][method][str(beam)]["rouge-l"]
            assert 0.0 <= sc["mean"] <= 100.0 and sc["n"] == 1 and sc["std"] is None
    assert "translation_with_replacement" in results["runs"]["rr_gp/seed1"]["train_command"]
    assert "label_smoothed_cross_entropy_with_gp" in results["runs"]["rr_gp/seed1"]["train_command"]
    assert results["floor"]["k"] >= 1 and 0 <= results["floor"]["scores"]["rouge-l"] <= 100
    table = (out / "table.md").read_text()
    assert "| toy | 1 | baseline / RR+GP |" in table and "| toy | 2 | baseline / RR+GP |" in table
    assert "source words" in table
    assert "## Exposure-bias diagnostics" in table and "## Checkpoints selected by validation loss" in table
    # the paired test-sentence bootstrap: its mean is the paired difference of the corpus scores
    found = results["intervals_rouge_l"]["rr_gp"]
    for beam in ("1", "2"):
        boot = found[beam]["bootstrap"]
        delta = results["paired_rouge_l"]["rr_gp"][beam]["mean"]
        assert boot["mean"] == pytest.approx(delta, abs=1e-9) and boot["sentences"] == 20
        assert boot["lo"] <= boot["mean"] <= boot["hi"] and found[beam]["seed_interval"] is None
        assert found[beam]["verdict"] == "one seed: not established"
    assert "How sure: 95% intervals" in table and "sentences [" in table
    # the averaged selection (tiny: the last 2 of 2 interval checkpoints) and the selection-noise measurement
    assert "## Average of the last 2 checkpoints" in table and "## How noisy is the selection?" in table
    for method in ("baseline", "rr_gp"):
        run = out / "runs" / method / "default" / "seed1"
        assert (run / "checkpoints" / "checkpoint_avg.pt").exists()
        # update 8 ends the budget at an epoch's end: fairseq keeps it as checkpoint_last.pt only
        assert json.loads((run / "averaging.json").read_text())["averaged"] == ["checkpoint_1_4.pt",
                                                                              "checkpoint_last.pt"]
        assert (run / "generate-avg-beam1.txt").exists() and "avg" in results["runs"][f"{method}/seed1"][
            "scores_by_selection"]
        noise = json.loads((run / "noise.json").read_text())
        assert {noise["selected"], noise["neighbour"]} == {4, 8} and noise["sentences"] == 40  # the toy valid split
        assert noise["se_diff"] >= 0 and noise["lo"] <= noise["diff"] <= noise["hi"] + 1e-9
        assert set(noise["logged_bleu"]) == {"4", "8"} and noise["bleu_a"] >= 0
    assert set(results["intervals_rouge_l_avg"]["rr_gp"]) == {"1", "2"}
    for method in ("baseline", "rr_gp"):
        head = results["runs"][f"{method}/seed1"]["diagnosis"]
        assert head["rate"] == 0.3 and head["delta_nll_own"] is not None
        assert 0.0 <= results["summary"][method]["1"]["repeat-2"]["mean"] <= 100.0
        assert (out / "runs" / method / "default" / "seed1" / "diagnose" / "diagnose.json").exists()
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curves = (out / "curves.md").read_text()  # tiny: validations at 4 and 8 of 8 updates, no patience
    for label in ("baseline", "RR+GP"):
        row = next(line for line in curves.splitlines() if line.startswith(f"| {label} | 1 |"))
        assert row.endswith("| budget end |") and row.count("|") == 7, row
    assert "0 of 2 runs ended by early stopping" in curves

    # second invocation: nothing is retrained or regenerated; a deleted score is recomputed alone
    run = out / "runs" / "baseline" / "default" / "seed1"
    stamps = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.suffix in (".pt", ".txt")}
    (run / "score-beam2.json").unlink()
    assert main(_recipe_args(data, out)) == 0
    second = capsys.readouterr().out
    assert second.count("training already finished, skipped") == 2
    assert "train_inner" not in second and "fairseq-generate" not in second
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (run / "score-beam2.json").exists()
    again = json.loads((out / "results.json").read_text())
    assert again["summary"] == results["summary"]

    # a finished run copied into another output directory is reused as it is (e.g. to add seeds)
    import shutil

    other = tmp_path / "other"
    shutil.copytree(run, other / "runs" / "baseline" / "default" / "seed1")
    data_copy = tmp_path / "data-copy"  # the same data at another path is the same data
    shutil.copytree(data, data_copy)
    args = _recipe_args(data_copy, other)
    args[args.index("rr_gp")] = "baseline"
    assert main(args) == 0
    assert capsys.readouterr().out.count("training already finished, skipped") == 1
    assert json.loads((other / "results.json").read_text())["summary"]["baseline"] == results["summary"]["baseline"]

    # another experiment's results in the same --out are never overwritten (floor.json included)
    floor_before = (out / "floor.json").read_bytes()
    assert main(_recipe_args(data, out, "--train-args", "--dropout 0.3")) == 2
    assert "holds results of another experiment (train_args differ)" in capsys.readouterr().err
    assert (out / "floor.json").read_bytes() == floor_before

    # resuming a run with other settings is refused instead of mixing runs
    (out / "results.json").unlink()
    assert main(_recipe_args(data, out, "--train-args", "--dropout 0.3")) == 2
    assert "other settings" in capsys.readouterr().err


# ---------------------------------------------------------------- Hydra YAML configs

@pytest.mark.slow
@pytest.mark.parametrize("name,task,criterion", [
    ("baseline", "TranslationTask", "LabelSmoothedCrossEntropyCriterion"),
    ("rr", "TranslationWithReplacementTask", "LabelSmoothedCrossEntropyCriterion"),
    ("gp", "TranslationTask", "LabelSmoothedCrossEntropyWithGpCriterion"),
])
def test_hydra_configs_start_training(toy_bin, tmp_path, name, task, criterion):
    import subprocess
    import sys

    from fairseq_eb.user_dir import user_dir

    config_dir = Path(__file__).resolve().parent.parent / "examples" / "configs"
    code = "from fairseq_cli.hydra_train import cli_main; cli_main()"  # = the fairseq-hydra-train script
    proc = subprocess.run(
        [sys.executable, "-c", code, "--config-dir", str(config_dir), "--config-name", name,
         f"task.data={toy_bin}", f"common.user_dir={user_dir()}", f"checkpoint.save_dir={tmp_path / 'ck'}",
         "optimization.max_update=2", "common.cpu=true", "common.log_interval=1"],
        cwd=tmp_path, capture_output=True, text=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert f"task: {task}" in log and f"criterion: {criterion}" in log
    assert "num_updates 2" in log and (tmp_path / "ck" / "checkpoint_best.pt").exists()


def test_hydra_configs_match_the_demo_config(request):
    """The YAML files are the `demo` config for fairseq-hydra-train: same model, optimiser and budget."""
    from hydra import version

    # fairseq's own config composition (hydra.experimental) needs the compatibility base back afterwards
    request.addfinalizer(lambda: version.VersionBase.instance().setbase(version.__compat_version__))
    from hydra import compose, initialize_config_dir

    def flag_of(args, name):
        return list(args)[list(args).index(name) + 1]

    args = list(CONFIGS["demo"].train_args)
    flag = lambda name: args[args.index(name) + 1]  # noqa: E731
    config_dir = Path(__file__).resolve().parent.parent / "examples" / "configs"
    composed = {}
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):  # as fairseq-hydra-train does
        for name in ("baseline", "rr", "gp"):
            composed[name] = compose(config_name=name)
    assert composed["baseline"].task._name == "translation" and composed["gp"].task._name == "translation"
    assert composed["rr"].criterion._name == composed["baseline"].criterion._name == "label_smoothed_cross_entropy"
    assert composed["gp"].criterion._name == "label_smoothed_cross_entropy_with_gp"
    penalty = option_set("penalty", CONFIGS["demo"])
    assert float(composed["gp"].criterion.gp_epsilon) == float(flag_of(penalty, "--gp-epsilon"))
    for name in ("baseline", "rr", "gp"):
        y = composed[name]
        for side in ("encoder", "decoder"):
            assert str(y.model[side].layers) == flag(f"--{side}-layers")
            assert str(y.model[side].embed_dim) == flag(f"--{side}-embed-dim")
            assert str(y.model[side].ffn_embed_dim) == flag(f"--{side}-ffn-embed-dim")
            assert str(y.model[side].attention_heads) == flag(f"--{side}-attention-heads")
            assert bool(y.model[side].get("normalize_before", False)) == (f"--{side}-normalize-before" in args)
        assert float(y.optimization.lr[0]) == float(flag("--lr"))
        assert str(y.optimization.max_update) == flag("--max-update")
        assert str(y.dataset.max_tokens) == flag("--max-tokens")
        assert str(y.lr_scheduler.warmup_updates) == flag("--warmup-updates")
        assert y.lr_scheduler._name == flag("--lr-scheduler")
        assert str(y.lr_scheduler.total_num_update) == flag("--total-num-update")
        assert float(y.model.dropout) == float(flag("--dropout"))
        assert float(y.criterion.label_smoothing) == float(flag("--label-smoothing"))
        assert str(y.dataset.validate_interval_updates) == flag("--validate-interval-updates")
    rr = composed["rr"].task
    rr_args = list(option_set("replacement", CONFIGS["demo"]))
    assert str(rr.replace_warmup_updates) == rr_args[rr_args.index("--replace-warmup-updates") + 1]
    assert float(rr.replace_token_prob) == float(rr_args[rr_args.index("--replace-token-prob") + 1])


@pytest.mark.slow
def test_recipe_stage_methods_continue_the_baseline(toy_bin, tmp_path, capsys):
    """mrt / rank / mle_more start from the same seed's baseline checkpoint; MRT and Rank are paired with
    baseline+stage (the same extra updates with the token loss), not with the baseline."""
    data, out = toy_bin.parent, tmp_path / "out"
    args = ["--data", str(data), "--out", str(out), "--config", "tiny", "--methods", "baseline", "mle_more", "mrt",
            "rank", "--seeds", "1", "--beams", "1", "--jobs", "2", "--device", "cpu", "--name", "toy", "--no-floor"]
    assert main(args) == 0
    capsys.readouterr()
    results = json.loads((out / "results.json").read_text())
    base_ckpt = out / "runs" / "baseline" / "default" / "seed1" / "checkpoints" / "checkpoint_best.pt"
    for method, criterion in (("mle_more", "label_smoothed_cross_entropy"), ("mrt", "sequence_risk"),
                              ("rank", "sequence_ranking")):
        command = results["runs"][f"{method}/seed1"]["train_command"]
        assert f"--finetune-from-model {base_ckpt}" in command and f"--criterion {criterion}" in command
        log = (out / "runs" / method / "default" / "seed1" / "train.log").read_text()
        assert "num_updates=4" in log or "num_updates 4" in log  # the stage's own budget, counted from 0
        if method != "mle_more":
            assert "seq_cost=" in log
    intervals = results["intervals_rouge_l"]
    assert set(intervals) == {"mle_more", "mrt", "rank"}
    table = (out / "table.md").read_text()
    assert "(MRT, Rank: vs baseline+stage)" in table
    mrt = results["summary"]["mrt"]["1"]["rouge-l"]["mean"]
    ref = results["summary"]["mle_more"]["1"]["rouge-l"]["mean"]
    assert results["paired_rouge_l"]["mrt"]["1"]["mean"] == pytest.approx(mrt - ref)


def test_stage_methods_need_their_baseline_and_reference(toy_bin, tmp_path, capsys):
    data = toy_bin.parent
    base = ["--data", str(data), "--out", str(tmp_path / "o"), "--config", "tiny", "--device", "cpu"]
    assert main(base + ["--methods", "mrt", "mle_more"]) == 2
    assert "continue the same seed's baseline run: add baseline" in capsys.readouterr().err
    assert main(base + ["--methods", "baseline", "rank"]) == 2
    assert "add mle_more" in capsys.readouterr().err
    assert main(base[:-4] + ["--config", "demo", "--device", "cpu", "--methods", "baseline", "mle_more"]) == 2
    assert "has no stage budget" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- the long regime's scoring, on a toy extra test set

def _toy_with_ood(directory: Path) -> Path:
    """The toy corpus through prep.binarize, with an extra test set ``ood`` (other words, the same rule)."""
    import random

    from fairseq_eb.prep.binarize import binarize

    rng = random.Random(1)
    raw = directory / "raw"
    raw.mkdir(parents=True)
    for split, n, vocab in (("train", 300, 30), ("valid", 30, 30), ("test", 24, 30), ("ood", 18, 36)):
        words = [f"w{i}" for i in range(vocab)]
        rows = [[rng.choice(words) for _ in range(rng.randint(3, 10))] for _ in range(n)]
        (raw / f"{split}.src").write_text("".join(" ".join(r) + "\n" for r in rows))
        (raw / f"{split}.tgt").write_text("".join(" ".join(r[:4][::-1]) + "\n" for r in rows))
    binarize(directory, vocab_size=45)
    return directory


@pytest.mark.slow
def test_translation_scores_and_an_extra_test_set_reuse_the_runs(tmp_path, capsys):
    from sacrebleu.metrics import BLEU, CHRF

    from fairseq_eb.scoring import read_generate_output

    data, out, ood = _toy_with_ood(tmp_path / "data"), tmp_path / "out", tmp_path / "ood"
    args = ["--data", str(data), "--config", "tiny_long", "--methods", "baseline", "rr", "--seeds", "1", "2",
            "--beams", "1", "2", "--jobs", "2", "--device", "cpu", "--name", "toy"]
    assert main([*args, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    run = out / "runs" / "rr" / "default" / "seed2"
    assert not (run / "generate-loss-beam1.txt").exists() and (run / "generate-avg-beam2.txt").exists()
    hyps, refs = read_generate_output(str(run / "generate-beam2.txt"), spm_model=str(data / "spm.model"))
    scores = results["runs"]["rr/seed2"]["scores_by_selection"]["bleu"]["2"]
    assert scores["bleu-cased"] == pytest.approx(BLEU().corpus_score(hyps, [refs]).score)
    assert scores["chrf"] == pytest.approx(CHRF().corpus_score(hyps, [refs]).score)
    record = results["translation"]
    assert set(record["summary"]) == {"bleu", "avg"}
    found = record["bleu"]["intervals"]["chrf"]["rr"]["2"]
    per_seed = [results["runs"][f"rr/seed{s}"]["scores_by_selection"]["bleu"]["2"]["chrf"]
                - results["runs"][f"baseline/seed{s}"]["scores_by_selection"]["bleu"]["2"]["chrf"] for s in (1, 2)]
    assert found["per_seed"] == pytest.approx(per_seed) and found["bootstrap"]["mean"] == pytest.approx(
        sum(per_seed) / 2)
    assert found["bootstrap"]["sentences"] == 24 and found["seed_interval"] is not None
    assert record["bleu"]["intervals_long_third"]["bleu-cased"]["rr"]["1"]["bootstrap"]["sentences"] == 8
    assert results["floor"]["copy_source"]["chrf"] == pytest.approx(CHRF().corpus_score(
        (data / "raw" / "test.src").read_text().splitlines(), [(data / "raw" / "test.tgt").read_text().splitlines()
                                                               ]).score)
    table = (out / "table.md").read_text()
    assert "## Translation scores" in table and "### Average of the last 2 checkpoints" in table
    assert "| source copied (floor) |" in table and "by third of the reference lengths" in table
    assert "## Checkpoints selected by validation loss" not in table

    # the same runs on the extra test set: nothing trained again, results of their own
    capsys.readouterr()
    assert main([*args, "--out", str(ood), "--test-subset", "ood", "--runs", str(out / "runs")]) == 0
    assert capsys.readouterr().out.count("training already finished, skipped") == 4
    ood_results = json.loads((ood / "results.json").read_text())
    assert ood_results["test_subset"] == "ood" and ood_results["identity"]["test_subset"] == "ood"
    assert (run / "generate-ood-beam1.txt").exists() and (run / "score-ood-avg-beam2.json").exists()
    hyps, refs = read_generate_output(str(run / "generate-ood-beam1.txt"), spm_model=str(data / "spm.model"))
    assert len(hyps) == 18 and ood_results["floor"]["copy_source"]["signatures"]["bleu"].startswith("nrefs:1")
    assert "ood split" in (ood / "table.md").read_text()

    # nothing lost with the disk: the runs' records restore both tables without a checkpoint (recipe/archive.py)
    from fairseq_eb.recipe import archive

    records, again = tmp_path / "records", tmp_path / "restored"
    assert archive.main(["save", "--runs", str(out / "runs"), "--to", str(records),
                         "--spm-model", str(data / "spm.model")]) == 0
    assert sorted(p.relative_to(records).as_posix() for p in records.rglob("*.json.xz")) == [
        f"{m}/default/seed{s}.json.xz" for m in ("baseline", "rr") for s in (1, 2)]
    assert archive.main(["restore", "--from", str(records), "--runs", str(again / "runs")]) == 0
    restored = again / "runs" / "rr" / "default" / "seed2"
    assert archive.is_restored(restored) and not (restored / "checkpoints").exists()
    assert read_generate_output(str(restored / "generate-ood-beam1.txt")) == (hyps, refs)
    capsys.readouterr()
    assert main([*args, "--out", str(again)]) == 0
    assert main([*args, "--out", str(again / "ood"), "--test-subset", "ood", "--runs", str(again / "runs")]) == 0
    assert "fairseq-generate" not in capsys.readouterr().out
    for mine, theirs in ((results, json.loads((again / "results.json").read_text())),
                         (ood_results, json.loads((again / "ood" / "results.json").read_text()))):
        for key in ("summary", "summary_by_selection", "translation", "intervals_rouge_l", "floor"):
            assert theirs[key] == mine[key], key
    # a decoding the records lack needs the checkpoints: one clear line, not fairseq's traceback
    assert main([*args[:args.index("--beams")], "--beams", "3", *args[args.index("--beams") + 3:],
                 "--out", str(tmp_path / "beam3"), "--runs", str(again / "runs")]) == 1
    assert "generate-beam3.txt is not in the record this run was restored from" in capsys.readouterr().err


def test_run_records_refuse_what_they_cannot_hold(tmp_path):
    from fairseq_eb.recipe import archive

    run = tmp_path / "runs" / "baseline" / "default" / "seed1"
    run.mkdir(parents=True)
    with pytest.raises(archive.ArchiveError, match="not a finished run"):
        archive.pack(run)
    (run / "train.done").write_text("{}")
    (run / "generate-beam1.txt").write_text("T-0\ta b\nH-0\t-0.1\ta b\nT-1\tc\nH-1\t-0.2\td e\n")
    record = archive.save(run, tmp_path / "rec" / "seed1.json.xz")
    archive.restore(record, tmp_path / "back")
    assert (tmp_path / "back" / "generate-beam1.txt").read_text() == "T-0\ta b\nD-0\t0\ta b\nT-1\tc\nD-1\t0\td e\n"
    with pytest.raises(archive.ArchiveError, match="already exists"):
        archive.restore(record, tmp_path / "back")
    (tmp_path / "junk.json.xz").write_bytes(b"not xz")
    with pytest.raises(archive.ArchiveError, match="not a run record"):
        archive.load(tmp_path / "junk.json.xz")

def test_run_records_refuse_a_sentence_with_a_line_break(tmp_path, monkeypatch):
    from fairseq_eb.recipe import archive

    (tmp_path / "train.done").write_text("{}")
    (tmp_path / "generate-beam1.txt").write_text("")
    monkeypatch.setattr(archive, "_read", lambda path, spm: (["a\u2028b"], ["ab"]))  # a scorer's view of some file
    with pytest.raises(archive.ArchiveError, match="line break"):
        archive.save(tmp_path, tmp_path / "rec" / "seed1.json.xz")
