"""--replace-pool model (parallel scheduled sampling) in-process on a tiny fairseq transformer.

Expected replacements come from an independent no-grad forward of the same model written here, and the
selected positions from the gates of the *target* pool with the same seed (the gates do not depend on the
pool, which is checked too).
"""
import os

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

from fairseq import options  # noqa: E402
from fairseq.dataclass.utils import convert_namespace_to_omegaconf  # noqa: E402

from fairseq_eb.corruption import align_model_guesses, corrupt_decoder_input  # noqa: E402
from fairseq_eb.model_guesses import model_guesses  # noqa: E402
from tests.test_task import BackwardOnly, batch, make_task  # noqa: E402


def tiny_model(task, dropout=0.3):
    argv = ["/nonexistent", "--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1",
            "--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
            "--decoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
            "--dropout", str(dropout), "--share-all-embeddings", "--cpu"]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    torch.manual_seed(0)
    model = task.build_model(cfg.model)
    model.train()
    return model


@pytest.fixture(scope="module")
def setup(toy_bin):
    task = make_task(toy_bin, replace_pool="model", replace_sample_prob=0.5, replace_token_prob=0.5)
    return task, tiny_model(task), batch(task, 16)


def independent_argmax(model, sample):
    model.eval()
    with torch.no_grad():
        logits, _ = model(**sample["net_input"])
    model.train()
    return logits.argmax(-1)


def selected_by_gates(task, sample, seed):
    gen = torch.Generator().manual_seed(seed)
    prev = sample["net_input"]["prev_output_tokens"]
    return corrupt_decoder_input(prev, pad=task.tgt_dict.pad(), sample_prob=task.cfg.replace_sample_prob,
                                 token_prob=task.cfg.replace_token_prob, pool="target", generator=gen).selected


def test_replacements_are_the_argmax_of_an_independent_forward_at_selected_positions(setup):
    task, model, sample = setup
    prev = sample["net_input"]["prev_output_tokens"]
    task.micro_batches.__init__()
    result = task.corrupt_sample(sample, 3, model=model)
    tokens = result.sample["net_input"]["prev_output_tokens"]
    selected = selected_by_gates(task, sample, result.seed)
    guess = independent_argmax(model, sample)  # guess[:, j] predicts target[j] = prev[:, j + 1]
    low, high = task.vocab_range
    expected = prev.clone()
    for i, j in selected.nonzero().tolist():
        g = int(guess[i, j - 1])
        if low <= g < high:
            expected[i, j] = g
    assert torch.equal(result.sample["net_input"]["prev_output_tokens"], expected)
    assert torch.equal(tokens[~selected], prev[~selected])  # nothing else moves, BOS/PAD included
    assert int(result.selected) == int(selected.sum()) > 0
    assert int(result.changed) == int(tokens.ne(prev).sum()) > 0
    assert result.sample["target"] is sample["target"] and model.training


def test_special_guesses_keep_the_gold_token():
    prev = torch.tensor([[2, 10, 11, 12, 1], [1, 2, 13, 14, 15]])  # right- and left-padded, BOS=2, PAD=1
    guesses = torch.tensor([[20, 3, 21, 2, 1], [1, 0, 22, 23, 2]])  # specials: 0..3; 2 = EOS here
    out = align_model_guesses(prev, guesses, (4, 30))
    assert out.tolist() == [[2, 20, 11, 21, 1], [1, 2, 13, 22, 23]]


def test_guess_pass_leaves_rng_dropout_and_train_mode_alone(setup):
    task, model, sample = setup
    torch.manual_seed(123)
    state = torch.get_rng_state()
    task.micro_batches.__init__()
    result = task.corrupt_sample(sample, 7, model=model)
    assert int(result.selected) > 0  # the guess pass did run
    assert torch.equal(torch.get_rng_state(), state) and model.training
    # the real forward after it gets the same dropout masks as without it
    torch.manual_seed(5)
    a = model(**result.sample["net_input"])[0]
    task.micro_batches.__init__()
    torch.manual_seed(5)
    task.corrupt_sample(sample, 7, model=model)
    b = model(**result.sample["net_input"])[0]
    torch.manual_seed(5)
    c = model(**result.sample["net_input"])[0]
    assert torch.equal(a, b) and torch.equal(b, c)


def test_train_step_runs_the_real_forward_on_the_corrupted_input(setup):
    task, model, sample = setup

    class Recording:
        def __call__(self, model, s):
            self.seen = s["net_input"]["prev_output_tokens"]
            out = model(**s["net_input"])[0]
            return out.float().mean(), 1, {"ntokens": s["ntokens"]}

    crit = Recording()
    task.micro_batches.__init__()
    _, _, log = task.train_step(sample, model, crit, BackwardOnly(), 3)
    task.micro_batches.__init__()
    expected = task.corrupt_sample(sample, 3, model=model).sample["net_input"]["prev_output_tokens"]
    assert torch.equal(crit.seen, expected) and int(log["eb_replaced"]) > 0
    assert int(log["eb_replaced"]) <= int(log["eb_selected"])
    model.zero_grad()


def test_temperature_sampling_is_seeded_and_cold_equals_argmax(setup):
    task, model, sample = setup
    net = sample["net_input"]
    argmax = independent_argmax(model, sample)
    draw = lambda t, s: model_guesses(model, net, temperature=t, generator=torch.Generator().manual_seed(s))  # noqa
    assert torch.equal(draw(1e-4, 0), argmax)
    assert torch.equal(draw(1.0, 0), draw(1.0, 0))
    assert not torch.equal(draw(1.0, 0), draw(1.0, 1))
    assert not torch.equal(draw(5.0, 0), argmax)


def test_autocast_applies_to_the_guess_pass(setup):
    _, model, sample = setup
    dtypes = []
    handle = model.decoder.output_projection.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    try:
        model_guesses(model, sample["net_input"], autocast=True)  # CPU autocast = bfloat16
        model_guesses(model, sample["net_input"], autocast=False)
    finally:
        handle.remove()
    assert dtypes == [torch.bfloat16, torch.float32]


def test_no_selected_position_skips_the_forward(setup):
    task, model, sample = setup
    calls = []
    handle = model.encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        prev = sample["net_input"]["prev_output_tokens"]
        out = corrupt_decoder_input(prev, pad=1, sample_prob=0.0, token_prob=1.0, pool="model", vocab_range=(4, 9),
                                    model_guesses=lambda g: model_guesses(model, sample["net_input"]))
    finally:
        handle.remove()
    assert calls == [] and torch.equal(out.tokens, prev) and not out.selected.any()


def test_model_pool_needs_the_model(setup):
    task, _, sample = setup
    with pytest.raises(ValueError, match="--replace-pool model needs the model"):
        task.corrupt_sample(sample, 1)
