"""Target-token replacement of the decoder input: pure, vectorised tensor functions.

Why: teacher forcing only ever shows the decoder gold prefixes. Replacing some decoder-input tokens by
other tokens (random ones, or the model's own guesses) while still predicting the gold next token shows
it plausible *wrong* prefixes, in one parallel forward pass (docs/method.md §2). Everything here is a few
tensor ops on the batch's device; there is no Python loop over sentences or tokens, so the cost is negligible
next to a training step (the model pool's guesses cost a forward pass, made in ``fairseq_eb.model_guesses``).

fairseq layout: ``prev_output_tokens = [BOS(=EOS), y1 .. yn]`` padded with PAD on the right (or on the
left with ``--left-pad-target``). Eligible for replacement are y1 .. yn: every non-PAD position except
the first non-PAD one (the BOS), wherever the padding is.
"""
from __future__ import annotations

import hashlib
from typing import Callable, NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor

from fairseq_eb.schedules import position_fraction

POOLS = ("target", "source_target", "vocab", "model")
RANDOM_POOLS = ("target", "source_target", "vocab")


class Corruption(NamedTuple):
    """What :func:`corrupt_decoder_input` returns.

    ``selected`` marks the positions the gates chose; a drawn token may equal the original, so the
    positions that actually changed are ``tokens != original`` (see :func:`changed_positions`).
    """

    tokens: Tensor  # (B, T) the corrupted decoder input (a new tensor)
    selected: Tensor  # (B, T) bool: positions chosen by the p_s / p_t gates


def changed_positions(original: Tensor, corruption: Corruption) -> Tensor:
    """Bool mask of the positions whose token differs from the original decoder input."""
    return corruption.tokens.ne(original)


def align_model_guesses(prev_output_tokens: Tensor, guesses: Tensor, vocab_range: Tuple[int, int]) -> Tensor:
    """Move the model's guesses into decoder-input positions, keeping gold where a guess is special.

    ``guesses[:, j]`` is the model's guess for ``target[j]`` given the gold prefix, and the decoder input
    holds ``target[j]`` at position ``j + 1`` (``prev_output_tokens = [BOS, y1..yn]``, aligned with
    ``target = [y1..yn, EOS]`` for left and right padding alike). A guess outside ``[low, high)`` (BOS,
    PAD, EOS, UNK, fairseq's 'madeupword' fillers) keeps the gold token: feeding an end-of-sentence or
    padding symbol mid-sentence is not a mistake the decoder makes at test time in a useful way.
    """
    low, high = vocab_range
    shifted = torch.cat([prev_output_tokens[:, :1], guesses[:, :-1].to(prev_output_tokens.dtype)], dim=1)
    ordinary = shifted.ge(low) & shifted.lt(high)
    return torch.where(ordinary, shifted, prev_output_tokens)


def align_guess_confidence(prev_output_tokens: Tensor, confidence: Tensor) -> Tensor:
    """Move per-target-position confidences into decoder-input positions as :func:`align_model_guesses` does.

    Position ``j + 1`` gets ``confidence[:, j]`` (the model's probability of its guess for ``target[j]``);
    the first column (BOS or PAD) gets 0.
    """
    return torch.cat([confidence.new_zeros(confidence.size(0), 1), confidence[:, :-1]], dim=1)


