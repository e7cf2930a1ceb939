"""The exact penalty's attention (``fairseq_eb.attention``): twice differentiable, no ``T x T`` tensor kept
for the second backward, and on long sequences the same loss and gradients as an independent double
backprop through SDPA's math backend."""
import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F
from fairseq.modules.multihead_attention import MultiheadAttention

from fairseq_eb import attention as att
from tests.test_gradient_penalty import (  # noqa: F401  (fixtures)
    _build,
    _math_sdpa,
    assert_grads_close,
    float64_log_softmax,
    gp_criterion,
    grads_of,
    ref_exact_objective,
)

torch.set_num_threads(1)


@pytest.fixture(params=["fused", "blockwise"])
def kernel(request, monkeypatch):
    """Both code paths: torch's fused CPU kernel for the value and first-order backward, or the blockwise
    torch-ops version (what non-CPU devices use), with blocks of a few rows so several blocks run."""
    if request.param == "blockwise":
        monkeypatch.setattr(att, "_cpu_fused", lambda q, v, mask: False)
    monkeypatch.setattr(att, "BLOCK_ELEMENTS", 2 * 2 * 3 * 7)
    return request.param


def _qkv(L=5, S=7, E=3, Ev=3, B=2, H=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, H, n, e, dtype=torch.float64, generator=g).requires_grad_()
                 for n, e in ((L, E), (S, E), (S, Ev)))


def _masks(B=2, H=2, L=5, S=7):
    pad = torch.zeros(B, 1, 1, S, dtype=torch.float64)
    pad[0, ..., :2] = float("-inf")  # fairseq's key padding mask after F.multi_head_attention_forward
    full = torch.randn(B, H, L, S, dtype=torch.float64)
    full[1, 0, 2, 3:] = float("-inf")
    allowed = torch.rand(B, H, L, S, generator=torch.Generator().manual_seed(1)) > 0.4
    allowed[..., 0] = True
    # fairseq's future mask (float, not is_causal): the blocks of early rows skip the trailing keys
    future = torch.zeros(L, S, dtype=torch.float64).masked_fill_(torch.ones(L, S, dtype=torch.bool).triu(1),
                                                                 float("-inf"))
    return {"none": None, "key padding": pad, "float": full, "bool": allowed, "future": future}


@pytest.mark.parametrize("mask_name", ["none", "key padding", "float", "bool", "future", "causal"])
def test_attention_values_and_first_and_second_derivatives(kernel, mask_name):
    causal = mask_name == "causal"
    q, k, v = _qkv(L=5, S=5 if causal else 7)
    mask = None if causal else _masks(S=k.size(-2))[mask_name]
    sdpa = att.make_penalty_sdpa(F.scaled_dot_product_attention)

    def f(q, k, v):
        return sdpa(q, k, v, attn_mask=mask, is_causal=causal)

    with _math_sdpa():
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    torch.testing.assert_close(f(q, k, v), expected, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(f, (q, k, v))
    assert torch.autograd.gradgradcheck(f, (q, k, v))


def test_second_derivative_with_other_value_width_and_scale(kernel):
    q, k, v = _qkv(L=4, S=6, E=3, Ev=5)
    sdpa = att.make_penalty_sdpa(F.scaled_dot_product_attention)
    assert torch.autograd.gradgradcheck(lambda q, k, v: sdpa(q, k, v, scale=0.3), (q, k, v))


def test_second_derivative_matches_math_backend_double_backprop(kernel):
    """The full second-order structure used by the penalty: grad with create_graph, squared norm, backward."""
    q, k, v = _qkv(L=6, S=9, E=4, Ev=4)
    mask = _masks(L=6, S=9)["key padding"]
    sdpa = att.make_penalty_sdpa(F.scaled_dot_product_attention)
    w = torch.randn(6, 4, dtype=torch.float64)

    def objective(fn):
        out = fn(q, k, v, attn_mask=mask)
        g = torch.autograd.grad((out * w).sin().sum(), (q, k, v), create_graph=True)
        total = sum(x.pow(2).sum() for x in g)
        return total, torch.autograd.grad(total, (q, k, v))

    got, got_grads = objective(sdpa)
    with _math_sdpa():
        expected, expected_grads = objective(F.scaled_dot_product_attention)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    for a, b in zip(got_grads, expected_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_fully_masked_rows_give_zero_like_sdpa(kernel):
    q, k, v = _qkv()
    allowed = torch.ones(2, 2, 5, 7, dtype=torch.bool)
    allowed[0, 1, 3] = False
    sdpa = att.make_penalty_sdpa(F.scaled_dot_product_attention)
    out = sdpa(q, k, v, attn_mask=allowed)
    with _math_sdpa():
        torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=allowed))
    assert torch.all(out[0, 1, 3] == 0)
    grads = torch.autograd.grad(out.pow(2).sum(), (q, k, v), create_graph=True)
    second = torch.autograd.grad(sum(g.pow(2).sum() for g in grads), (q, k, v))
    assert all(torch.isfinite(g).all() for g in grads + second)


