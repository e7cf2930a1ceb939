"""Scheduled-sampling variants of --replace-pool model (docs/method.md §2.5): the confidence rules, the position
schedule, the imitation KL term, their option checks, and a resume through fairseq-train.

Expected values come from computations written here: an independent no-grad forward for the guesses and their
probabilities, the formulas of docs/schedules.md for the position rates, and the KL written out for the
imitation term.
"""
import math
import os
import re

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion  # noqa: E402

from fairseq_eb import cli_validation  # noqa: E402
from fairseq_eb.corruption import corrupt_decoder_input  # noqa: E402
from fairseq_eb.criterions.label_smoothed_cross_entropy_with_gp import (  # noqa: E402
    LabelSmoothedCrossEntropyWithGpCriterion,
)
from fairseq_eb.tasks.translation_with_replacement import validate_replacement_config  # noqa: E402
from tests.fairseq_tools import TINY_MODEL, TRAIN_COMMON, USER_DIR, run_fairseq  # noqa: E402
from tests.test_model_pool import tiny_model  # noqa: E402
from tests.test_task import BackwardOnly, batch, make_cfg, make_task  # noqa: E402


def independent_pass(model, sample):
    """(argmax guesses, their probabilities, logits) of an eval-mode no-grad forward written here."""
    model.eval()
    with torch.no_grad():
        logits = model(**sample["net_input"])[0]
    model.train()
    probs = torch.softmax(logits.double(), dim=-1)
    guess = logits.argmax(-1)
    return guess, probs.gather(-1, guess.unsqueeze(-1)).squeeze(-1), logits


def gates(task, sample, seed):
    """The p_s / p_t gates of the same seed (drawn first, whatever the pool and the confidence rules)."""
    prev = sample["net_input"]["prev_output_tokens"]
    return corrupt_decoder_input(prev, pad=task.tgt_dict.pad(), sample_prob=task.cfg.replace_sample_prob,
                                 token_prob=task.cfg.replace_token_prob, pool="target",
                                 generator=torch.Generator().manual_seed(seed)).selected


@pytest.fixture(scope="module")
def model_and_sample(toy_bin):
    task = make_task(toy_bin, replace_pool="model")
    return tiny_model(task, dropout=0.0), batch(task, 16)


# ---- confidence-aware rules


def test_confidence_rule_replaces_exactly_the_confident_guesses(toy_bin, model_and_sample):
    model, sample = model_and_sample
    prev = sample["net_input"]["prev_output_tokens"]
    guess, prob, _ = independent_pass(model, sample)
    threshold = float(prob[:, :-1].median())  # about half the positions clear it
    task = make_task(toy_bin, replace_pool="model", replace_sample_prob=1.0, replace_token_prob=0.7,
                     replace_confidence_threshold=threshold)
    result = task.corrupt_sample(sample, 4, model=model)
    selected = gates(task, sample, result.seed)
    low, high = task.vocab_range
    expected, confident = prev.clone(), torch.zeros_like(selected)
    for i, j in selected.nonzero().tolist():
        if prob[i, j - 1] >= threshold:  # decoder input j holds target[j - 1]
            confident[i, j] = True
            if low <= int(guess[i, j - 1]) < high:
                expected[i, j] = guess[i, j - 1]
    assert 0 < int(confident.sum()) < int(selected.sum())  # the rule is doing something
    assert torch.equal(result.sample["net_input"]["prev_output_tokens"], expected)
    assert int(result.selected) == int(confident.sum())  # `selected` counts the positions that passed the rule


