"""Sentence ROUGE-L and smoothed sentence BLEU of token-id tensors, batched, for sequence-level costs.

Why: a sequence-level criterion scores K decoded candidates per source at every update; detokenising
them and calling :mod:`fairseq_eb.scoring` per pair would cost far more than the forward pass. These
functions treat each token id as a word and reproduce ``scoring.rouge.rouge_l`` (×100) and
``scoring.bleu.sentence_bleu`` (×100) exactly (docs/method.md §8), on whatever device the ids live.

Inputs: ``hyp`` (N, Lh) and ``ref`` (N, Lr) integer ids; only the first ``hyp_len[i]`` / ``ref_len[i]``
positions of row ``i`` count, whatever the padding holds. Work is O(N·Lh·Lr) in batched tensor ops with
Python loops only over positions and n-gram orders. Arithmetic is exact on integer counts and float64
for the final ratios; the result has torch's default float dtype.
"""
from typing import Tuple

import torch
from torch import Tensor

METRICS = ("rouge_l", "bleu")


def _valid(lengths: Tensor, width: int, device: torch.device) -> Tensor:
    """(N, width) bool: which positions lie inside each row's length."""
    return torch.arange(width, device=device).unsqueeze(0) < lengths.to(device).unsqueeze(1)


def _matches(hyp: Tensor, ref: Tensor, hyp_len: Tensor, ref_len: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Unigram equality (N, Lh, Lr) restricted to real tokens, so padding never matches anything."""
    hv = _valid(hyp_len, hyp.size(1), hyp.device)
    rv = _valid(ref_len, ref.size(1), hyp.device)
    eq = (hyp.unsqueeze(2) == ref.to(hyp.device).unsqueeze(1)) & hv.unsqueeze(2) & rv.unsqueeze(1)
    return eq, hv, rv


def lcs_length_ids(hyp: Tensor, ref: Tensor, hyp_len: Tensor, ref_len: Tensor) -> Tensor:
    """(N,) int64 longest-common-subsequence lengths.

    Row i of the LCS table from row i-1: ``L[i][j] = max(L[i-1][j], L[i-1][j-1] + match, L[i][j-1])``;
    the first two terms are elementwise and the third is a running maximum along j, so each row is one
    ``cummax``. Padding never matches, so running over the padded widths gives the unpadded LCS.
    """
    n, lh, lr = hyp.size(0), hyp.size(1), ref.size(1)
    if lh == 0 or lr == 0:
        return torch.zeros(n, dtype=torch.long, device=hyp.device)
    eq, _, _ = _matches(hyp, ref, hyp_len, ref_len)
    eq = eq.long()
    row = torch.zeros(n, lr + 1, dtype=torch.long, device=hyp.device)  # column 0: the empty prefix of ref
    for i in range(lh):
        tmp = torch.maximum(row[:, 1:], row[:, :-1] + eq[:, i])
        row = torch.cat([row[:, :1], torch.cummax(tmp, dim=1).values], dim=1)
    return row[:, -1]


def rouge_l_ids(hyp: Tensor, ref: Tensor, hyp_len: Tensor, ref_len: Tensor) -> Tensor:
    """(N,) ROUGE-L F1 × 100 (0 when either side is empty), as ``scoring.rouge.rouge_l``.

    With P = LCS/h and R = LCS/r, F1 = 2PR/(P+R) = 2·LCS/(h+r) when LCS > 0, and 0 otherwise.
    """
    lcs = lcs_length_ids(hyp, ref, hyp_len, ref_len).double()
    total = (hyp_len.to(lcs.device) + ref_len.to(lcs.device)).double().clamp(min=1)
    return (200.0 * lcs / total).to(torch.get_default_dtype())


def _run_lengths(eq: Tensor) -> Tensor:
    """(N, A, B) int32 ``D[i, j]``: how many positions match in a row along the diagonal from (i, j),
    i.e. the largest n for which the n-grams starting at i and j are equal (``D = eq·(1 + D[i+1, j+1])``)."""
    n, a, b = eq.shape
    d = torch.zeros(n, a + 1, b + 1, dtype=torch.int32, device=eq.device)
    eq = eq.to(torch.int32)
    for i in range(a - 1, -1, -1):
        d[:, i, :b] = eq[:, i] * (1 + d[:, i + 1, 1:])
    return d[:, :a, :b]


def clipped_matches_ids(hyp: Tensor, ref: Tensor, hyp_len: Tensor, ref_len: Tensor, max_n: int = 4) -> Tensor:
    """(N, max_n) int64 clipped n-gram matches ``Σ_g min(count_hyp(g), count_ref(g))`` for n = 1..max_n.

    One diagonal run-length table of the hypothesis against [reference, separator, hypothesis] gives
    every n-gram equality at once: hypothesis n-gram i equals reference n-gram j iff ``D[i, j] >= n``.
    So ``count_ref(g_i)`` and ``count_hyp(g_i)`` are row sums, and each distinct n-gram is counted once,
    at its first occurrence (no equal n-gram earlier in the hypothesis). Integer throughout, so exact.
    """
    n_rows, lh, lr = hyp.size(0), hyp.size(1), ref.size(1)
    device = hyp.device
    hv = _valid(hyp_len, lh, device)
    rv = _valid(ref_len, lr, device)
    # The never-matching separator stops reference runs from continuing into the hypothesis copy.
    other = torch.cat([ref.to(device), hyp[:, :1].new_zeros(n_rows, 1), hyp], dim=1)
    other_valid = torch.cat([rv, hv.new_zeros(n_rows, 1), hv], dim=1)
    eq = (hyp.unsqueeze(2) == other.unsqueeze(1)) & hv.unsqueeze(2) & other_valid.unsqueeze(1)
    runs = _run_lengths(eq)
    cross, self_runs = runs[:, :, :lr], runs[:, :, lr + 1:]
    remaining = self_runs.diagonal(dim1=1, dim2=2)  # real tokens from i on: n-gram i exists iff >= n
    earlier = torch.tril(torch.ones(lh, lh, dtype=torch.bool, device=device), diagonal=-1)
    longest_earlier = torch.where(earlier, self_runs, torch.zeros_like(self_runs)).amax(dim=2) if lh else remaining
    out = torch.zeros(n_rows, max_n, dtype=torch.long, device=device)
    for n in range(1, max_n + 1):
        clipped = torch.minimum((self_runs >= n).sum(dim=2), (cross >= n).sum(dim=2))
        first = (remaining >= n) & (longest_earlier < n)
        out[:, n - 1] = (clipped * first).sum(dim=1)
    return out


def sentence_bleu_ids(hyp: Tensor, ref: Tensor, hyp_len: Tensor, ref_len: Tensor, max_n: int = 4,
                      epsilon: float = 0.1) -> Tensor:
    """(N,) smoothed sentence BLEU × 100, as ``scoring.bleu.sentence_bleu`` (which is in [0, 1]) × 100.

    nltk "method1": precision ``m_n / max(1, c_n)`` with ``c_n = max(0, h - n + 1)``, a zero ``m_n``
    replaced by ``epsilon``; 0 when no unigram matches (so an empty side scores 0); brevity penalty 1 if
    h > r else ``exp(1 - r/h)``; geometric mean with uniform weights over n = 1..max_n.
    """
    device = hyp.device
    h = hyp_len.to(device).long()
    r = ref_len.to(device).long()
    m = clipped_matches_ids(hyp, ref, hyp_len, ref_len, max_n).double()
    orders = torch.arange(1, max_n + 1, device=device)
    totals = (h.unsqueeze(1) - orders + 1).clamp(min=1).double()
    log_p = torch.log(torch.where(m > 0, m, torch.full_like(m, epsilon)) / totals)
    hd = h.double().clamp(min=1)
    brevity = torch.where(h > r, torch.ones_like(hd), torch.exp(1 - r.double() / hd))
    bleu = brevity * torch.exp(log_p.sum(dim=1) / max_n)
    bleu = torch.where(m[:, 0] > 0, bleu, torch.zeros_like(bleu))
    return (100.0 * bleu).to(torch.get_default_dtype())


def sequence_cost(metric: str, hyp: Tensor, ref: Tensor, hyp_len: Tensor, ref_len: Tensor) -> Tensor:
    """(N,) cost ``1 - m/100`` in [0, 1] of each hypothesis, m the named metric ("rouge_l" or "bleu")."""
    if metric == "rouge_l":
        m = rouge_l_ids(hyp, ref, hyp_len, ref_len)
    elif metric == "bleu":
        m = sentence_bleu_ids(hyp, ref, hyp_len, ref_len)
    else:
        raise ValueError(f"unknown sequence metric {metric!r}; valid: {', '.join(METRICS)}")
    return 1.0 - m / 100.0
