"""Unit tests of the gradient-penalty criterion on a tiny fairseq transformer built in-process.

Every expected value is computed here independently of ``fairseq_eb.gradient_penalty``: the reference
feeds precomputed embeddings to the encoder (``token_embeddings=``) and to the decoder (a stand-in
``embed_tokens``), writes label-smoothed cross-entropy out by hand and differentiates with plain
``torch.autograd``.
"""
import argparse
import contextlib
import copy
import math
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

from fairseq import options  # noqa: E402
from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion  # noqa: E402
from fairseq.data import Dictionary  # noqa: E402
from fairseq.dataclass.utils import convert_namespace_to_omegaconf, gen_parser_from_dataclass  # noqa: E402
from fairseq.logging import metrics  # noqa: E402
from fairseq.optim.dynamic_loss_scaler import DynamicLossScaler  # noqa: E402
from fairseq.tasks.translation import TranslationTask  # noqa: E402

import fairseq_eb  # noqa: E402,F401  (registers the criterion)
from fairseq_eb import gradient_penalty as gpmod  # noqa: E402
from fairseq_eb.criterions.label_smoothed_cross_entropy_with_gp import (  # noqa: E402
    LabelSmoothedCrossEntropyWithGpCriterion as GpCriterion,
)
from fairseq_eb.criterions.label_smoothed_cross_entropy_with_gp import (  # noqa: E402
    LabelSmoothedCrossEntropyWithGpCriterionConfig as GpConfig,
)
from tests.fairseq_tools import keep_float64_softmax  # noqa: E402

LS = 0.1  # label smoothing used throughout, so the smoothing term is covered too


@pytest.fixture(autouse=True)
def float64_log_softmax(monkeypatch):
    """Float64 models stay in float64 so the comparisons and finite differences can be tight."""
    keep_float64_softmax(monkeypatch)


def _math_sdpa():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


def _build(share: bool = True, dropout: float = 0.0):
    d = Dictionary()
    for i in range(20):
        d.add_symbol(f"w{i}")
    d.finalize(padding_factor=8)
    argv = ["/nonexistent", "--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1",
            "--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
            "--decoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
            "--dropout", str(dropout), "--cpu"]  # attention dropout stays at fairseq's default 0 (the SDPA trap)
    argv += ["--share-all-embeddings"] if share else []
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    cfg = convert_namespace_to_omegaconf(args)
    task = TranslationTask(cfg.task, d, d)
    torch.manual_seed(0)
    model = task.build_model(cfg.model)
    model.train()
    return task, model


@pytest.fixture(scope="module")
def shared():
    return _build(share=True)


@pytest.fixture(scope="module")
def separate():
    return _build(share=False)


def make_sample(d: Dictionary, bsz: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lo, hi = d.nspecial, d.nspecial + 20
    src = torch.randint(lo, hi, (bsz, 6), generator=g)
    src[0, :2] = d.pad()  # fairseq left-pads sources
    tgt = torch.randint(lo, hi, (bsz, 5), generator=g)
    tgt[:, -1] = d.eos()
    tgt[1, -1] = d.pad()  # a shorter, right-padded target
    tgt[1, -2] = d.eos()
    prev = torch.cat([torch.full((bsz, 1), d.eos()), tgt[:, :-1]], 1)
    prev[1, -1] = d.pad()
    return {"id": torch.arange(bsz), "nsentences": bsz, "ntokens": int(tgt.ne(d.pad()).sum()), "target": tgt,
            "net_input": {"src_tokens": src, "src_lengths": src.ne(d.pad()).sum(1), "prev_output_tokens": prev}}


def gp_criterion(task, **kw) -> GpCriterion:
    kw.setdefault("label_smoothing", LS)
    return GpCriterion(task, kw.pop("sentence_avg", False), **kw)


def plain_criterion(task, sentence_avg=False) -> LabelSmoothedCrossEntropyCriterion:
    return LabelSmoothedCrossEntropyCriterion(task, sentence_avg, LS)


def grads_of(model, loss):
    model.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


# ---------------------------------------------------------------- independent reference computation


class _Fixed(nn.Module):
    """Stand-in decoder ``embed_tokens`` that returns precomputed embeddings."""

    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, tokens):
        return self.value


