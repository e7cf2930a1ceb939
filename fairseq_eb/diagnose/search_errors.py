"""Search errors vs model errors (the "beam curse" analysis of Stahlberg & Byrne 2019, in miniature).

For each sentence compare the model's log-probability of the reference with that of its own beam
output. Reference higher: beam search missed a sequence the model prefers — a *search error* (a wider
beam could help). Reference lower: the model itself prefers a wrong output — a *model error* (no
search fixes it). Equal: a *tie*, counted explicitly (in practice: the beam output *is* the
reference), so the three shares always sum to 1. Both the raw sum of token log-probabilities and the
length-normalised one (divided by the number of scored tokens, EOS included, which is fairseq's
``--lenpen 1`` normalisation) are classified.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor

KINDS = ("search_error", "model_error", "tie")


def classify_errors(ref_scores: Tensor, hyp_scores: Tensor, same: Optional[Tensor] = None,
                    tol: float = 1e-5) -> Tensor:
    """Per sentence 0 = search error, 1 = model error, 2 = tie.

    ``same`` marks sentences whose beam output equals the reference token for token: always a tie,
    whatever float noise two differently padded forward passes leave. Other scores closer than
    ``tol`` are ties as well.
    """
    if ref_scores.shape != hyp_scores.shape:
        raise ValueError(f"ref_scores {tuple(ref_scores.shape)} and hyp_scores {tuple(hyp_scores.shape)} differ")
    diff = ref_scores.double() - hyp_scores.double()
    tie = diff.abs() <= tol
    if same is not None:
        tie = tie | same.to(torch.bool)
    out = torch.where(diff > 0, torch.zeros_like(diff, dtype=torch.long), torch.ones_like(diff, dtype=torch.long))
    return torch.where(tie, torch.full_like(out, 2), out)


def error_shares(classes: Tensor) -> Dict[str, float]:
    """``{"search_error": s, "model_error": m, "tie": t, "n": N}`` with s + m + t = 1 (N > 0)."""
    n = int(classes.numel())
    if n == 0:
        raise ValueError("no sentences to classify")
    counts = torch.bincount(classes.flatten().long(), minlength=3)
    shares: Dict[str, float] = {k: int(counts[i]) / n for i, k in enumerate(KINDS)}
    shares["n"] = n
    return shares


def sequence_scores(lprobs: Tensor, target: Tensor, pad: int):
    """(sum of log p(target), number of scored tokens) per row from teacher-forced log-probabilities.

    ``lprobs``: (B, T, V) normalised log-probabilities, ``target``: (B, T) with ``pad`` where absent.
    """
    mask = target.ne(pad)
    tok = lprobs.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    tok = tok.masked_fill(~mask, 0.0)
    return tok.double().sum(dim=1), mask.sum(dim=1)
