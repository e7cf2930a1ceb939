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
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

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


def build_generator(model: Any, tgt_dict: Any, opts: CandidateOptions, task: Any = None) -> Any:
    """The generator ``fairseq-generate`` would build for ``opts`` (search strategy, temperature, length limits):
    the task's own ``build_generator`` when a task is given (mBART's decodes until the target-language tag), else
    fairseq's ``SequenceGenerator``; the model's train/eval mode is left as it was (building switches it to eval)."""
    from argparse import Namespace

    from fairseq import search
    from fairseq.sequence_generator import SequenceGenerator

    was_training = model.training
    try:
        if task is not None:
            # keep_inference_langtok: a multilingual task must not strip the target-language tag it forces (the
            # candidates are re-scored as decoder inputs, tag included; and a many-to-many batch has no one tag)
            args = Namespace(beam=opts.beam, max_len_a=opts.max_len_a, max_len_b=opts.max_len_b,
                             sampling=opts.sampling, sampling_topk=opts.sampling_topk, temperature=opts.temperature,
                             keep_inference_langtok=True)
            return task.build_generator([model], args)
        strategy = search.Sampling(tgt_dict, sampling_topk=opts.sampling_topk) if opts.sampling else None
        return SequenceGenerator([model], tgt_dict, beam_size=opts.beam, max_len_a=opts.max_len_a,
                                 max_len_b=opts.max_len_b, temperature=opts.temperature, search_strategy=strategy)
    finally:
        model.train(was_training)


def forced_prefix(target: Tensor, protected: Tensor) -> Optional[Tensor]:
    """The structure tokens every reference starts with (a multilingual task's target-language tag, which its
    generation forces as a prefix), taken from each sentence's own target so that many-to-many batches get their
    own tags; None when the references start with content (or with prefixes of different lengths)."""
    lead = torch.isin(target, protected.to(target.device)).long().cumprod(1).sum(1)
    if lead.numel() == 0 or int(lead.min()) == 0 or int(lead.max()) != int(lead.min()):
        return None
    return target[:, :int(lead[0])]


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
           seed: Optional[int] = None, prefix: Optional[Tensor] = None) -> Candidates:
    """Decode ``k`` candidates per source of ``sample`` with ``generator`` in eval mode and without gradient,
    then restore the model's mode; ``seed`` fixes the draws of a sampling search, ``prefix`` (B, P) is forced
    (:func:`forced_prefix`) and is part of each candidate's tokens."""
    net_input = {key: v for key, v in sample["net_input"].items() if key != "prev_output_tokens"}
    was_training = model.training
    device = sample["net_input"]["src_tokens"].device
    devices = [device] if device.type == "cuda" else []
    try:
        model.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            if seed is not None:
                torch.manual_seed(seed)
            hypos = generator.generate([model], {"net_input": net_input}, prefix_tokens=prefix)
    finally:
        model.train(was_training)
    return _pack(hypos, k, pad, eos, device)


def shifted(tokens: Tensor, lengths: Tensor, bos: Union[int, Tensor], pad: int) -> Tensor:
    """fairseq's decoder input of each candidate: the decoder's first input (EOS for fairseq's translation tasks;
    mBART's target-language tag — per row, taken from the gold decoder input) followed by all but its last token."""
    prev = torch.full_like(tokens, pad)
    prev[:, 0] = bos
    prev[:, 1:] = tokens[:, :-1]
    keep = torch.arange(tokens.size(1), device=tokens.device)[None, :] < lengths[:, None]
    return prev.masked_fill(~keep, pad)


def content(tokens: Tensor, lengths: Tensor, protected: Tensor) -> Tuple[Tensor, Tensor]:
    """Each row's tokens without structure symbols (EOS, language tags, ...: ``protected``), moved to the left,
    and their number: what a candidate's cost compares with the reference's."""
    inside = torch.arange(tokens.size(1), device=tokens.device)[None, :] < lengths[:, None]
    keep = inside & ~torch.isin(tokens, protected.to(tokens.device))
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices
    return tokens.gather(1, order), keep.sum(1)
