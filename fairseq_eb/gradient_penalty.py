"""Tensor-level pieces of the gradient penalty on token embeddings (docs/method.md §3-§5).

Kept free of fairseq criterion plumbing so each piece can be tested on its own. The criterion in
``fairseq_eb.criterions.label_smoothed_cross_entropy_with_gp`` composes them.

Notation: ``L`` is fairseq's *summed* loss over a batch, ``N`` its ``sample_size``, ``l = L / N`` the mean
the reference penalises, ``e`` the embedding-lookup outputs (or the embedding tables), ``g = dl/de``.
"""
import contextlib
import logging
from typing import Iterator, List, Optional, Sequence, Set, Tuple

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

# --gp-method auto: the exact penalty up to this padded source/target length, FGM above. Measured with
# bench/bench_gp_length.py (docs/gradient_penalty_attention.md): up to 512 tokens the exact penalty's time
# relative to the plain step stays within 10% of its ratio on short sentences; at 1024 it is 15% above.
AUTO_MAX_EXACT_LENGTH = 512


def embedding_modules(model: nn.Module) -> List[nn.Module]:
    """The distinct ``embed_tokens`` modules of the model's encoder and decoder, encoder first.

    Why distinct: with ``--share-all-embeddings`` both sides hold the *same* module; hooking it twice
    would record every lookup twice. Works through fairseq's ``ModuleProxyWrapper`` (DDP wrappers
    forward attribute access to the wrapped model).
    """
    found: List[nn.Module] = []
    for side in ("encoder", "decoder"):
        module = getattr(getattr(model, side, None), "embed_tokens", None)
        if module is not None and all(module is not m for m in found):
            found.append(module)
    if not found:
        raise ValueError(
            f"{type(model).__name__} has no encoder/decoder 'embed_tokens' module; the gradient penalty "
            "needs fairseq's encoder-decoder layout (e.g. --arch transformer)"
        )
    return found


def embedding_tables(modules: Sequence[nn.Module]) -> List[nn.Parameter]:
    """The distinct weight tables of ``modules`` (for ``--gp-over table``)."""
    tables: List[nn.Parameter] = []
    for module in modules:
        weight = module.weight
        if all(weight is not t for t in tables):
            tables.append(weight)
    return tables


class LookupCapture:
    """Forward hooks that record (and optionally shift) every output of the given embedding modules.

    Why hooks: ``TransformerModel.forward`` takes no embedding argument, and the penalty needs the
    lookup outputs themselves (one row per token occurrence, before ``embed_scale``, positions and
    dropout) as autograd inputs. ``shifts``, if given, are added to the outputs in call order (the
    FGM perturbation); they must match the recorded outputs of an earlier identical forward.
    """

    def __init__(self, modules: Sequence[nn.Module], shifts: Optional[Sequence[Tensor]] = None) -> None:
        self.modules = list(modules)
        self.shifts = None if shifts is None else list(shifts)
        self.outputs: List[Tensor] = []
        self._handles: list = []

    def _hook(self, module: nn.Module, inputs, output: Tensor) -> Optional[Tensor]:
        if self.shifts is not None:
            k = len(self.outputs)
            if k >= len(self.shifts) or self.shifts[k].shape != output.shape:
                raise RuntimeError(
                    "embedding lookups differ from the forward the perturbation was computed on "
                    f"(lookup #{k}, shape {tuple(output.shape)})"
                )
            output = output + self.shifts[k].to(output.dtype)
        self.outputs.append(output)
        return output if self.shifts is not None else None

    def __enter__(self) -> "LookupCapture":
        self._handles = [m.register_forward_hook(self._hook) for m in self.modules]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def double_backward_safe_attention() -> contextlib.AbstractContextManager:
    """Attention for the exact penalty's forward: twice differentiable, memory linear in sequence length.

    Why: fairseq's ``MultiheadAttention`` routes training through ``F.multi_head_attention_forward``,
    which calls SDPA; the fused kernels have backwards that are not themselves differentiable, so
    ``create_graph=True`` followed by a second backward fails, and SDPA's math backend keeps every
    ``T x T`` attention matrix for the second backward, so the penalty got dearer with length.
    :func:`fairseq_eb.attention.penalty_attention` substitutes an attention whose backward recomputes
    the probabilities per block of query rows (calls it cannot serve use the math backend). Only the
    forward needs the context: the choice is recorded in the autograd graph.
    """
    from fairseq_eb.attention import penalty_attention

    return penalty_attention()