@contextlib.contextmanager
def _decoder_embeddings(model, value):
    original = model.decoder.embed_tokens
    model.decoder.embed_tokens = _Fixed(value)
    try:
        yield
    finally:
        model.decoder.embed_tokens = original


def ref_summed_loss(model, sample, e_src, e_dec, pad):
    """Summed label-smoothed CE of the model fed the given token embeddings (written out by hand)."""
    net = sample["net_input"]
    with _math_sdpa():
        enc = model.encoder(net["src_tokens"], src_lengths=net["src_lengths"], token_embeddings=e_src)
        with _decoder_embeddings(model, e_dec):
            logits, _ = model.decoder(net["prev_output_tokens"], encoder_out=enc)
    lprobs = torch.log_softmax(logits.float() if logits.dtype == torch.half else logits, dim=-1)
    tgt = sample["target"]
    keep = tgt.ne(pad)
    nll = -lprobs.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)[keep].sum()
    smooth = -lprobs.sum(-1)[keep].sum()
    eps_i = LS / (lprobs.size(-1) - 1)
    return (1.0 - LS - eps_i) * nll + eps_i * smooth


def ref_embeddings(model, sample):
    net = sample["net_input"]
    return (F.embedding(net["src_tokens"], model.encoder.embed_tokens.weight),
            F.embedding(net["prev_output_tokens"], model.decoder.embed_tokens.weight))


def ref_exact_objective(model, sample, eps, pad, n):
    """``N * (l + 0.5*eps*sum_i ||dl/de_i||^2)`` over every lookup occurrence, l = L/N."""
    e_src, e_dec = ref_embeddings(model, sample)
    mean = ref_summed_loss(model, sample, e_src, e_dec, pad) / n
    g_src, g_dec = torch.autograd.grad(mean, [e_src, e_dec], create_graph=True)
    return n * (mean + 0.5 * eps * (g_src.pow(2).sum() + g_dec.pow(2).sum()))


def ref_fgm_objective(model, sample, eps, pad, n):
    """``L(e + eps * dl/de)`` with the gradient detached."""
    e_src, e_dec = ref_embeddings(model, sample)
    mean = ref_summed_loss(model, sample, e_src, e_dec, pad) / n
    g_src, g_dec = torch.autograd.grad(mean, [e_src, e_dec])
    e_src, e_dec = ref_embeddings(model, sample)
    return ref_summed_loss(model, sample, e_src + eps * g_src, e_dec + eps * g_dec, pad)


def ref_plain_summed(model, sample, pad):
    e_src, e_dec = ref_embeddings(model, sample)
    return ref_summed_loss(model, sample, e_src, e_dec, pad)


def assert_grads_close(a, b, rtol=1e-7, atol=1e-10):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=rtol, atol=atol, msg=lambda m: f"{name}: {m}")


# ---------------------------------------------------------------- exact method


@pytest.mark.parametrize("which,sentence_avg,fused", [
    ("shared", False, True), ("separate", False, True), ("shared", True, True),
    ("shared", False, False), ("separate", True, False)])
