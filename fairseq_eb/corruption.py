"""Random target-token replacement of the decoder input: pure, vectorised tensor functions.

Why: teacher forcing only ever shows the decoder gold prefixes. Replacing some decoder-input tokens by
other tokens while still predicting the gold next token shows it plausible *wrong* prefixes, in one
parallel forward pass (SPEC §2). Everything here is a few tensor ops on the batch's device; there is
no Python loop over sentences or tokens, so the cost is negligible next to a training step.

fairseq layout: ``prev_output_tokens = [BOS(=EOS), y1 .. yn]`` padded with PAD on the right (or on the
left with ``--left-pad-target``). Eligible for replacement are y1 .. yn: every non-PAD position except
the first non-PAD one (the BOS), wherever the padding is.
"""
from __future__ import annotations

import hashlib
from typing import Optional, Tuple

import torch
from torch import Tensor

POOLS = ("target", "source_target", "vocab")


def replacement_seed(seed: int, update_num: int, rank: int, micro_batch: int = 0) -> int:
    """A 63-bit generator seed from (``--seed``, update number, data-parallel rank, micro-batch).

    Why hash: nearby tuples such as (1, 2, 0) and (1, 0, 2) must give unrelated streams, and the same
    tuple must give the same stream after a resume, on any machine.
    """
    key = f"fairseq-eb:{seed}:{update_num}:{rank}:{micro_batch}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def eligible_positions(tokens: Tensor, pad: int) -> Tensor:
    """Bool mask of the positions holding y1 .. yn: non-PAD and not the row's first non-PAD (BOS)."""
    nonpad = tokens.ne(pad)
    # index of the first non-PAD position per row (0 for right padding, the pad count for left padding)
    first = nonpad.to(torch.uint8).argmax(dim=1, keepdim=True)
    positions = torch.arange(tokens.size(1), device=tokens.device).unsqueeze(0)
    return nonpad & positions.ne(first)


def _draw_from_pool(pool_tokens: Tensor, pool_mask: Tensor, shape: Tuple[int, int], generator) -> Tensor:
    """For every cell of ``shape`` draw one token uniformly over the row's pool *positions*.

    Uniform over positions (not types), so a token occurring twice is drawn twice as often, as in the
    reference. Rows with an empty pool return PAD-free garbage that the caller never uses.
    """
    counts = pool_mask.sum(dim=1, keepdim=True)  # (B, 1)
    # stable sort puts each row's pool positions first, in their original order
    order = torch.argsort((~pool_mask).to(torch.uint8), dim=1, stable=True)
    packed = pool_tokens.gather(1, order)
    u = torch.rand(shape, generator=generator, device=pool_tokens.device)
    k = (u * counts.clamp(min=1)).long().clamp(max=pool_tokens.size(1) - 1)
    return packed.gather(1, k)


def corrupt_decoder_input(
    prev_output_tokens: Tensor,
    *,
    pad: int,
    sample_prob: float,
    token_prob: float,
    pool: str = "target",
    src_tokens: Optional[Tensor] = None,
    vocab_range: Optional[Tuple[int, int]] = None,
    generator: Optional[torch.Generator] = None,
) -> Tuple[Tensor, Tensor]:
    """Return ``(corrupted, replaced_mask)``; the input tensor is never modified.

    Args:
        prev_output_tokens: (B, T) decoder input, ``[BOS, y1..yn]`` right- or left-padded with ``pad``.
        sample_prob: p_s, probability that a sentence is corrupted at all.
        token_prob: p_t, probability that an eligible position of a corrupted sentence is replaced.
        pool: where replacement tokens come from: ``target`` (the sentence's own y1..yn),
            ``source_target`` (its source and decoder-input tokens, special symbols included, as the
            UniLM reference does) or ``vocab`` (uniform over ``vocab_range``).
        src_tokens: (B, S) source tokens, needed for ``source_target``.
        vocab_range: ``[low, high)`` ids of ordinary symbols, needed for ``vocab``.
        generator: torch generator on the tokens' device, for reproducible draws.

    ``replaced_mask`` marks the positions that were *selected* for replacement (the drawn token may
    equal the original).
    """
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    bsz, tgt_len = prev_output_tokens.shape
    device = prev_output_tokens.device
    eligible = eligible_positions(prev_output_tokens, pad)

    rows = torch.rand((bsz, 1), generator=generator, device=device) < sample_prob
    cells = torch.rand((bsz, tgt_len), generator=generator, device=device) < token_prob
    replaced = eligible & rows & cells

    if pool == "target":
        candidates = _draw_from_pool(prev_output_tokens, eligible, (bsz, tgt_len), generator)
    elif pool == "source_target":
        if src_tokens is None:
            raise ValueError("pool 'source_target' needs src_tokens")
        both = torch.cat([src_tokens, prev_output_tokens], dim=1)
        candidates = _draw_from_pool(both, both.ne(pad), (bsz, tgt_len), generator)
    else:
        if vocab_range is None or vocab_range[1] <= vocab_range[0]:
            raise ValueError(f"pool 'vocab' needs a non-empty vocab_range, got {vocab_range}")
        low, high = vocab_range
        candidates = torch.randint(
            low, high, (bsz, tgt_len), generator=generator, device=device, dtype=prev_output_tokens.dtype
        )
    corrupted = torch.where(replaced, candidates, prev_output_tokens)
    return corrupted, replaced


def warmup_sample_prob(sample_prob: float, update_num: int, warmup_updates: int) -> float:
    """p_s ramped linearly from 0 over the first ``warmup_updates`` updates (0 = no ramp)."""
    if warmup_updates <= 0:
        return sample_prob
    return sample_prob * min(1.0, max(0, update_num) / warmup_updates)
