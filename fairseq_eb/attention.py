"""Scaled dot-product attention that is twice differentiable with memory linear in sequence length.

Why: the exact gradient penalty differentiates the first-order backward of the whole network once more
(double backprop). SDPA's fused kernels have no double backward, and its math backend materialises every
``T x T`` attention matrix of the forward *and* of the first-order backward, all kept alive until the
second backward: the penalty's cost then grows with ``T`` (docs/gradient_penalty_attention.md).

Here the attention is a pair of autograd functions. :class:`BlockAttention` computes the output with the
fused kernel where there is one and saves only ``q, k, v``, the output and the row log-sum-exp. Its
backward applies :class:`BlockAttentionBackward`, whose forward is the fused first-order backward kernel
and whose own backward (the second-order terms, derived in the docs file) recomputes the probabilities
one block of query rows at a time. Nothing of size ``T x T`` outlives a block, so the graph kept for the
double backward is ``O(T * d)`` per layer. Third derivatives are not supported (not needed).

:func:`penalty_attention` swaps the function into ``torch.nn.functional`` (fairseq's self-attention goes
through ``F.multi_head_attention_forward``, which calls it) and routes fairseq's encoder-decoder attention
through the same path for the duration of a forward.
"""
import contextlib
import math
from typing import Callable, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

# Upper bound on the elements of one block's score matrix (batch * heads * rows * keys): the rows per
# block adapt to the batch and key length, at least one row.
BLOCK_ELEMENTS = 1 << 21