def test_exact_lookups_matches_independent_double_backprop(which, sentence_avg, fused, request):
    task, model = request.getfixturevalue(which)
    model = copy.deepcopy(model).double()
    sample = make_sample(task.target_dictionary)
    pad = task.target_dictionary.pad()
    n = sample["nsentences"] if sentence_avg else sample["ntokens"]
    eps = 1.0
    crit = gp_criterion(task, gp_epsilon=eps, sentence_avg=sentence_avg)
    assert crit._plain_output_layer(model)
    crit.fuse_output_layer = fused  # fused output-layer gradient vs plain autograd through fairseq's loss
    loss, sample_size, log = crit(model, sample)
    assert sample_size == n
    got = grads_of(model, loss)

    expected = ref_exact_objective(model, sample, eps, pad, n)
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-10)
    assert_grads_close(got, grads_of(model, expected))

    plain = ref_plain_summed(model, sample, pad).detach()
    gp = (expected.detach() - plain) / n / (0.5 * eps)
    assert gp > 1e-3, "penalty must be non-negligible, else this test proves nothing"
    torch.testing.assert_close(log["gp"] / n, gp, rtol=1e-8, atol=0)
    torch.testing.assert_close(log["loss"], expected.detach(), rtol=1e-10, atol=0)


def test_fused_output_layer_only_for_plain_transformer_head(shared):
    task, model = shared
    assert gp_criterion(task)._plain_output_layer(model)
    assert not gp_criterion(task, ignore_prefix_size=1)._plain_output_layer(model)
    model.decoder.output_projection.bias = nn.Parameter(torch.zeros(len(task.target_dictionary)))
    try:
        assert not gp_criterion(task)._plain_output_layer(model)
    finally:
        model.decoder.output_projection.bias = None


def test_exact_table_matches_independent_double_backprop(shared):
    task, model = shared
    model = copy.deepcopy(model).double()
    sample = make_sample(task.target_dictionary, seed=1)
    n, eps = sample["ntokens"], 0.7
    crit = gp_criterion(task, gp_epsilon=eps, gp_over="table")
    loss, _, log = crit(model, sample)
    got = grads_of(model, loss)

    # Independent: ordinary forward, dense gradient of the mean w.r.t. the (shared) weight table.
    weight = model.encoder.embed_tokens.weight
    assert weight is model.decoder.output_projection.weight
    with _math_sdpa():
        out = model(**sample["net_input"])
    lprobs = torch.log_softmax(out[0], -1)
    tgt, keep = sample["target"], sample["target"].ne(task.target_dictionary.pad())
    eps_i = LS / (lprobs.size(-1) - 1)
    summed = ((1 - LS - eps_i) * -lprobs.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)[keep].sum()
              + eps_i * -lprobs.sum(-1)[keep].sum())
    (g_table,) = torch.autograd.grad(summed / n, [weight], create_graph=True)
    expected = n * (summed / n + 0.5 * eps * g_table.pow(2).sum())
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-10)
    assert_grads_close(got, grads_of(model, expected))

    lookups_loss, _, lookups_log = gp_criterion(task, gp_epsilon=eps)(model, sample)
    assert not torch.allclose(lookups_log["gp"], log["gp"]), "table and lookups penalties must differ"


def test_penalty_gradient_matches_finite_differences(shared):
    """Central differences of the penalty P(theta) = (returned - plain)/N along a random direction."""
    task, model = shared
    model = copy.deepcopy(model).double()
    sample = make_sample(task.target_dictionary, seed=2)
    n = sample["ntokens"]
    gp = gp_criterion(task, gp_epsilon=1.0)
    plain = plain_criterion(task)

    def penalty():
        return (gp(model, sample)[0] - plain(model, sample)[0]) / n

    analytic = grads_of(model, penalty())
    params = dict(model.named_parameters())
    gen = torch.Generator().manual_seed(0)
    direction = {k: torch.randn(p.shape, generator=gen, dtype=p.dtype) for k, p in params.items()}
    expected = sum((analytic[k] * direction[k]).sum() for k in analytic).item()
    h = 1e-5
    with torch.enable_grad():  # the criterion needs grad mode; parameters are moved under no_grad
        values = []
        for sign in (1, -1):
            with torch.no_grad():
                for k, p in params.items():
                    p.add_(sign * h * direction[k])
            values.append(penalty().item())
            with torch.no_grad():
                for k, p in params.items():
                    p.sub_(sign * h * direction[k])
    numeric = (values[0] - values[1]) / (2 * h)
    assert abs(expected) > 1e-3
    assert numeric == pytest.approx(expected, rel=1e-5)