def replacement_seed(seed: int, update_num: int, rank: int, micro_batch: int = 0) -> int:
    """A 63-bit generator seed from (``--seed``, update number, data-parallel rank, micro-batch).

    Why hash: nearby tuples such as (1, 2, 0) and (1, 0, 2) must give unrelated streams, and the same
    tuple must give the same stream after a resume, on any machine.
    """
    key = f"fairseq-eb:{seed}:{update_num}:{rank}:{micro_batch}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def _span(tokens: Tensor, pad: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Per row: non-PAD mask, index of the first non-PAD position, number of non-PAD positions.

    fairseq pads on one side only, so each row's non-PAD tokens form one contiguous span; that lets us
    index pools directly instead of sorting them out of a mask.
    """
    nonpad = tokens.ne(pad)
    first = nonpad.to(torch.uint8).argmax(dim=1, keepdim=True)  # 0 for right padding
    return nonpad, first, nonpad.sum(dim=1, keepdim=True)


def eligible_positions(tokens: Tensor, pad: int) -> Tensor:
    """Bool mask of the positions holding y1 .. yn: non-PAD and not the row's first non-PAD (BOS)."""
    nonpad, first, _ = _span(tokens, pad)
    positions = torch.arange(tokens.size(1), device=tokens.device).unsqueeze(0)
    return nonpad & positions.ne(first)


def _uniform_offsets(count: Tensor, shape: Tuple[int, int], generator) -> Tensor:
    """For every cell an integer uniform in ``[0, count)`` of its row (0 where the row's count is 0).

    Uniform over pool *positions*, so a token occurring twice is drawn twice as often, as in the reference.
    """
    u = torch.rand(shape, generator=generator, device=count.device)
    k = (u * count).long()
    return torch.minimum(k, (count - 1).clamp(min=0))  # guards float rounding of u*count up to count


def _pool_candidates(pool: str, prev_output_tokens: Tensor, pad: int, first: Tensor, length: Tensor,
                     src_tokens: Optional[Tensor], vocab_range: Optional[Tuple[int, int]], generator) -> Tensor:
    """(B, T) random replacement tokens from one of :data:`RANDOM_POOLS` (one draw per cell)."""
    bsz, tgt_len = prev_output_tokens.shape
    last = tgt_len - 1
    if pool == "target":  # y1..yn = the span after BOS
        k = _uniform_offsets((length - 1).clamp(min=0), (bsz, tgt_len), generator)
        return prev_output_tokens.gather(1, (first + 1 + k).clamp(max=last))
    if pool == "source_target":  # source span followed by the whole decoder-input span
        if src_tokens is None:
            raise ValueError("pool 'source_target' needs src_tokens")
        _, src_first, src_len = _span(src_tokens, pad)
        k = _uniform_offsets(src_len + length, (bsz, tgt_len), generator)
        from_src = src_tokens.gather(1, (src_first + k).clamp(max=src_tokens.size(1) - 1))
        from_tgt = prev_output_tokens.gather(1, (first + k - src_len).clamp(min=0, max=last))
        return torch.where(k < src_len, from_src, from_tgt)
    if pool != "vocab":
        raise ValueError(f"random pool must be one of {RANDOM_POOLS}, got {pool!r}")
    if vocab_range is None or vocab_range[1] <= vocab_range[0]:
        raise ValueError(f"pool 'vocab' needs a non-empty vocab_range, got {vocab_range}")
    low, high = vocab_range
    return torch.randint(low, high, (bsz, tgt_len), generator=generator, device=prev_output_tokens.device,
                         dtype=prev_output_tokens.dtype)


def _draw_from(tokens: Tensor, allowed: Tensor, shape: Tuple[int, int], generator) -> Tensor:
    """For every cell of ``shape`` a token drawn uniformly from its row's ``allowed`` positions of ``tokens``.

    The allowed tokens are moved to the front of each row (a stable sort keeps their order), so the draw is
    one gather, as for the unprotected pools. A row without allowed tokens gets its first token, which the
    caller's protection then refuses.
    """
    order = torch.sort((~allowed).to(torch.uint8), dim=1, stable=True).indices
    pool = tokens.gather(1, order)
    k = _uniform_offsets(allowed.sum(dim=1, keepdim=True), shape, generator)
    return pool.gather(1, k.clamp(max=tokens.size(1) - 1))