def _rows_per_block(batch: int, q_len: int, k_len: int) -> int:
    return max(1, min(q_len, BLOCK_ELEMENTS // max(1, batch * k_len)))


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half precisions are accumulated in float32 inside the blockwise code (as the fused kernels do)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _safe_lse(lse: Tensor) -> Tensor:
    """Rows whose keys are all masked have ``lse = -inf``; using 0 there makes their probabilities 0
    (SDPA's convention) instead of NaN."""
    return torch.where(torch.isneginf(lse), torch.zeros_like(lse), lse)


def _blocks(q: Tensor, k: Tensor, mask: Optional[Tensor]) -> Iterator[Tuple[slice, slice]]:
    """Blocks of query rows, each with the leading keys that any of its rows can see.

    Why the key bound: fairseq hands causal attention over as an additive mask; for a block of rows the
    trailing keys masked in every row (and every batch entry) contribute nothing, so they are skipped.
    """
    q_len, k_len = q.size(-2), k.size(-2)
    step = _rows_per_block(q[..., 0, 0].numel(), q_len, k_len)
    visible = None
    if mask is not None:
        visible = torch.isneginf(mask).logical_not_().reshape(-1, mask.size(-2), k_len).any(0)
    for start in range(0, q_len, step):
        rows = slice(start, min(q_len, start + step))
        end = k_len
        if visible is not None:
            seen = (visible[rows] if visible.size(0) > 1 else visible).any(0).nonzero()
            end = int(seen[-1]) + 1 if len(seen) else k_len
        yield rows, slice(0, end)


def _block_probs(qs: Tensor, k: Tensor, mask: Optional[Tensor], lse: Tensor, rows: slice, keys: slice) -> Tensor:
    """Attention probabilities of the query ``rows`` over the ``keys`` (all batch dims); ``qs`` is the
    query already multiplied by the scale, ``lse`` the safe log-sum-exp with a trailing unit dim."""
    scores = torch.matmul(qs[..., rows, :], k[..., keys, :].transpose(-2, -1))
    if mask is not None:
        scores.add_(mask[..., rows, keys] if mask.size(-2) > 1 else mask[..., keys])
    return scores.sub_(lse[..., rows, :]).exp_()


def _blockwise_forward(q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor], scale: float) -> Tuple[Tensor, Tensor]:
    out = q.new_empty(q.shape[:-1] + v.shape[-1:])
    lse = q.new_empty(q.shape[:-1])
    qs = q * scale
    for rows, keys in _blocks(q, k, mask):
        scores = torch.matmul(qs[..., rows, :], k[..., keys, :].transpose(-2, -1))
        if mask is not None:
            scores.add_(mask[..., rows, keys] if mask.size(-2) > 1 else mask[..., keys])
        lse[..., rows] = torch.logsumexp(scores, dim=-1)
        probs = scores.sub_(_safe_lse(lse[..., rows]).unsqueeze(-1)).exp_()
        out[..., rows, :] = torch.matmul(probs, v[..., keys, :])
    return out, lse


def _blockwise_backward(q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, grad_out: Tensor,
                        mask: Optional[Tensor], scale: float) -> Tuple[Tensor, Tensor, Tensor]:
    dq = torch.empty_like(q)
    dk = torch.zeros_like(k)
    dv = torch.zeros_like(v)
    delta = (grad_out * out).sum(-1, keepdim=True)  # D_i = sum_j P_ij dP_ij
    qs, lse = q * scale, _safe_lse(lse).unsqueeze(-1)
    for rows, keys in _blocks(q, k, mask):
        p = _block_probs(qs, k, mask, lse, rows, keys)
        do = grad_out[..., rows, :]
        dv[..., keys, :] += torch.matmul(p.transpose(-2, -1), do)
        ds = torch.matmul(do, v[..., keys, :].transpose(-2, -1)).sub_(delta[..., rows, :]).mul_(p)
        dq[..., rows, :] = torch.matmul(ds, k[..., keys, :]).mul_(scale)
        dk[..., keys, :] += torch.matmul(ds.transpose(-2, -1), qs[..., rows, :])
    return dq, dk, dv


def _cpu_fused(q: Tensor, v: Tensor, mask: Optional[Tensor]) -> bool:
    """Whether torch's fused CPU flash kernel (which also returns the log-sum-exp) takes these inputs."""
    return (q.device.type == "cpu" and hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu")
            and q.dim() == 4 and q.size(-1) == v.size(-1) and (mask is None or mask.dtype == q.dtype))


class BlockAttention(torch.autograd.Function):
    """``softmax(scale * q k^T + mask) v`` with an additive float ``mask`` (or none) and ``is_causal``.

    Saves ``q, k, v``, the output and the log-sum-exp only; the backward is :class:`BlockAttentionBackward`,
    itself differentiable once more.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor], is_causal: bool, scale: float) -> Tensor:
        if _cpu_fused(q, v, mask):
            out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                q, k, v, 0.0, is_causal, attn_mask=mask, scale=scale)
        else:
            dtype = _compute_dtype(q.dtype)
            full = _causal_mask(q, k, dtype) if is_causal else None if mask is None else mask.to(dtype)
            out, lse = _blockwise_forward(q.to(dtype), k.to(dtype), v.to(dtype), full, scale)
            out = out.to(q.dtype)
        ctx.save_for_backward(q, k, v, out, lse, mask)
        ctx.is_causal, ctx.scale = is_causal, scale
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        q, k, v, out, lse, mask = ctx.saved_tensors
        dq, dk, dv = BlockAttentionBackward.apply(q, k, v, out.detach(), lse, grad_out, mask, ctx.is_causal,
                                                  ctx.scale)
        return dq, dk, dv, None, None, None


class BlockAttentionBackward(torch.autograd.Function):
    """``(dq, dk, dv)`` of :class:`BlockAttention` for the output gradient ``grad_out``, as a function of
    ``q, k, v, grad_out`` (``out`` and ``lse`` are cached values of ``q, k, v``, given no gradient: the
    gradients returned for ``q, k, v`` are the total ones). Its backward is the second-order term of the
    attention, computed one block of query rows at a time.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, grad_out: Tensor,
                mask: Optional[Tensor], is_causal: bool, scale: float) -> Tuple[Tensor, Tensor, Tensor]:
        ctx.save_for_backward(q, k, v, out, lse, grad_out, mask)
        ctx.is_causal, ctx.scale = is_causal, scale
        if _cpu_fused(q, v, mask) and lse.dtype == _compute_dtype(q.dtype):
            return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
                grad_out.contiguous(), q, k, v, out, lse, 0.0, is_causal, attn_mask=mask, scale=scale)
        dtype = _compute_dtype(q.dtype)
        full = _causal_mask(q, k, dtype) if is_causal else None if mask is None else mask.to(dtype)
        grads = _blockwise_backward(q.to(dtype), k.to(dtype), v.to(dtype), out.to(dtype), lse.to(dtype),
                                    grad_out.to(dtype), full, scale)
        return tuple(g.to(x.dtype) for g, x in zip(grads, (q, k, v)))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gdq: Optional[Tensor], gdk: Optional[Tensor], gdv: Optional[Tensor]):
        q, k, v, out, lse, grad_out, mask = ctx.saved_tensors
        dtype = _compute_dtype(q.dtype)
        full = _causal_mask(q, k, dtype) if ctx.is_causal else None if mask is None else mask.to(dtype)
        q, k, v, out, lse, grad_out = (t.to(dtype) for t in (q, k, v, out, lse, grad_out))
        gdq = torch.zeros_like(q) if gdq is None else gdq.to(dtype)
        gdk = torch.zeros_like(k) if gdk is None else gdk.to(dtype)
        gdv = torch.zeros_like(v) if gdv is None else gdv.to(dtype)
        grads = _second_order(q, k, v, out, lse, grad_out, gdq, gdk, gdv, full, ctx.scale)
        gq, gk, gv, gdo = (g.to(x.dtype) for g, x in zip(grads, ctx.saved_tensors[:3] + (ctx.saved_tensors[5],)))
        return gq, gk, gv, None, None, gdo, None, None, None