def test_epsilon_zero_equals_plain_criterion_exactly(shared):
    task, model = shared
    sample = make_sample(task.target_dictionary)
    torch.manual_seed(5)
    l0, n0, log0 = plain_criterion(task)(model, sample)
    g0 = grads_of(model, l0)
    for method in ("exact", "fgm"):
        torch.manual_seed(5)
        l1, n1, log1 = gp_criterion(task, gp_epsilon=0.0, gp_method=method)(model, sample)
        assert torch.equal(l0, l1) and n0 == n1
        assert log0.keys() == log1.keys()
        assert all(torch.equal(torch.as_tensor(log0[k]), torch.as_tensor(log1[k])) for k in log0)
        g1 = grads_of(model, l1)
        assert all(torch.equal(g0[k], g1[k]) for k in g0)


def test_sdpa_math_path_is_what_makes_double_backprop_work(shared, monkeypatch):
    """fairseq's default attention (dropout 0) picks a fused SDPA kernel without double backward."""
    task, model = shared
    sample = make_sample(task.target_dictionary)
    crit = gp_criterion(task, gp_epsilon=1.0)
    loss, _, _ = crit(model, sample)
    loss.backward()  # works with the math path forced for the penalty's forward
    assert model.encoder.layers[0].self_attn.dropout_module.p == 0.0
    monkeypatch.setattr(
        "fairseq_eb.gradient_penalty.double_backward_safe_attention",
        contextlib.nullcontext)
    try:
        bad, _, _ = crit(model, sample)
        bad.backward()
    except RuntimeError as err:
        assert "derivative" in str(err) or "not implemented" in str(err)
    else:
        pytest.skip("this torch build's default SDPA kernel supports double backward: trap absent")


# ---------------------------------------------------------------- fgm


def test_fgm_lookups_matches_independent_formula(shared):
    task, model = shared
    model = copy.deepcopy(model).double()
    sample = make_sample(task.target_dictionary, seed=3)
    pad, n, eps = task.target_dictionary.pad(), sample["ntokens"], 2.0
    crit = gp_criterion(task, gp_epsilon=eps, gp_method="fgm")
    loss, _, log = crit(model, sample)
    got = grads_of(model, loss)
    expected = ref_fgm_objective(model, sample, eps, pad, n)
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-10)
    assert_grads_close(got, grads_of(model, expected))
    # logged loss is the penalised objective (same definition as exact), and gp the exact ||dl/de||^2
    exact_obj = ref_exact_objective(model, sample, eps, pad, n).detach()
    torch.testing.assert_close(log["loss"], exact_obj, rtol=1e-10, atol=0)
    assert not torch.allclose(loss.detach(), ref_plain_summed(model, sample, pad).detach())


def test_fgm_table_matches_independent_formula(shared):
    task, model = shared
    model = copy.deepcopy(model).double()
    sample = make_sample(task.target_dictionary, seed=4)
    n, eps = sample["ntokens"], 2.0
    crit = gp_criterion(task, gp_epsilon=eps, gp_method="fgm", gp_over="table")
    loss, _, _ = crit(model, sample)
    got = grads_of(model, loss)

    plain = plain_criterion(task)
    (g_table,) = torch.autograd.grad(plain(model, sample)[0] / n, [model.encoder.embed_tokens.weight])
    shifted = copy.deepcopy(model)
    with torch.no_grad():
        shifted.encoder.embed_tokens.weight.add_(eps * g_table)  # shared: also decoder in/out embeddings
    expected = plain(shifted, sample)[0]
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-10)
    assert_grads_close(got, grads_of(shifted, expected))