def math_attention() -> contextlib.AbstractContextManager:
    """Attention for the exact penalty's forward on SDPA's plain ("math") backend: twice differentiable,
    keeps every ``T x T`` matrix for the double backward, but runs as a few large kernels.

    Why keep it next to :func:`double_backward_safe_attention`: on a GPU the blockwise attention's many small
    kernels cost more time than the memory they save is worth at the lengths of title generation (an H200,
    bench/RESULTS.md §7: exact penalty 3.4x a plain step at T = 32 with blockwise attention, 2.4x with this).
    """
    from fairseq_eb.attention import math_backend

    return math_backend()


# --gp-attention: which attention the exact penalty's forward uses
GP_ATTENTIONS = ("auto", "blockwise", "math")


def attention_for(kind: str, device: torch.device) -> "contextlib.AbstractContextManager":
    """The attention context of ``--gp-attention kind`` for a batch on ``device``: ``auto`` = ``math`` on
    CUDA (faster there), ``blockwise`` elsewhere (faster and leaner on CPUs; docs/gradient_penalty_attention.md)."""
    if kind == "auto":
        kind = "math" if device.type == "cuda" else "blockwise"
    return math_attention() if kind == "math" else double_backward_safe_attention()


class GpMethodChoice:
    """Which penalty method a batch gets: the configured one, or for ``auto`` ``exact`` when the batch's
    padded source and target lengths are at most :data:`AUTO_MAX_EXACT_LENGTH`, else ``fgm``.

    Each method is logged the first time ``auto`` picks it, with the length that decided.
    """

    def __init__(self, method: str) -> None:
        self.method = method
        self._logged: Set[str] = set()

    def __call__(self, sample: dict) -> str:
        if self.method != "auto":
            return self.method
        net_input = sample["net_input"]
        length = max(net_input["src_tokens"].size(-1), net_input["prev_output_tokens"].size(-1))
        method = "exact" if length <= AUTO_MAX_EXACT_LENGTH else "fgm"
        if method not in self._logged:
            self._logged.add(method)
            logger.info(f"--gp-method auto: {method} penalty for batches of length {length} "
                        f"(exact up to {AUTO_MAX_EXACT_LENGTH}, fgm above)")
        return method


class SmoothedCEFeatureGrad(torch.autograd.Function):
    """``dL/dh`` of the summed label-smoothed cross-entropy w.r.t. the decoder features ``h``, for a
    bias-free output projection ``z = h W^T``: ``(m * (softmax(z) - q)) W`` with ``q`` the smoothed
    target distribution and ``m`` the non-pad mask.

    Why a fused function: letting autograd differentiate fairseq's loss with ``create_graph=True``
    keeps two extra vocabulary-sized tensors (the gradients w.r.t. log-probabilities and logits) alive
    until the final backward, the largest single part of the penalty's memory. This function keeps
    nothing new: it reuses the forward's log-probabilities (``softmax(z) = exp(lprobs)``). Its backward
    returns its gradient w.r.t. the *logits* ``z`` (an input only for that), so autograd adds it to the
    loss's own gradient there and runs the vocabulary-sized projection backward once for both. The
    backward is first-order only, which is all the trainer's single ``backward`` needs.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, weight: Tensor, lprobs: Tensor, target: Tensor, mask: Tensor,
                label_smoothing: float) -> Tensor:
        ctx.save_for_backward(weight, lprobs, target, mask)
        ctx.label_smoothing = label_smoothing
        ctx.logits_dtype = logits.dtype
        return SmoothedCEFeatureGrad._logit_grad(lprobs, target, mask, label_smoothing).to(weight.dtype) @ weight

    @staticmethod
    def _logit_grad(lprobs: Tensor, target: Tensor, mask: Tensor, label_smoothing: float,
                    probs: Optional[Tensor] = None) -> Tensor:
        eps_i = label_smoothing / (lprobs.size(-1) - 1)
        grad = lprobs.exp().sub_(eps_i) if probs is None else probs - eps_i
        grad.scatter_add_(-1, target.unsqueeze(-1), grad.new_full((grad.size(0), 1), -(1.0 - label_smoothing - eps_i)))
        return grad.mul_(mask.unsqueeze(-1))

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        weight, lprobs, target, mask = ctx.saved_tensors
        # Under --amp the forward ran in autocast (half output) but backward runs outside it.
        grad_out = grad_out.to(weight.dtype)
        p = lprobs.exp()
        a = SmoothedCEFeatureGrad._logit_grad(lprobs, target, mask, ctx.label_smoothing, probs=p)
        grad_weight = a.t().to(grad_out.dtype) @ grad_out  # through the explicit W of (...) W
        del a
        a_bar = (grad_out @ weight.t()).to(lprobs.dtype)  # d/d(dL/dz)
        # softmax Jacobian-vector product, masked: z_bar = m * p * (a_bar - <p, a_bar>)
        a_bar.sub_((p * a_bar).sum(-1, keepdim=True)).mul_(p).mul_(mask.unsqueeze(-1))
        return a_bar.to(ctx.logits_dtype), grad_weight, None, None, None, None


def squared_norm_fp32(grads: Sequence[Optional[Tensor]]) -> Tensor:
    """``sum_k ||grads[k]||^2`` accumulated in float32 (or float64 if the inputs are).

    Why fp32: under ``--fp16`` the squares of per-token gradients underflow half precision. Non-finite
    entries are deliberately *not* masked, so an overflow reaches fairseq's overflow check (the step is
    skipped and the loss scale lowered) instead of silently training on a wrong penalty.
    """
    present = [g for g in grads if g is not None]
    if not present:
        raise ValueError("no gradient reached the embeddings: the loss does not depend on them")
    dtype = torch.float64 if any(g.dtype == torch.float64 for g in present) else torch.float32
    return torch.stack([g.to(dtype).pow(2).sum() for g in present]).sum()


def exact_penalty(loss_sum: Tensor, sample_size: float, wrt: Sequence[Tensor], epsilon: float,
                  grad_outputs: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Penalty term in fairseq's summed units, kept in the graph for double backprop, and ``gp``.

    ``g_sum = dL/de`` (the summed loss: large enough not to underflow in fp16) gives
    ``gp = ||dl/de||^2 = ||g_sum||^2 / N^2``; the returned term is ``N * 0.5 * epsilon * gp =
    0.5 * epsilon * ||g_sum||^2 / N``, so that fairseq's division by ``N`` yields ``l + 0.5*epsilon*gp``.
    With ``grad_outputs``, ``loss_sum`` is an intermediate tensor (the decoder features) and
    ``grad_outputs`` the summed loss's gradient w.r.t. it, itself differentiable.
    """
    grads = torch.autograd.grad(loss_sum, list(wrt), grad_outputs=grad_outputs, create_graph=True, allow_unused=True)
    sq = squared_norm_fp32(grads)
    n = float(sample_size)
    return 0.5 * epsilon * sq / n, (sq / (n * n)).detach()