def _second_order(q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, grad_out: Tensor, gdq: Tensor,
                  gdk: Tensor, gdv: Tensor, mask: Optional[Tensor], scale: float) -> Tuple[Tensor, ...]:
    """Gradients of ``<gdq, dq> + <gdk, dk> + <gdv, dv>`` w.r.t. ``q, k, v, grad_out``.

    With ``P`` the probabilities, ``dP = dO V^T``, ``D = rowsum(dO * O)``, ``dS = P * (dP - D)``,
    ``A = dO gdv^T``, ``B = scale * (gdq K^T + Q gdk^T)`` and ``C = rowsum(P * B)``:
    ``G_dP = P * (B - C)``, ``G_P = A + B * (dP - D) - C * dP``, ``G_S = P * (G_P - rowsum(P * G_P))``;
    then ``gq = scale (G_S K + dS gdk)``, ``gk = scale (G_S^T Q + dS^T gdq)``, ``gv = G_dP^T dO`` and
    ``gdo = G_dP V + P gdv``. Every ``T x T`` quantity is row-local, so blocks of rows suffice.
    """
    gq = torch.empty_like(q)
    gk = torch.zeros_like(k)
    gv = torch.zeros_like(v)
    gdo = torch.empty_like(grad_out)
    delta = (grad_out * out).sum(-1, keepdim=True)
    qs, lse_ = q * scale, _safe_lse(lse).unsqueeze(-1)
    left = torch.cat([gdq * scale, qs], -1)  # B = [scale gdq, scale q] [k, gdk]^T: one product
    right = torch.cat([k, gdk], -1)
    for rows, keys in _blocks(q, k, mask):
        p = _block_probs(qs, k, mask, lse_, rows, keys)
        k_, v_, gdk_, gdv_ = k[..., keys, :], v[..., keys, :], gdk[..., keys, :], gdv[..., keys, :]
        do_r = grad_out[..., rows, :]
        dp = torch.matmul(do_r, v_.transpose(-2, -1))
        dp_d = dp - delta[..., rows, :]  # dP - D
        b = torch.matmul(left[..., rows, :], right[..., keys, :].transpose(-2, -1))
        c = torch.linalg.vecdot(p, b).unsqueeze_(-1)
        g_dp = (b - c).mul_(p)
        g_p = torch.matmul(do_r, gdv_.transpose(-2, -1)).addcmul_(b, dp_d).addcmul_(dp, c, value=-1.0)
        del b, dp
        ds = dp_d.mul_(p)
        g_s = g_p.sub_(torch.linalg.vecdot(p, g_p).unsqueeze_(-1)).mul_(p)
        gq[..., rows, :] = torch.matmul(g_s, k_).add_(torch.matmul(ds, gdk_)).mul_(scale)
        gk[..., keys, :] += torch.matmul(g_s.transpose(-2, -1), qs[..., rows, :]).add_(
            torch.matmul(ds.transpose(-2, -1), gdq[..., rows, :]), alpha=scale)
        gv[..., keys, :] += torch.matmul(g_dp.transpose(-2, -1), do_r)
        gdo[..., rows, :] = torch.matmul(g_dp, v_).add_(torch.matmul(p, gdv_))
    return gq, gk, gv, gdo


def _causal_mask(q: Tensor, k: Tensor, dtype: torch.dtype) -> Tensor:
    """SDPA's ``is_causal`` (top-left aligned lower triangle) as an additive mask."""
    allowed = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).tril()
    return torch.zeros(allowed.shape, dtype=dtype, device=q.device).masked_fill_(~allowed, float("-inf"))


def _additive_mask(mask: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    """SDPA's boolean masks mean "may attend"; float masks are added to the scores."""
    if mask is None or mask.dtype != torch.bool:
        return None if mask is None else mask.to(dtype)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))



def _autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The autocast dtype on this device type, None when autocast is off. torch < 2.4 has only the per-device
    functions (``is_autocast_enabled()`` then means CUDA), found by the install matrix's torch-2.1.2 cell."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except TypeError:
        if device_type == "cpu":
            return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
        return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None
    return torch.get_autocast_dtype(device_type) if enabled else None