def test_random_above_feeds_pool_tokens_where_very_confident(toy_bin, model_and_sample):
    model, sample = model_and_sample
    prev = sample["net_input"]["prev_output_tokens"]
    guess, prob, _ = independent_pass(model, sample)
    low_c, high_c = (float(prob[:, :-1].quantile(q)) for q in (0.3, 0.7))
    task = make_task(toy_bin, replace_pool="model", replace_sample_prob=1.0, replace_token_prob=1.0,
                     replace_confidence_threshold=low_c, replace_random_above=high_c, replace_random_pool="target")
    result = task.corrupt_sample(sample, 9, model=model)
    tokens = result.sample["net_input"]["prev_output_tokens"]
    selected = gates(task, sample, result.seed)
    conf = torch.cat([torch.zeros_like(prob[:, :1]), prob[:, :-1]], dim=1)
    guess_in = torch.cat([prev[:, :1], guess[:, :-1]], dim=1)
    gold = selected & conf.lt(low_c)
    guessed = selected & conf.ge(low_c) & conf.lt(high_c)
    randomised = selected & conf.ge(high_c)
    assert gold.any() and guessed.any() and randomised.any()
    assert torch.equal(tokens[~selected | gold], prev[~selected | gold])
    lo, hi = task.vocab_range
    ordinary = guess_in.ge(lo) & guess_in.lt(hi)
    assert torch.equal(tokens[guessed & ordinary], guess_in[guessed & ordinary])
    # random tokens of the target pool: each is a token of the same sentence's y1..yn
    for i, j in randomised.nonzero().tolist():
        row = prev[i][prev[i].ne(task.tgt_dict.pad())][1:]
        assert int(tokens[i, j]) in row.tolist()
    assert not torch.equal(tokens[randomised], guess_in[randomised])  # not the guesses
    assert int(result.selected) == int((guessed | randomised).sum())


def test_off_by_default_the_draws_are_unchanged(toy_bin, model_and_sample):
    model, sample = model_and_sample
    plain = make_task(toy_bin, replace_pool="model", replace_sample_prob=1.0)
    every = make_task(toy_bin, replace_pool="model", replace_sample_prob=1.0, replace_confidence_threshold=0.0,
                      replace_random_above=0.0, replace_position_schedule="none", replace_imitation_weight=0.0)
    a, b = plain.corrupt_sample(sample, 2, model=model), every.corrupt_sample(sample, 2, model=model)
    assert torch.equal(a.sample["net_input"]["prev_output_tokens"], b.sample["net_input"]["prev_output_tokens"])


# ---- position schedule


def formula(schedule, t, k):
    if schedule == "exponential":
        return 1 - k ** t
    if schedule == "sigmoid":
        return 1 - k / (k + math.exp(t / k))
    return min(1.0, t / k)


@pytest.mark.parametrize("schedule,constant", [("exponential", 0.9), ("sigmoid", 2.0), ("linear", 12.0),
                                               ("exponential", 0.0)])
