"""The task adapter in-process: it corrupts a copy in train_step only, deterministically."""
import pytest
import torch

from fairseq_eb.tasks import translation_with_replacement as twr
from fairseq_eb.tasks.translation_with_replacement import (
    TranslationWithReplacementConfig,
    TranslationWithReplacementTask,
    ordinary_symbol_range,
    validate_replacement_config,
)


class TinyModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.num_updates = None

    def set_num_updates(self, n):
        self.num_updates = n


class RecordingCriterion:
    """Stands in for a criterion: records the sample it is given and returns a differentiable loss."""

    def __call__(self, model, sample):
        self.seen = sample
        loss = model.w.sum() * sample["net_input"]["prev_output_tokens"].float().sum()
        return loss, 1, {"ntokens": sample["ntokens"], "loss": loss.detach()}


class BackwardOnly:
    def backward(self, loss):
        loss.backward()


def make_cfg(toy_bin, seed=7) -> TranslationWithReplacementConfig:
    return TranslationWithReplacementConfig(
        data=str(toy_bin), source_lang="src", target_lang="tgt", seed=seed,
        dataset_impl="mmap", required_seq_len_multiple=1,
    )


def make_task(toy_bin, **overrides) -> TranslationWithReplacementTask:
    cfg = make_cfg(toy_bin)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    task = TranslationWithReplacementTask.setup_task(cfg)
    task.load_dataset("train")
    return task


def batch(task, n=32):
    ds = task.dataset("train")
    return ds.collater([ds[i] for i in range(n)])


def step(task, sample, update_num, ignore_grad=False):
    crit, model = RecordingCriterion(), TinyModel()
    loss, _, log = task.train_step(sample, model, crit, BackwardOnly(), update_num, ignore_grad=ignore_grad)
    return crit.seen, log, model, loss


def test_train_step_corrupts_a_copy_and_keeps_targets(toy_bin):
    task = make_task(toy_bin, replace_sample_prob=1.0, replace_token_prob=1.0)
    sample = batch(task)
    prev_before = sample["net_input"]["prev_output_tokens"].clone()
    target_before = sample["target"].clone()
    seen, log, model, _ = step(task, sample, update_num=3)
    new_prev = seen["net_input"]["prev_output_tokens"]
    pad = task.tgt_dict.pad()
    assert torch.equal(sample["net_input"]["prev_output_tokens"], prev_before)  # caller's batch untouched
    assert torch.equal(seen["target"], target_before)  # loss still predicts the originals
    assert seen["net_input"]["src_tokens"] is sample["net_input"]["src_tokens"]
    assert torch.equal(new_prev[:, 0], prev_before[:, 0])  # BOS kept
    assert torch.equal(new_prev.eq(pad), prev_before.eq(pad))  # PAD kept
    eligible = prev_before.ne(pad).sum() - len(prev_before)
    assert int(log["eb_selected"]) == int(eligible)  # p_s = p_t = 1: every y1..yn selected
    # `replaced` counts actual changes: a draw from the sentence's own tokens may equal the original
    assert int(log["eb_replaced"]) == int(new_prev.ne(prev_before).sum())
    assert 0 < int(log["eb_replaced"]) < int(eligible)
    assert model.num_updates == 3 and model.w.grad is not None  # fairseq's train_step still ran


def test_validation_sees_no_corruption(toy_bin):
    task = make_task(toy_bin, replace_sample_prob=1.0, replace_token_prob=1.0)
    sample = batch(task)
    crit = RecordingCriterion()
    task.valid_step(sample, TinyModel(), crit)
    assert crit.seen is sample


def test_same_update_same_corruption_after_restart_and_rank_differs(toy_bin, monkeypatch):
    sample = batch(make_task(toy_bin))
    first = step(make_task(toy_bin), sample, 5)[0]["net_input"]["prev_output_tokens"]
    # a fresh task (as after resuming from a checkpoint) at the same update draws the same corruption
    again = step(make_task(toy_bin), sample, 5)[0]["net_input"]["prev_output_tokens"]
    assert torch.equal(first, again)
    later = step(make_task(toy_bin), sample, 6)[0]["net_input"]["prev_output_tokens"]
    assert not torch.equal(first, later)
    monkeypatch.setattr(twr, "_data_parallel_rank", lambda: 1)
    other_rank = step(make_task(toy_bin), sample, 5)[0]["net_input"]["prev_output_tokens"]
    assert not torch.equal(first, other_rank)


def test_gradient_accumulation_micro_batches_draw_differently(toy_bin):
    task = make_task(toy_bin)
    sample = batch(task)
    a = step(task, sample, 4)[0]["net_input"]["prev_output_tokens"]
    b = step(task, sample, 4)[0]["net_input"]["prev_output_tokens"]  # --update-freq 2: same update
    assert not torch.equal(a, b)