@pytest.mark.parametrize("kwargs", [dict(dropout_p=0.1), dict(enable_gqa=True)])
def test_unsupported_calls_go_to_the_fallback(kwargs):
    q, k, v = _qkv()
    calls = []

    def fallback(*args, **kw):
        calls.append(kw)
        return torch.zeros(())

    att.make_penalty_sdpa(fallback)(q, k, v, **kwargs)
    assert len(calls) == 1 and all(calls[0][name] == value for name, value in kwargs.items())


def test_blockwise_attention_runs_in_the_autocast_dtype():
    """Under autocast (fairseq's --amp) the kernel computes in the autocast dtype, off it in the inputs' dtype; on
    every torch the matrix covers (torch < 2.4 has only the per-device autocast functions)."""
    q, k, v = _qkv()
    sdpa = att.make_penalty_sdpa(F.scaled_dot_product_attention)
    assert att._autocast_dtype("cpu") is None and sdpa(q, k, v).dtype == q.dtype
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert att._autocast_dtype("cpu") == torch.bfloat16
        out = sdpa(q, k, v)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), F.scaled_dot_product_attention(q, k, v), atol=3e-2, rtol=3e-2)


def test_context_swaps_and_restores_even_on_error():
    sdpa, forward = F.scaled_dot_product_attention, MultiheadAttention.forward
    with pytest.raises(KeyError):
        with att.penalty_attention():
            assert F.scaled_dot_product_attention is not sdpa and MultiheadAttention.forward is not forward
            raise KeyError
    assert F.scaled_dot_product_attention is sdpa and MultiheadAttention.forward is forward


# ---------------------------------------------------------------- the criterion on long sequences

T = 300