def _protected_pool_candidates(pool: str, prev_output_tokens: Tensor, pad: int, first: Tensor,
                               src_tokens: Optional[Tensor], vocab_range: Optional[Tuple[int, int]], generator,
                               protected: Tensor) -> Tensor:
    """:func:`_pool_candidates` with the ``protected`` ids left out of every pool (never drawn)."""
    shape = tuple(prev_output_tokens.shape)
    positions = torch.arange(shape[1], device=prev_output_tokens.device).unsqueeze(0)
    target_ok = prev_output_tokens.ne(pad) & ~torch.isin(prev_output_tokens, protected)
    if pool == "target":
        return _draw_from(prev_output_tokens, target_ok & positions.ne(first), shape, generator)
    if pool == "source_target":
        if src_tokens is None:
            raise ValueError("pool 'source_target' needs src_tokens")
        source_ok = src_tokens.ne(pad) & ~torch.isin(src_tokens, protected)
        return _draw_from(torch.cat([src_tokens, prev_output_tokens], dim=1), torch.cat([source_ok, target_ok], dim=1),
                          shape, generator)
    if pool != "vocab":
        raise ValueError(f"random pool must be one of {RANDOM_POOLS}, got {pool!r}")
    if vocab_range is None or vocab_range[1] <= vocab_range[0]:
        raise ValueError(f"pool 'vocab' needs a non-empty vocab_range, got {vocab_range}")
    ids = torch.arange(*vocab_range, device=prev_output_tokens.device, dtype=prev_output_tokens.dtype)
    ids = ids[~torch.isin(ids, protected)]
    if ids.numel() == 0:
        raise ValueError("pool 'vocab': every symbol of vocab_range is protected")
    pick = torch.randint(0, ids.numel(), shape, generator=generator, device=prev_output_tokens.device)
    return ids[pick]