def test_fgm_gradient_approximates_exact_penalty_gradient(shared):
    """Why fgm: its parameter gradient equals the exact penalty's to first order in eps."""
    task, model = shared
    model = copy.deepcopy(model).double()
    sample = make_sample(task.target_dictionary, seed=5)
    g_plain = grads_of(model, plain_criterion(task)(model, sample)[0])
    flat = lambda g: torch.cat([(g[k] - g_plain[k]).flatten() for k in sorted(g)])  # noqa: E731
    errors = []
    for eps in (1e-2, 1e-3):
        d_exact = flat(grads_of(model, gp_criterion(task, gp_epsilon=eps)(model, sample)[0]))
        d_fgm = flat(grads_of(model, gp_criterion(task, gp_epsilon=eps, gp_method="fgm")(model, sample)[0]))
        errors.append(((d_fgm - d_exact).norm() / d_exact.norm()).item())
    assert errors[1] < 2e-2
    assert errors[1] < errors[0] / 5, f"error must shrink ~linearly with eps: {errors}"


def test_fgm_reuses_dropout_masks_and_advances_rng_once():
    task, model = _build(share=True, dropout=0.3)
    sample = make_sample(task.target_dictionary)
    torch.manual_seed(11)
    plain, _, _ = plain_criterion(task)(model, sample)
    after_plain = torch.rand(1)
    torch.manual_seed(11)
    fgm, _, _ = gp_criterion(task, gp_epsilon=1e-9, gp_method="fgm")(model, sample)
    after_fgm = torch.rand(1)
    torch.testing.assert_close(fgm, plain, rtol=1e-5, atol=1e-5)
    assert torch.equal(after_plain, after_fgm)


# ---------------------------------------------------------------- evaluation, logging, options


def test_validation_returns_plain_loss_without_penalty(shared):
    task, model = shared
    sample = make_sample(task.target_dictionary)
    crit, plain = gp_criterion(task, gp_epsilon=1.0), plain_criterion(task)
    model.eval()
    try:
        with torch.no_grad():
            got, expected = crit(model, sample), plain(model, sample)
    finally:
        model.train()
    assert torch.equal(got[0], expected[0]) and "gp" not in got[2]
    assert torch.equal(got[2]["nll_loss"], expected[2]["nll_loss"])
    with torch.no_grad():  # train mode but no grad (e.g. a user's eval loop): still plain
        assert "gp" not in crit(model, sample)[2]
    with metrics.aggregate() as agg:
        GpCriterion.reduce_metrics([got[2]])
    assert "gp" not in agg.get_smoothed_values() and "loss" in agg.get_smoothed_values()


def test_empty_sample_gets_no_penalty_instead_of_dividing_by_zero(shared):
    task, model = shared
    sample = make_sample(task.target_dictionary)
    sample["ntokens"] = 0
    loss, sample_size, log = gp_criterion(task, gp_epsilon=1.0)(model, sample)
    assert sample_size == 0 and torch.isfinite(loss)
    assert log["gp"] == 0 and log["gp_sample_size"] == 0  # keys kept: fairseq sums logs key by key


def test_gp_metric_is_sample_size_weighted_mean(shared):
    task, model = shared
    crit = gp_criterion(task, gp_epsilon=1.0)
    logs = [crit(model, make_sample(task.target_dictionary, bsz=b, seed=b))[2] for b in (2, 4)]
    per_batch = [log["gp"].item() / log["sample_size"] for log in logs]
    sizes = [log["sample_size"] for log in logs]
    with metrics.aggregate() as agg:
        GpCriterion.reduce_metrics(logs)
    expected = (per_batch[0] * sizes[0] + per_batch[1] * sizes[1]) / sum(sizes)
    assert agg.get_smoothed_values()["gp"] == pytest.approx(expected, rel=1e-4)