def test_position_schedule_rate_per_position_matches_formula(schedule, constant):
    rows, length, p_t = 20000, 24, 0.8
    k = constant or 0.99
    prev = torch.full((rows, length + 1), 7)
    prev[:, 0] = 2  # BOS
    prev[rows // 2:, :4] = 1  # half the rows left-padded by 4: t still counts from their BOS
    prev[rows // 2:, 4] = 2
    out = corrupt_decoder_input(prev, pad=1, sample_prob=1.0, token_prob=p_t, pool="vocab", vocab_range=(4, 9),
                                generator=torch.Generator().manual_seed(0), position_schedule=schedule,
                                position_constant=constant)
    for half, offset, n in ((slice(0, rows // 2), 0, length), (slice(rows // 2, rows), 4, length - 4)):
        rate = out.selected[half].double().mean(dim=0)
        assert not out.selected[half, : offset + 1].any()  # PAD and BOS never
        for t in range(1, n + 1):
            p = p_t * formula(schedule, t, k)
            bound = 5 * math.sqrt(p * (1 - p) / (rows // 2)) + 1e-9
            assert abs(float(rate[offset + t]) - p) <= bound, (schedule, t, float(rate[offset + t]), p)


def test_position_schedule_none_is_constant_p_t():
    prev = torch.full((8, 6), 7)
    prev[:, 0] = 2
    kw = dict(pad=1, sample_prob=1.0, token_prob=0.4, pool="vocab", vocab_range=(4, 9))
    a = corrupt_decoder_input(prev, generator=torch.Generator().manual_seed(3), **kw)
    b = corrupt_decoder_input(prev, generator=torch.Generator().manual_seed(3), position_schedule="none", **kw)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.selected, b.selected)


# ---- imitation KL


def independent_kl(model, gold_sample, mixed_tokens, pad):
    """sum over positions after the first changed input of KL(eval pass on gold || train pass on mixed)."""
    _, _, teacher = independent_pass(model, gold_sample)
    net = dict(gold_sample["net_input"], prev_output_tokens=mixed_tokens)
    with torch.no_grad():
        student = model(**net)[0]
    p_t = torch.log_softmax(teacher.double(), -1)
    p_s = torch.log_softmax(student.double(), -1)
    kl = (p_t.exp() * (p_t - p_s)).sum(-1)
    prev, target = gold_sample["net_input"]["prev_output_tokens"], gold_sample["target"]
    total = 0.0
    for i in range(prev.size(0)):
        changed = mixed_tokens[i].ne(prev[i]).tolist()
        after = False
        for j in range(prev.size(1)):
            after = after or changed[j]
            if after and int(target[i, j]) != pad:
                total += float(kl[i, j])
    return total


def criteria(task):
    return {
        "lsce": LabelSmoothedCrossEntropyCriterion(task, False, 0.1),
        "gp_exact": LabelSmoothedCrossEntropyWithGpCriterion(task, False, 0.1, gp_epsilon=0.5, gp_method="exact"),
    }


@pytest.mark.parametrize("name", ["lsce", "gp_exact"])
def test_imitation_term_equals_independent_kl_and_joins_the_loss(toy_bin, model_and_sample, name):
    model, sample = model_and_sample
    w = 0.7
    task = make_task(toy_bin, replace_pool="model", replace_sample_prob=1.0, replace_token_prob=0.5,
                     replace_imitation_weight=w)
    plain_task = make_task(toy_bin, replace_pool="model", replace_sample_prob=1.0, replace_token_prob=0.5)
    crit = criteria(task)[name]
    loss, _, log = task.train_step(sample, model, crit, BackwardOnly(), 5)
    model.zero_grad()
    plain_loss, _, plain_log = plain_task.train_step(sample, model, crit, BackwardOnly(), 5)
    model.zero_grad()
    plain_task.micro_batches.__init__()  # the same micro-batch 0 of update 5 again
    mixed = plain_task.corrupt_sample(sample, 5, model=model).sample["net_input"]["prev_output_tokens"]
    expected = independent_kl(model, sample, mixed, task.tgt_dict.pad())
    assert expected > 0
    assert float(log["imitation"]) == pytest.approx(expected, rel=1e-4)
    assert float(loss) == pytest.approx(float(plain_loss) + w * expected, rel=1e-5)
    assert float(log["loss"]) == pytest.approx(float(plain_log["loss"]) + w * expected, rel=1e-5)
    assert float(log["nll_loss"]) == pytest.approx(float(plain_log["nll_loss"]), rel=1e-6)


def test_imitation_gradient_is_the_kl_gradient(toy_bin, model_and_sample):
    """The train step's gradient = the criterion's + w * grad of the KL w.r.t. the student (teacher detached)."""
    model, sample = model_and_sample
    w = 2.0
    task = make_task(toy_bin, replace_pool="model", replace_sample_prob=1.0, replace_token_prob=0.5,
                     replace_imitation_weight=w)
    plain_task = make_task(toy_bin, replace_pool="model", replace_sample_prob=1.0, replace_token_prob=0.5)
    crit = LabelSmoothedCrossEntropyCriterion(task, False, 0.1)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = []
    for t in (task, plain_task):
        model.zero_grad()
        t.train_step(sample, model, crit, BackwardOnly(), 6)
        grads.append([p.grad.clone() for p in params])
    model.zero_grad()
    task.micro_batches.__init__()
    corrupted = task.corrupt_sample(sample, 6, model=model)
    _, _, teacher = independent_pass(model, sample)
    student = model(**corrupted.sample["net_input"])[0]
    p_t = torch.log_softmax(teacher.float(), -1)
    kl = (p_t.exp() * (p_t - torch.log_softmax(student.float(), -1))).sum(-1)
    (w * (kl * corrupted.imitation_mask).sum()).backward()
    for g_with, g_plain, p in zip(*grads, params):
        assert torch.allclose(g_with - g_plain, p.grad, atol=1e-5, rtol=1e-3)
    model.zero_grad()


@pytest.mark.parametrize("how", ["p_s = 0", "threshold 1"])
def test_imitation_is_zero_when_nothing_is_replaced(toy_bin, model_and_sample, how):
    model, sample = model_and_sample
    opts = {"replace_sample_prob": 0.0} if how == "p_s = 0" else {"replace_sample_prob": 1.0,
                                                                   "replace_confidence_threshold": 1.0}
    task = make_task(toy_bin, replace_pool="model", replace_token_prob=0.5, replace_imitation_weight=1.0, **opts)
    plain = make_task(toy_bin, replace_pool="model", replace_token_prob=0.5, **opts)
    crit = LabelSmoothedCrossEntropyCriterion(task, False, 0.1)
    loss, _, log = task.train_step(sample, model, crit, BackwardOnly(), 3)
    plain_loss, _, _ = plain.train_step(sample, model, crit, BackwardOnly(), 3)
    model.zero_grad()
    assert int(log["eb_replaced"]) == 0 and float(log["imitation"]) == 0.0
    assert float(loss) == float(plain_loss)


def test_validation_is_unaffected(toy_bin, model_and_sample):
    model, sample = model_and_sample
    task = make_task(toy_bin, replace_pool="model", replace_sample_prob=1.0, replace_imitation_weight=1.0,
                     replace_confidence_threshold=0.01, replace_position_schedule="linear")
    crit = LabelSmoothedCrossEntropyCriterion(task, False, 0.1)
    loss, _, log = task.valid_step(sample, model, crit)
    model.eval()
    with torch.no_grad():
        expected, _, _ = crit(model, sample)
    model.train()
    assert float(loss) == float(expected) and "imitation" not in log


def test_imitation_with_gp_fgm_runs_and_backpropagates(toy_bin, model_and_sample):
    model, sample = model_and_sample
    task = make_task(toy_bin, replace_pool="model", replace_sample_prob=1.0, replace_imitation_weight=1.0)
    crit = LabelSmoothedCrossEntropyWithGpCriterion(task, False, 0.1, gp_epsilon=0.5, gp_method="fgm")
    loss, _, log = task.train_step(sample, model, crit, BackwardOnly(), 2)
    assert float(log["imitation"]) > 0 and math.isfinite(float(loss))
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    model.zero_grad()


# ---- options


@pytest.mark.parametrize("overrides,message", [
    ({"replace_confidence_threshold": 1.5}, "--replace-confidence-threshold must be a probability in [0, 1]"),
    ({"replace_random_above": -0.1}, "--replace-random-above must be a probability in [0, 1]"),
    ({"replace_confidence_threshold": 0.9, "replace_random_above": 0.5},
     "--replace-random-above 0.5 must be >= --replace-confidence-threshold 0.9"),
    ({"replace_random_pool": "model"}, "--replace-random-pool must be one of {target, source_target, vocab}"),
    ({"replace_position_schedule": "cosine"}, "--replace-position-schedule must be one of"),
    ({"replace_position_schedule": "exponential", "replace_position_constant": 1.5}, "must be in (0, 1)"),
    ({"replace_position_schedule": "sigmoid", "replace_position_constant": 0.5}, "must be >= 1"),
    ({"replace_position_constant": -1.0}, "--replace-position-constant must be a finite number >= 0"),
    ({"replace_imitation_weight": float("nan")}, "--replace-imitation-weight must be a finite number >= 0"),
])
def test_bad_values_are_rejected(toy_bin, overrides, message):
    cfg = make_cfg(toy_bin)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    with pytest.raises(ValueError) as err:
        validate_replacement_config(cfg)
    assert message in str(err.value)


def test_inert_options_warn(toy_bin):
    cfg = make_cfg(toy_bin)
    cfg.task, cfg.replace_pool = "translation_with_replacement", "target"
    cfg.replace_confidence_threshold, cfg.replace_imitation_weight = 0.9, 0.5
    cfg.replace_random_pool, cfg.replace_position_constant = "vocab", 0.5
    warnings = cli_validation.inert_option_warnings(cfg)
    assert len(warnings) == 4
    assert any(w.startswith("--replace-confidence-threshold 0.9 has no effect with --replace-pool target")
               for w in warnings)
    assert any(w.startswith("--replace-random-pool vocab has no effect without") for w in warnings)
    assert any(w.startswith("--replace-position-constant 0.5 has no effect") for w in warnings)


# ---- through fairseq-train

VARIANTS = ["--replace-pool", "model", "--replace-sample-prob", "1", "--replace-token-prob", "0.8",
            "--replace-position-schedule", "linear", "--replace-position-constant", "3",
            "--replace-confidence-threshold", "0.05", "--replace-random-above", "0.3",
            "--replace-imitation-weight", "0.5", "--replace-schedule", "linear", "--replace-schedule-updates", "4"]


def train_args(toy_bin, save_dir, max_update, *extra):
    return [toy_bin, "--user-dir", USER_DIR, "--task", "translation_with_replacement", *TINY_MODEL, *TRAIN_COMMON,
            "--save-dir", save_dir, "--max-update", str(max_update), "--criterion", "label_smoothed_cross_entropy",
            "--label-smoothing", "0.1", *VARIANTS, *extra]


def inner(log, key):
    return {int(u): float(v) for v, u in re.findall(rf"train_inner \| .*? {key}=([\d.]+).*?num_updates=(\d+)", log)}


@pytest.mark.slow
def test_resume_continues_exactly_with_every_variant(toy_bin, tmp_path):
    first = run_fairseq("train", train_args(toy_bin, tmp_path / "ck", 3))
    resumed = run_fairseq("train", train_args(toy_bin, tmp_path / "ck", 6))
    straight = run_fairseq("train", train_args(toy_bin, tmp_path / "straight", 6))
    log_first, log_resumed = first.stdout + first.stderr, resumed.stdout + resumed.stderr
    log_straight = straight.stdout + straight.stderr
    assert "@ 3 updates" in log_resumed, log_resumed[-2000:]
    imitation = inner(log_straight, "imitation")
    assert set(imitation) == set(range(1, 7)) and imitation[1] == 0.0  # p_s = 0 at update 0: no guess pass
    assert any(v > 0 for v in imitation.values()), log_straight[-2000:]
    for key in ("loss", "imitation", "replaced", "selected"):
        after, uninterrupted = inner(log_resumed, key), inner(log_straight, key)
        assert set(after) == {4, 5, 6}
        assert all(after[u] == uninterrupted[u] for u in after), (key, after, uninterrupted)
        assert all(inner(log_first, key)[u] == uninterrupted[u] for u in (1, 2, 3))
    assert "valid" in log_straight and not re.search(r"\| valid \|.*imitation", log_straight)


@pytest.mark.slow
def test_bad_value_fails_in_one_line_and_options_are_in_help(toy_bin, tmp_path):
    proc = run_fairseq("train", train_args(toy_bin, tmp_path / "ck", 2, "--replace-random-above", "2"), check=False)
    assert proc.returncode == 2 and "train_inner" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error" in line]
    assert lines == [lines[0]] and "--replace-random-above must be a probability in [0, 1]" in lines[0]
    out = run_fairseq("train", ["--user-dir", USER_DIR, "--task", "translation_with_replacement", "--help"]).stdout
    for flag in ("--replace-confidence-threshold", "--replace-random-above", "--replace-random-pool",
                 "--replace-position-schedule", "--replace-position-constant", "--replace-imitation-weight"):
        assert flag in out


@pytest.mark.slow
def test_two_ranks_pytorch_ddp_equals_legacy_ddp_with_the_variants(toy_bin, tmp_path):
    """Confidence rules, position schedule and the imitation term through the DDP wrapper (the KL's student is
    captured inside it): pytorch_ddp must equal legacy_ddp over 2 updates with --update-freq 2, and the
    imitation term must move the update."""
    from tests.test_ddp import GP, max_diff, params_after_one_update

    variants = ["--task", "translation_with_replacement", "--replace-pool", "model", "--replace-sample-prob", "1",
                "--replace-token-prob", "0.8", "--replace-confidence-threshold", "0.01", "--replace-random-above",
                "0.2", "--replace-position-schedule", "linear", "--replace-position-constant", "3",
                "--update-freq", "2", "--max-update", "2", "--lr", "0.1", *GP]
    imitation = [*variants, "--replace-imitation-weight", "1"]
    legacy = params_after_one_update(toy_bin, tmp_path / "legacy", imitation, "legacy_ddp")
    pytorch = params_after_one_update(toy_bin, tmp_path / "pytorch", imitation, "pytorch_ddp")
    without = params_after_one_update(toy_bin, tmp_path / "without", variants, "legacy_ddp")
    assert max_diff(legacy, pytorch) <= 1e-6
    assert max_diff(legacy, without) > 1e-4