def _random_candidates(pool: str, prev_output_tokens: Tensor, pad: int, first: Tensor, length: Tensor,
                       src_tokens: Optional[Tensor], vocab_range: Optional[Tuple[int, int]], generator,
                       protected: Optional[Tensor]) -> Tensor:
    if protected is None:
        return _pool_candidates(pool, prev_output_tokens, pad, first, length, src_tokens, vocab_range, generator)
    return _protected_pool_candidates(pool, prev_output_tokens, pad, first, src_tokens, vocab_range, generator,
                                      protected)


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
    model_guesses: Optional[Callable[[Optional[torch.Generator]], Union[Tensor, Tuple[Tensor, Tensor]]]] = None,
    position_schedule: str = "none",
    position_constant: float = 0.0,
    confidence_threshold: float = 0.0,
    random_above: float = 0.0,
    random_pool: str = "target",
    protected: Optional[Tensor] = None,
) -> Corruption:
    """Return a :class:`Corruption` (new tokens, selected mask); the input tensor is never modified.

    Args:
        prev_output_tokens: (B, T) decoder input, ``[BOS, y1..yn]`` right- or left-padded with ``pad``.
        sample_prob: p_s, probability that a sentence is corrupted at all.
        token_prob: p_t, probability that an eligible position of a corrupted sentence is replaced.
        pool: where replacement tokens come from: ``target`` (the sentence's own y1..yn),
            ``source_target`` (its source and decoder-input tokens, special symbols included, as the
            UniLM reference does), ``vocab`` (uniform over ``vocab_range``) or ``model`` (the model's
            own guess of the gold token at that position; parallel scheduled sampling).
        src_tokens: (B, S) source tokens, needed for ``source_target``.
        vocab_range: ``[low, high)`` ids of ordinary symbols, needed for ``vocab`` and ``model``.
        generator: torch generator on the tokens' device, for reproducible draws.
        model_guesses: for ``model``: called with ``generator`` *after* the gates are drawn, and only if
            some position is selected; returns (B, T) guesses of ``target`` (see
            :func:`align_model_guesses`). Why a callable: the guesses cost a forward pass, skipped when
            nothing is selected, and the gates consume the generator exactly as for the other pools.
            It may return ``(guesses, confidence)``, ``confidence`` being the model's (B, T) probability
            of each guess, which the confidence rules below need.
        position_schedule, position_constant: p_t at ``y_t`` becomes ``token_prob * h(t)`` (``t = 1`` for
            ``y1``; :func:`fairseq_eb.schedules.position_fraction`); ``none`` = ``h = 1``. The same uniform
            draws decide, so the generator's stream does not change.
        confidence_threshold: ``model`` only; > 0 keeps the gold token at a selected position unless the
            model's probability of its guess there is >= the threshold (Liu et al. 2021, confidence-aware
            scheduled sampling). ``selected`` then marks the positions that passed this rule too.
        random_above: ``model`` only; > 0 feeds a random token from ``random_pool`` instead of the guess
            at a selected position whose guess probability is >= it (drawn after the guesses).
        protected: 1-D ids of symbols that carry structure (language tags, ``<mask>``, BOS/EOS wherever they
            stand): a position holding one is never replaced and none is ever drawn (the random pools leave
            them out; a model guess of one keeps the gold token). ``None`` (the plain translation task) keeps
            the draws exactly as without the option.
    """
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    bsz, tgt_len = prev_output_tokens.shape
    device = prev_output_tokens.device
    nonpad, first, length = _span(prev_output_tokens, pad)
    positions = torch.arange(tgt_len, device=device).unsqueeze(0)
    eligible = nonpad & positions.ne(first)
    if protected is not None:
        protected = protected.to(device=device, dtype=prev_output_tokens.dtype)
        eligible = eligible & ~torch.isin(prev_output_tokens, protected)

    rows = torch.rand((bsz, 1), generator=generator, device=device) < sample_prob
    uniform = torch.rand((bsz, tgt_len), generator=generator, device=device)
    if position_schedule == "none":
        cells = uniform < token_prob
    else:  # t = 1 at y1, whichever side the padding is on
        rate = token_prob * position_fraction(position_schedule, (positions - first).clamp(min=0), position_constant)
        cells = uniform < rate.to(uniform.dtype)
    replaced = eligible & rows & cells

    if pool == "model":
        if model_guesses is None or vocab_range is None:
            raise ValueError("pool 'model' needs model_guesses and vocab_range")
        if not bool(replaced.any()):  # nothing selected: skip the forward pass
            return Corruption(prev_output_tokens.clone(), replaced)
        out = model_guesses(generator)
        guesses, confidence = (out, None) if isinstance(out, Tensor) else out
        candidates = align_model_guesses(prev_output_tokens, guesses, vocab_range)
        if confidence_threshold > 0 or random_above > 0:
            if confidence is None:
                raise ValueError("the confidence rules need model_guesses to return (guesses, confidence)")
            confidence = align_guess_confidence(prev_output_tokens, confidence)
            if confidence_threshold > 0:  # gold where the model is not confident of its guess
                replaced = replaced & confidence.ge(confidence_threshold)
            if random_above > 0:  # a random token where it is very confident
                noise = _random_candidates(random_pool, prev_output_tokens, pad, first, length, src_tokens,
                                           vocab_range, generator, protected)
                candidates = torch.where(confidence.ge(random_above), noise, candidates)
    else:
        candidates = _random_candidates(pool, prev_output_tokens, pad, first, length, src_tokens, vocab_range,
                                        generator, protected)
    if protected is not None:  # a protected guess, or the draw of a row whose pool is empty: keep gold
        candidates = torch.where(torch.isin(candidates, protected), prev_output_tokens, candidates)
    corrupted = torch.where(replaced, candidates, prev_output_tokens)
    return Corruption(corrupted, replaced)


def warmup_sample_prob(sample_prob: float, update_num: int, warmup_updates: int) -> float:
    """p_s ramped linearly from 0 over the first ``warmup_updates`` updates (0 = no ramp)."""
    if warmup_updates <= 0:
        return sample_prob
    return sample_prob * min(1.0, max(0, update_num) / warmup_updates)