def test_options_in_parser_with_defaults_and_choices():
    parser = argparse.ArgumentParser()
    gen_parser_from_dataclass(parser, GpConfig())
    text = parser.format_help()
    for flag in ("--gp-epsilon", "--gp-over {lookups,table}", "--gp-method {exact,fgm,auto}", "--gp-interval",
                 "--gp-warmup-updates", "--gp-attention {auto,blockwise,math}"):
        assert flag in text
    args = parser.parse_args([])
    assert (args.gp_epsilon, args.gp_over, args.gp_method) == (1.0, "lookups", "exact")
    with pytest.raises(SystemExit):
        parser.parse_args(["--gp-over", "rows"])


@pytest.mark.parametrize("kwargs,message", [
    (dict(gp_epsilon=-0.1), "--gp-epsilon must be a finite number >= 0"),
    (dict(gp_epsilon=float("nan")), "--gp-epsilon must be a finite number >= 0"),
    (dict(gp_epsilon=float("inf")), "--gp-epsilon must be a finite number >= 0"),
    (dict(gp_over="rows"), "--gp-over must be one of {lookups, table}"),
    (dict(gp_method="pgd"), "--gp-method must be one of {exact, fgm, auto}"),
    (dict(gp_interval=0), "--gp-interval must be an integer >= 1, got 0"),
    (dict(gp_interval=2.0), "--gp-interval must be an integer >= 1, got 2.0"),
    (dict(gp_warmup_updates=-1), "--gp-warmup-updates must be an integer >= 0, got -1"),
    (dict(ddp_backend="fully_sharded", distributed_world_size=4), "use --ddp-backend pytorch_ddp or legacy_ddp"),
    (dict(ddp_backend="slowmo", distributed_world_size=2, gp_method="fgm"), "does not support --ddp-backend slowmo"),
    (dict(gp_attention="flash"), "--gp-attention must be one of {auto, blockwise, math}"),
    (dict(fp16=True), "--gp-method exact .double backprop. does not train under --fp16"),
    (dict(memory_efficient_fp16=True, gp_method="auto"), "use --amp .mixed precision, checked. or --gp-method fgm"),
])
def test_bad_options_fail_at_setup_naming_option_and_range(shared, kwargs, message):
    task, _ = shared
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        gp_criterion(task, **kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(ddp_backend="legacy_ddp", distributed_world_size=2),
    dict(ddp_backend="no_c10d", distributed_world_size=2),
    dict(ddp_backend="pytorch_ddp", distributed_world_size=2),
    dict(ddp_backend="c10d", distributed_world_size=2, gp_method="fgm"),
    dict(ddp_backend="fully_sharded", distributed_world_size=1),
    dict(ddp_backend="slowmo", distributed_world_size=2, gp_epsilon=0.0),
    dict(fp16=True, gp_method="fgm"),
    dict(fp16=True, gp_epsilon=0.0),
    dict(gp_attention="math"),
])
def test_supported_setups_accepted(shared, kwargs):
    task, _ = shared
    gp_criterion(task, **kwargs)


# ---------------------------------------------------------------- fp16 / non-finite


