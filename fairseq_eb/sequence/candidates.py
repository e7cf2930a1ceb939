"""Candidates for sequence-level training: K outputs per source from the model being trained, without gradient.

Why a decode in eval mode: the candidates should be what the model would output at test time (dropout off),
and nothing of the decode may enter the graph; the criterion then re-scores them with gradient in one
teacher-forced pass. fairseq's own ``SequenceGenerator`` does the search (beam search, or sampling with
``search.Sampling``), so candidates are exactly what ``fairseq-generate`` would produce with the same options.
Sampling draws from a generator seeded by (``--seed``, update, data-parallel rank, micro-batch), so a resumed
run and every rank are reproducible (the global RNG is restored afterwards).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Optional

import torch
from torch import Tensor


@dataclass(frozen=True)
class CandidateOptions:
    """How candidates are decoded (fairseq-generate's names, with a ``seq_`` prefix in the criterion)."""

    beam: int = 4
    sampling: bool = False
    sampling_topk: int = -1
    temperature: float = 1.0
    max_len_a: float = 0.0
    max_len_b: int = 200


class Candidates(NamedTuple):
    """K candidates per source, flattened source-major: row ``b * K + k`` is candidate ``k`` of source ``b``."""

    tokens: Tensor  # (B*K, L) long, each row ends with EOS, padded on the right with PAD
    lengths: Tensor  # (B*K,) long, tokens incl. the final EOS
    mask: Tensor  # (B, K) bool, False where the search returned fewer than K outputs (those rows are a lone EOS)
    k: int


def build_generator(model: Any, tgt_dict: Any, opts: CandidateOptions) -> Any:
    """fairseq's ``SequenceGenerator`` for ``opts`` (search strategy, temperature, length limits); the model's
    train/eval mode is left as it was (the generator's constructor switches it to eval)."""
    from fairseq import search
    from fairseq.sequence_generator import SequenceGenerator

    strategy = search.Sampling(tgt_dict, sampling_topk=opts.sampling_topk) if opts.sampling else None
    was_training = model.training
    try:
        return SequenceGenerator([model], tgt_dict, beam_size=opts.beam, max_len_a=opts.max_len_a,
                                 max_len_b=opts.max_len_b, temperature=opts.temperature, search_strategy=strategy)
    finally:
        model.train(was_training)


def _pack(hypos: List[List[Dict[str, Tensor]]], k: int, pad: int, eos: int, device: torch.device) -> Candidates:
    rows: List[Tensor] = []
    present: List[bool] = []
    lone_eos = torch.tensor([eos])
    for per_source in hypos:
        found = [h["tokens"].cpu() for h in per_source[:k]]
        rows += found + [lone_eos] * (k - len(found))  # a placeholder the decoder can read, masked out
        present += [True] * len(found) + [False] * (k - len(found))
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, :len(row)] = row
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    mask = torch.tensor(present, dtype=torch.bool).view(-1, k)
    return Candidates(tokens.to(device), lengths.to(device), mask.to(device), k)


def decode(model: Any, generator: Any, sample: Dict[str, Any], k: int, pad: int, eos: int,
           seed: Optional[int] = None) -> Candidates:
    """Decode ``k`` candidates per source of ``sample`` with ``generator`` in eval mode and without gradient,
    then restore the model's mode; ``seed`` fixes the draws of a sampling search."""
    net_input = {key: v for key, v in sample["net_input"].items() if key != "prev_output_tokens"}
    was_training = model.training
    device = sample["net_input"]["src_tokens"].device
    devices = [device] if device.type == "cuda" else []
    try:
        model.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            if seed is not None:
                torch.manual_seed(seed)
            hypos = generator.generate([model], {"net_input": net_input})
    finally:
        model.train(was_training)
    return _pack(hypos, k, pad, eos, device)


def shifted(tokens: Tensor, lengths: Tensor, eos: int, pad: int) -> Tensor:
    """fairseq's decoder input of each candidate: EOS (fairseq's BOS) followed by all but its last token."""
    prev = torch.full_like(tokens, pad)
    prev[:, 0] = eos
    prev[:, 1:] = tokens[:, :-1]
    keep = torch.arange(tokens.size(1), device=tokens.device)[None, :] < lengths[:, None]
    return prev.masked_fill(~keep, pad)