def test_warmup_starts_without_corruption(toy_bin):
    task = make_task(toy_bin, replace_sample_prob=1.0, replace_token_prob=1.0, replace_warmup_updates=10)
    sample = batch(task)
    seen, log, _, _ = step(task, sample, 0)
    assert seen is sample and int(log["eb_replaced"]) == 0
    _, log_half, _, _ = step(task, sample, 5)
    _, log_full, _, _ = step(task, sample, 10)
    assert 0 < int(log_half["eb_replaced"]) < int(log_full["eb_replaced"])


def test_ignore_grad_is_respected(toy_bin):
    task = make_task(toy_bin)
    _, _, model, loss = step(task, batch(task), 1, ignore_grad=True)
    assert float(loss.detach()) == 0.0 and float(model.w.grad.abs().sum()) == 0.0


def test_vocab_pool_uses_ordinary_symbols(toy_bin):
    task = make_task(toy_bin, replace_sample_prob=1.0, replace_token_prob=1.0, replace_pool="vocab")
    low, high = ordinary_symbol_range(task.tgt_dict)
    assert low == task.tgt_dict.nspecial
    assert not any(task.tgt_dict[i].startswith("madeupword") for i in range(low, high))
    seen, _, _, _ = step(task, batch(task), 2)
    prev = seen["net_input"]["prev_output_tokens"]
    body = prev[:, 1:][prev[:, 1:].ne(task.tgt_dict.pad())]
    assert body.min() >= low and body.max() < high


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("replace_sample_prob", 1.5, r"--replace-sample-prob must be a probability in \[0, 1\], got 1.5"),
        ("replace_sample_prob", -0.1, r"--replace-sample-prob must be a probability in \[0, 1\]"),
        ("replace_token_prob", 2, r"--replace-token-prob must be a probability in \[0, 1\]"),
        ("replace_pool", "words", r"--replace-pool must be one of \{target, source_target, vocab, model\}"),
        ("replace_warmup_updates", -3, r"--replace-warmup-updates must be an integer >= 0"),
        ("replace_model_temperature", -1.0, r"--replace-model-temperature must be a finite number >= 0"),
        ("replace_schedule", "cosine", r"--replace-schedule must be one of \{constant, linear, exponential, "
         r"inverse_sigmoid\}"),
        ("replace_schedule", "linear", r"--replace-schedule linear needs --replace-schedule-updates > 0"),
        ("replace_schedule_updates", -5, r"--replace-schedule-updates must be an integer >= 0, got -5"),
        ("replace_schedule_shape", -1.0, r"--replace-schedule-shape must be a finite number >= 0"),
    ],
)
def test_bad_options_fail_at_setup(toy_bin, field, value, message):
    cfg = make_cfg(toy_bin, seed=1)
    setattr(cfg, field, value)
    with pytest.raises(ValueError, match=message):
        validate_replacement_config(cfg)
    with pytest.raises(ValueError, match=message):
        TranslationWithReplacementTask.setup_task(cfg)


def test_warmup_and_a_schedule_together_are_refused(toy_bin):
    cfg = make_cfg(toy_bin)
    cfg.replace_warmup_updates, cfg.replace_schedule, cfg.replace_schedule_updates = 10, "exponential", 10
    with pytest.raises(ValueError, match="--replace-warmup-updates is the linear schedule; use it or "
                                         "--replace-schedule exponential"):
        validate_replacement_config(cfg)


@pytest.mark.parametrize("schedule,update,fraction", [
    ("linear", 25, 0.25), ("exponential", 100, 1 - 2.718281828459045 ** -5), ("inverse_sigmoid", 50, 0.5),
    ("inverse_sigmoid", 0, 0.0), ("constant", 0, 1.0)])
def test_schedule_drives_sample_prob(toy_bin, schedule, update, fraction):
    cfg = make_cfg(toy_bin)
    cfg.replace_sample_prob, cfg.replace_schedule = 0.8, schedule
    cfg.replace_schedule_updates = 0 if schedule == "constant" else 100
    validate_replacement_config(cfg)
    assert twr.scheduled_sample_prob(cfg, update) == pytest.approx(0.8 * fraction, abs=1e-12)


def test_warmup_option_is_the_linear_schedule(toy_bin):
    warm, lin = make_cfg(toy_bin), make_cfg(toy_bin)
    warm.replace_warmup_updates = 40
    lin.replace_schedule, lin.replace_schedule_updates = "linear", 40
    for u in (0, 1, 13, 39, 40, 500):
        assert twr.scheduled_sample_prob(warm, u) == twr.scheduled_sample_prob(lin, u) == 0.5 * min(1, u / 40)