class _OverflowingBackward(torch.autograd.Function):
    """Identity whose backward overflows, like an fp16 backward that exceeds the half range."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


@pytest.mark.parametrize("method", ["exact", "fgm"])
def test_nonfinite_penalty_reaches_fairseq_overflow_check(shared, method):
    task, model = shared
    model = copy.deepcopy(model)
    sample = make_sample(task.target_dictionary)
    # Downstream of the captured lookups (the encoder's embedding dropout), so dL/de overflows.
    handle = model.encoder.dropout_module.register_forward_hook(lambda m, i, out: _OverflowingBackward.apply(out))
    try:
        loss, _, log = gp_criterion(task, gp_epsilon=1.0, gp_method=method)(model, sample)
    finally:
        handle.remove()
    assert not math.isfinite(log["gp"].item()), "a non-finite penalty must not be masked"
    if method == "exact":
        assert not torch.isfinite(loss)
    # What fairseq's FP16Optimizer does: scaled backward, grad norm, overflow check -> skip the step.
    scaler = DynamicLossScaler(init_scale=128.0)
    model.zero_grad()
    (loss * scaler.loss_scale).backward()
    grad_norm = torch.norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]))
    with pytest.raises(OverflowError):
        scaler.check_overflow(grad_norm)
    assert scaler.loss_scale == 64.0


def test_squared_norm_propagates_nonfinite_and_accumulates_in_fp32():
    half = torch.full((4,), 300.0, dtype=torch.half)  # 300^2 = 90000 overflows fp16
    assert gpmod.squared_norm_fp32([half, None]).item() == pytest.approx(4 * 90000.0)
    assert gpmod.squared_norm_fp32([half]).dtype == torch.float32
    assert math.isinf(gpmod.squared_norm_fp32([torch.tensor([1.0, float("inf")])]).item())
    assert math.isnan(gpmod.squared_norm_fp32([torch.tensor([float("nan")])]).item())
    with pytest.raises(ValueError, match="no gradient reached the embeddings"):
        gpmod.squared_norm_fp32([None])


def test_half_precision_penalty_does_not_underflow(shared):
    """With a large sample_size the per-token gradients of the *mean* underflow in fp16; ours don't."""
    task, model = shared
    sample = make_sample(task.target_dictionary)
    sample["ntokens"] = 20000  # as in a big batch: the mean's gradient is ~1/20000 of the sum's
    gp32 = gp_criterion(task, gp_epsilon=1.0)(model, sample)[2]["gp"]
    half = copy.deepcopy(model).half()
    loss16, _, log16 = gp_criterion(task, gp_epsilon=1.0)(half, sample)
    assert log16["gp"].dtype == torch.float32 and torch.isfinite(loss16)
    assert log16["gp"].item() == pytest.approx(gp32.item(), rel=2e-2)
    # The naive way (gradient of the fp16 mean, squares in fp16) loses most of it, so the check above bites.
    e_src, e_dec = ref_embeddings(half, sample)
    mean16 = ref_summed_loss(half, sample, e_src, e_dec, task.target_dictionary.pad()).half() / sample["ntokens"]
    naive = sum(g.pow(2).sum().float() for g in torch.autograd.grad(mean16, [e_src, e_dec])) * sample["ntokens"]
    assert naive.item() < 0.5 * gp32.item()


@pytest.mark.parametrize("method,over", [("exact", "lookups"), ("exact", "table"), ("fgm", "lookups"),
                                         ("fgm", "table")])
def test_runs_under_autocast_like_amp(shared, method, over):
    """fairseq's --amp runs the criterion under autocast and the backward outside it (CPU bf16 here)."""
    task, model = shared
    sample = make_sample(task.target_dictionary)
    crit = gp_criterion(task, gp_epsilon=1.0, gp_method=method, gp_over=over)
    gp32 = crit(model, sample)[2]["gp"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _, log = crit(model, sample)
    grads = grads_of(model, loss)
    assert log["gp"].dtype == torch.float32 and log["gp"].item() == pytest.approx(gp32.item(), rel=5e-2)
    assert all(torch.isfinite(g).all() for g in grads.values())


def test_lookup_capture_dedupes_shared_module_and_checks_shifts(shared, separate):
    for (task, model), expected in ((shared, 1), (separate, 2)):
        assert len(gpmod.embedding_modules(model)) == expected
    task, model = shared
    sample = make_sample(task.target_dictionary)
    mods = gpmod.embedding_modules(model)
    with gpmod.LookupCapture(mods) as cap:
        model(**sample["net_input"])
    assert [tuple(o.shape) for o in cap.outputs] == [(3, 6, 16), (3, 5, 16)]
    with pytest.raises(RuntimeError, match="embedding lookups differ"):
        with gpmod.LookupCapture(mods, shifts=[torch.zeros(1)]):
            model(**sample["net_input"])
    with pytest.raises(ValueError, match="no encoder/decoder 'embed_tokens'"):
        gpmod.embedding_modules(nn.Linear(2, 2))