def make_penalty_sdpa(fallback: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """A drop-in ``scaled_dot_product_attention`` backed by :class:`BlockAttention`.

    Calls it cannot serve with the same semantics go to ``fallback`` (the original function, run on the math
    backend by the caller's context): attention dropout (its mask would have to be stored), GQA, a mask
    that requires grad, or ``is_causal`` together with a mask (SDPA rejects that itself).
    """

    def sdpa(query: Tensor, key: Tensor, value: Tensor, attn_mask: Optional[Tensor] = None, dropout_p: float = 0.0,
             is_causal: bool = False, scale: Optional[float] = None, enable_gqa: bool = False) -> Tensor:
        supported = (dropout_p == 0.0 and not enable_gqa and query.dim() >= 3 and query.is_floating_point()
                     and not (attn_mask is not None and (attn_mask.requires_grad or is_causal))
                     and query.size(-3) == key.size(-3))
        if not supported:
            return fallback(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                            scale=scale, enable_gqa=enable_gqa)
        dtype = _autocast_dtype(query.device.type) or query.dtype  # SDPA runs in the autocast dtype under AMP
        with torch.autocast(query.device.type, enabled=False):
            q, k, v = (t.to(dtype) for t in (query, key, value))
            scale_ = 1.0 / math.sqrt(query.size(-1)) if scale is None else float(scale)
            return BlockAttention.apply(q, k, v, _additive_mask(attn_mask, dtype), bool(is_causal), scale_)

    return sdpa


def _route_encoder_attention(forward: Callable) -> Callable:
    """Wrap fairseq's ``MultiheadAttention.forward`` so that encoder-decoder attention in training takes the
    ``F.multi_head_attention_forward`` path (and so the swapped SDPA) instead of its explicit softmax.

    Why this is safe: with no incremental state, ``static_kv`` only selects fairseq's explicit code path;
    both paths compute the same projections, scaling and masking. The explicit path is kept where it
    differs: attention dropout (another RNG stream), extra key/value biases, zero attention, ONNX export.
    Where attention weights are requested (fairseq's alignment layer) they come from the explicit path
    without gradient: the penalised loss does not depend on them.
    """

    def routed(self, query, key, value, key_padding_mask=None, incremental_state=None, need_weights=True,
               static_kv=False, attn_mask=None, before_softmax=False, need_head_weights=False):
        simple = (static_kv and self.encoder_decoder_attention and incremental_state is None and key is not None
                  and not before_softmax and self.dropout_module.p == 0
                  and self.bias_k is None and not self.add_zero_attn and not self.onnx_trace
                  and not getattr(self, "use_xformers", False) and not self.skip_embed_dim_check
                  and query.device.type != "xla" and attn_mask is None)
        if not simple:
            return forward(self, query, key, value, key_padding_mask, incremental_state, need_weights, static_kv,
                           attn_mask, before_softmax, need_head_weights)
        out, _ = forward(self, query, key, value, key_padding_mask, None, False, False, None, False, False)
        weights = None
        if need_weights or need_head_weights:
            with torch.no_grad():
                _, weights = forward(self, query, key, value, key_padding_mask, None, True, True, None, False,
                                     need_head_weights)
        return out, weights

    return routed


@contextlib.contextmanager
def penalty_attention() -> Iterator[None]:
    """Within the block, SDPA (and fairseq's encoder-decoder attention) use :class:`BlockAttention`;
    anything it does not serve runs on SDPA's math backend, which is differentiable twice too."""
    from fairseq.modules.multihead_attention import MultiheadAttention

    original_sdpa = F.scaled_dot_product_attention
    original_forward = MultiheadAttention.forward
    F.scaled_dot_product_attention = make_penalty_sdpa(original_sdpa)
    MultiheadAttention.forward = _route_encoder_attention(original_forward)
    try:
        with math_backend():
            yield
    finally:
        F.scaled_dot_product_attention = original_sdpa
        MultiheadAttention.forward = original_forward


def math_backend() -> contextlib.AbstractContextManager:
    """SDPA restricted to its math backend (twice differentiable; no-op where torch has no SDPA)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - torch < 2.3
        if hasattr(torch.backends.cuda, "sdp_kernel"):
            return torch.backends.cuda.sdp_kernel(enable_flash=False, enable_math=True, enable_mem_efficient=False)
        return contextlib.nullcontext()  # torch < 2.0: no SDPA, attention is plain ops
    return sdpa_kernel(SDPBackend.MATH)