def _long_sample(d, bsz=2, length=T, seed=0):
    """Source and target of about ``length`` tokens, with left-padded source and right-padded target."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = d.nspecial, d.nspecial + 20
    src = torch.randint(lo, hi, (bsz, length), generator=g)
    src[0, :7] = d.pad()
    src[:, -1] = d.eos()
    tgt = torch.randint(lo, hi, (bsz, length), generator=g)
    tgt[:, -1] = d.eos()
    tgt[1, -5:] = d.pad()
    tgt[1, -6] = d.eos()
    prev = torch.cat([torch.full((bsz, 1), d.eos()), tgt[:, :-1]], 1)
    prev[1, -4:] = d.pad()
    return {"id": torch.arange(bsz), "nsentences": bsz, "ntokens": int(tgt.ne(d.pad()).sum()), "target": tgt,
            "net_input": {"src_tokens": src, "src_lengths": src.ne(d.pad()).sum(1), "prev_output_tokens": prev}}


@pytest.fixture(scope="module")
def long_model():
    task, model = _build(share=True)
    return task, copy.deepcopy(model).double()


@pytest.mark.parametrize("fused_output_layer", [True, False])
def test_long_sequence_exact_penalty_matches_independent_double_backprop(long_model, fused_output_layer):
    task, model = long_model
    sample = _long_sample(task.target_dictionary)
    n, eps, pad = sample["ntokens"], 1.0, task.target_dictionary.pad()
    crit = gp_criterion(task, gp_epsilon=eps)
    crit.fuse_output_layer = fused_output_layer
    loss, _, log = crit(model, sample)
    got = grads_of(model, loss)

    expected = ref_exact_objective(model, sample, eps, pad, n)  # math backend, fairseq's explicit cross-attention
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-10)
    assert_grads_close(got, grads_of(model, expected), rtol=1e-7, atol=1e-10)
    assert log["gp"] / n > 1e-4, "penalty must be non-negligible, else this test proves nothing"


def _saved_attention_matrices(fn, length: int) -> list:
    """Shapes of the tensors that autograd saves, during ``fn``, with two trailing dims of ``length``
    and a graph (attention probabilities and their gradients; masks do not count)."""
    found = []

    def pack(t):
        if t.dim() >= 2 and t.shape[-2:] == (length, length) and t.requires_grad:
            found.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return found


def test_graph_kept_for_double_backward_holds_no_attention_matrix(long_model, monkeypatch):
    task, model = long_model
    sample = _long_sample(task.target_dictionary, length=40)
    crit = gp_criterion(task, gp_epsilon=1.0)
    assert _saved_attention_matrices(lambda: crit(model, sample), 40) == []
    # The detector works: SDPA's math backend (the previous implementation) saves such matrices.
    monkeypatch.setattr("fairseq_eb.gradient_penalty.double_backward_safe_attention",
                        _math_sdpa)
    assert len(_saved_attention_matrices(lambda: crit(model, sample), 40)) > 0


def test_encoder_decoder_attention_is_routed_and_alignment_weights_kept(long_model):
    """Cross-attention goes through the swapped SDPA; the alignment layer's head-averaged weights are the
    explicit path's values."""
    task, model = long_model
    sample = _long_sample(task.target_dictionary, length=12)
    calls = []
    original = att.BlockAttention.apply
    with contextlib.ExitStack() as stack:
        stack.enter_context(att.penalty_attention())
        stack.enter_context(pytest.MonkeyPatch.context()).setattr(
            att.BlockAttention, "apply", staticmethod(lambda *a: calls.append(a[0].shape) or original(*a)))
        out, extra = model(**sample["net_input"])
    layers = len(model.encoder.layers) + 2 * len(model.decoder.layers)
    assert len(calls) == layers
    with _math_sdpa():
        ref_out, ref_extra = model(**sample["net_input"])
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(extra["attn"][0], ref_extra["attn"][0], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- --gp-method auto


def test_auto_method_is_exact_up_to_the_length_and_fgm_above(long_model, monkeypatch, caplog):
    task, model = long_model
    from fairseq_eb import gradient_penalty as gpmod

    monkeypatch.setattr(gpmod, "AUTO_MAX_EXACT_LENGTH", 12)
    short, long = _long_sample(task.target_dictionary, length=12), _long_sample(task.target_dictionary, length=13)
    auto = gp_criterion(task, gp_epsilon=1.0, gp_method="auto")
    for sample, method in ((short, "exact"), (long, "fgm"), (short, "exact")):
        with caplog.at_level("INFO", logger="fairseq_eb.gradient_penalty"):
            got, _, got_log = auto(model, sample)
        expected, _, expected_log = gp_criterion(task, gp_epsilon=1.0, gp_method=method)(model, sample)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        torch.testing.assert_close(got_log["gp"], expected_log["gp"], rtol=0, atol=0)
    # the two methods differ on these batches, so the equalities above identify the choice
    assert not torch.equal(auto(model, long)[0], gp_criterion(task, gp_epsilon=1.0)(model, long)[0])
    logged = [r.getMessage() for r in caplog.records if "--gp-method auto" in r.getMessage()]
    assert logged == ["--gp-method auto: exact penalty for batches of length 12 (exact up to 12, fgm above)",
                      "--gp-method auto: fgm penalty for batches of length 13 (exact up to 12, fgm above)"]


def test_attention_dropout_falls_back_to_the_math_backend_with_the_same_masks(long_model, monkeypatch):
    """With --attention-dropout > 0 the penalty's forward is exactly the previous implementation's (same
    RNG draws), and the double backward still works."""
    task, model = long_model
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, MultiheadAttention):
            module.dropout_module.p = 0.3
    sample = _long_sample(task.target_dictionary, length=20)
    crit = gp_criterion(task, gp_epsilon=1.0)

    def run():
        torch.manual_seed(3)
        loss, _, _ = crit(model, sample)
        return loss.detach(), grads_of(model, loss)

    got, got_grads = run()
    monkeypatch.setattr("fairseq_eb.gradient_penalty.double_backward_safe_attention",
                        _math_sdpa)
    expected, expected_grads = run()
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)
    assert_grads_close(got_grads, expected_grads, rtol=1e-10, atol=1e-12)
    torch.manual_seed(4)
    assert not torch.allclose(crit(model, sample)[0], got), "attention dropout must be active"


def test_gp_attention_math_and_blockwise_agree_and_auto_is_blockwise_on_cpu(long_model):
    """``--gp-attention``: both attentions give the same penalty and gradients; ``math`` keeps the T x T
    matrices for the double backward (the detector above sees them), ``blockwise`` and ``auto`` on a CPU
    tensor do not."""
    task, model = long_model
    sample = _long_sample(task.target_dictionary, length=40)

    def run(kind):
        crit = gp_criterion(task, gp_epsilon=1.0, gp_attention=kind)
        loss, _, _ = crit(model, sample)
        return loss.detach(), grads_of(model, loss), _saved_attention_matrices(lambda: crit(model, sample), 40)

    blockwise, math_, auto = run("blockwise"), run("math"), run("auto")
    torch.testing.assert_close(math_[0], blockwise[0], rtol=1e-10, atol=1e-10)
    assert_grads_close(math_[1], blockwise[1], rtol=1e-7, atol=1e-10)
    assert blockwise[2] == [] and auto[2] == []
    assert len(math_[2]) > 0


def test_gp_attention_auto_picks_math_for_cuda_tensors(monkeypatch):
    from fairseq_eb import gradient_penalty as gpmod

    monkeypatch.setattr(gpmod, "math_attention", lambda: "math")
    monkeypatch.setattr(gpmod, "double_backward_safe_attention", lambda: "blockwise")
    assert gpmod.attention_for("auto", torch.device("cuda")) == "math"
    assert gpmod.attention_for("auto", torch.device("cpu")) == "blockwise"
    assert gpmod.attention_for("blockwise", torch.device("cuda")) == "blockwise"
    assert gpmod.attention_for("math", torch.device("cpu")) == "math"
