"""Sequence-level losses over K scored candidates per source: expected risk and BRIO-style ranking.

Pure tensor functions (docs/method.md §8) so the criterion only decodes, scores and sums. Inputs are
(B, K) with a bool ``mask`` of which candidates exist: beam search or deduplication can leave a row
with fewer than K candidates, and a row with none must contribute 0 and no NaN. Entries outside the
mask are never read into the result (they may hold -inf or NaN), so they get zero gradient.
"""
import torch
from torch import Tensor


def risk_loss(scores: Tensor, costs: Tensor, mask: Tensor, scale: float = 1.0) -> Tensor:
    """(B,) expected cost ``Σ_k q_k c_k`` under ``q = softmax(scale · scores)`` over the valid candidates.

    Minimum risk training (Shen et al. 2016; Edunov et al. 2018 with scale 1): the gradient moves
    probability mass towards candidates cheaper than the current expectation. ``scale`` sharpens
    (large) or flattens (small) q.
    """
    mask = mask.bool()
    s = torch.where(mask, scores, torch.zeros_like(scores))
    logits = torch.where(mask, scale * s, torch.full_like(s, float("-inf")))
    # A row without candidates would be softmax(-inf, ...) = NaN: give it finite logits, then mask q.
    logits = torch.where(mask.any(dim=1, keepdim=True), logits, torch.zeros_like(logits))
    q = torch.softmax(logits, dim=1) * mask
    c = torch.where(mask, costs.to(scores.dtype), torch.zeros_like(scores))
    return (q * c).sum(dim=1)


def candidate_ranks(costs: Tensor, mask: Tensor) -> Tensor:
    """(B, K) int64 position of each valid candidate when a row's valid candidates are sorted by cost
    ascending, ties kept in candidate order (a stable sort); invalid candidates rank after all valid ones."""
    mask = mask.bool()
    k = costs.size(1)
    index = torch.arange(k, device=costs.device)
    before = (costs.unsqueeze(1) < costs.unsqueeze(2)) | (
        (costs.unsqueeze(1) == costs.unsqueeze(2)) & (index.unsqueeze(0) < index.unsqueeze(1)))
    before &= mask.unsqueeze(1)  # before[b, i, l]: valid l sorts ahead of i
    ranks = before.sum(dim=2)
    return torch.where(mask, ranks, torch.full_like(ranks, k))


def ranking_loss(scores: Tensor, costs: Tensor, mask: Tensor, margin: float = 0.001) -> Tensor:
    """(B,) pairwise margin ranking ``Σ_{i<j, c_i<c_j} max(0, s_j - s_i + (j - i)·margin)`` (BRIO).

    ``scores`` are length-normalised log-probabilities (see :func:`length_normalised`); i and j are
    ranks in the cost-ascending (metric-descending) order of the row's valid candidates, so the required
    gap grows with how far apart two candidates are in quality. Tie rule: candidates of equal cost form
    no pair (neither should be preferred), but still occupy their own ranks, ties ordered by candidate
    index, so they widen the margins of the pairs around them.
    """
    mask = mask.bool()
    s = torch.where(mask, scores, torch.zeros_like(scores))
    c = torch.where(mask, costs.to(scores.dtype), torch.zeros_like(scores))
    ranks = candidate_ranks(c, mask).to(scores.dtype)
    # pair[b, i, j]: candidate i strictly better than candidate j, both valid.
    pair = (c.unsqueeze(2) < c.unsqueeze(1)) & mask.unsqueeze(2) & mask.unsqueeze(1)
    violation = s.unsqueeze(1) - s.unsqueeze(2) + (ranks.unsqueeze(1) - ranks.unsqueeze(2)) * margin
    return torch.where(pair, torch.relu(violation), torch.zeros_like(violation)).sum(dim=(1, 2))


def length_normalised(scores: Tensor, lengths: Tensor, penalty: float) -> Tensor:
    """``scores / lengths**penalty`` (BRIO's and fairseq's length penalty), so longer candidates' summed
    log-probabilities are not ranked down for their length alone; penalty 0 leaves scores unchanged."""
    return scores / lengths.to(scores.dtype) ** penalty