def fgm_shifts(loss_sum: Tensor, sample_size: float, wrt: Sequence[Tensor],
               epsilon: float) -> Tuple[List[Tensor], Tensor]:
    """The FGM perturbations ``r = epsilon * dl/de`` (constants, no graph) and ``gp = ||dl/de||^2``.

    ``r`` is computed from the summed loss and divided by ``N`` in float32, for the same fp16 reason
    as :func:`exact_penalty`; it is returned in each input's dtype.
    """
    grads = torch.autograd.grad(loss_sum, list(wrt), allow_unused=True)
    sq = squared_norm_fp32(grads)
    n = float(sample_size)
    shifts = [
        torch.zeros_like(x) if g is None
        else (g.to(torch.promote_types(g.dtype, torch.float32)) * (epsilon / n)).to(x.dtype)
        for x, g in zip(wrt, grads)
    ]
    return shifts, (sq / (n * n)).detach()


@contextlib.contextmanager
def substituted_parameters(model: nn.Module, params: Sequence[Tensor], values: Sequence[Tensor]) -> Iterator[None]:
    """Within the block, every module slot holding ``params[k]`` holds ``values[k]`` instead.

    Why (FGM over the whole table): shifting the parameter in place would invalidate tensors the clean
    graph saved, and every alias must move together (with shared embeddings the encoder, decoder and
    output projection hold one table). ``torch.func.functional_call`` was tried first: on fairseq's
    tied transformer it left the tie broken and a non-leaf tensor in place of the parameter.
    """
    slots = []
    for module in model.modules():
        for name, current in module._parameters.items():
            for param, value in zip(params, values):
                if current is param:
                    slots.append((module, name, current, value))
    try:
        for module, name, _, value in slots:
            module._parameters[name] = value
        yield
    finally:
        for module, name, original, _ in slots:
            module._parameters[name] = original


@contextlib.contextmanager
def same_dropout_masks(model: nn.Module) -> Iterator[None]:
    """Run the enclosed code with a forked RNG, so the next forward draws the same dropout masks.

    Why: FGM's perturbed forward should differ from the clean one only by the perturbation; the RNG
    is advanced once overall, as for a single forward.
    """
    param = next(model.parameters(), None)
    devices = [param.device.index or 0] if param is not None and param.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield
