"""The model's own guesses of the gold tokens, for ``--replace-pool model`` (parallel scheduled sampling).

One teacher-forced forward pass without gradients gives, at every target position ``j``, the model's
prediction of ``target[j]`` given the gold prefix (Duckworth et al. 2019; Mihaylova & Martins 2019).
:func:`fairseq_eb.corruption.align_model_guesses` then moves them into decoder-input positions.
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, NamedTuple, Optional

import torch
from torch import Tensor


class GuessPass(NamedTuple):
    """What :func:`guess_pass` returns."""

    guesses: Tensor  # (B, T) the model's guess of target[:, j]
    confidence: Optional[Tensor]  # (B, T) float32: the model's probability of its guess (softmax at T = 1)
    logits: Optional[Tensor]  # (B, T, V) the pass's output logits (no graph), for the imitation loss


def model_guesses(
    model: torch.nn.Module,
    net_input: Dict[str, Any],
    *,
    temperature: float = 0.0,
    generator: Optional[torch.Generator] = None,
    autocast: bool = False,
) -> Tensor:
    """(B, T) guesses of ``target`` from a no-grad, eval-mode forward of ``model`` on the gold batch.

    ``temperature`` 0 takes the argmax; ``T > 0`` samples from ``softmax(logits / T)`` with ``generator``
    (so the draws are seeded like the gates). ``autocast`` mirrors fairseq's ``train_step`` for ``--amp``
    (``torch.autocast`` on the model's device; with ``--fp16`` the model itself is half precision and
    needs nothing here). Without it, an autocast region the caller opened still applies.

    Why eval mode: the pass must not touch the real forward's randomness. In eval mode dropout and
    LayerDrop draw nothing, so the global RNG stream, and with it every dropout mask of the real forward,
    is exactly what it would be without this pass (tested); it also makes the guesses the deterministic
    predictions that decoding uses. The model's train/eval state is restored afterwards.
    """
    return guess_pass(model, net_input, temperature=temperature, generator=generator, autocast=autocast).guesses


def guess_pass(
    model: torch.nn.Module,
    net_input: Dict[str, Any],
    *,
    temperature: float = 0.0,
    generator: Optional[torch.Generator] = None,
    autocast: bool = False,
    confidence: bool = False,
    keep_logits: bool = False,
) -> GuessPass:
    """The pass of :func:`model_guesses`, optionally with each guess's probability and the logits.

    ``confidence``: also the model's probability of its guess, ``softmax(logits)[guess]`` in float32 (at
    temperature 1 whatever ``temperature`` is: the model's own belief, as the confidence-aware rules use it).
    ``keep_logits``: also return the logits (computed without gradients, so detached), the teacher of the
    imitation loss.
    """
    was_training = model.training
    model.eval()
    try:
        device_type = "cuda" if next(model.parameters()).is_cuda else "cpu"
        amp = torch.autocast(device_type=device_type) if autocast else contextlib.nullcontext()
        with torch.no_grad(), amp:
            logits = model(**net_input)[0]
    finally:
        model.train(was_training)
    if temperature <= 0:
        guesses = logits.argmax(dim=-1)
    else:
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        flat = torch.multinomial(probs.reshape(-1, probs.size(-1)), 1, generator=generator)
        guesses = flat.view(logits.shape[:-1])
    prob = None
    if confidence:
        # p(guess) = exp(logit_guess - logsumexp(logits)): no (B, T, V) softmax tensor is materialised twice
        full = logits.float()
        prob = (full.gather(-1, guesses.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(full, dim=-1)).exp()
    return GuessPass(guesses, prob, logits if keep_logits else None)


def imitation_positions(original: Tensor, mixed: Tensor, target: Tensor, pad: int) -> Tensor:
    """(B, T) bool: target positions whose decoder-input prefix contains a replaced token.

    ``original``/``mixed`` are the gold and the corrupted ``prev_output_tokens``; the decoder's output at
    position ``j`` sees inputs ``0..j``, so it differs from the gold pass's only from the first changed
    input on. Elsewhere both passes see the same prefix and the imitation term is left out, so it is
    exactly zero when nothing was replaced.
    """
    changed = mixed.ne(original)
    return changed.long().cumsum(dim=1).gt(0) & target.ne(pad)


def imitation_kl(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor) -> Tensor:
    """Summed ``KL(teacher || student)`` over the ``mask`` positions, in nats, computed in float32.

    ``sum_j sum_v p_T(v|j) (log p_T(v|j) - log p_S(v|j))`` with ``p = softmax(logits)``; the teacher is
    detached (no gradient flows into it). Summed like fairseq's token losses, so the trainer's division by
    the sample size makes it a per-token mean.
    """
    with torch.no_grad():
        teacher = torch.log_softmax(teacher_logits.float(), dim=-1)
        p_teacher = teacher.exp()
        neg_entropy = (p_teacher * teacher).sum(dim=-1)
    # sum_v p_T log p_S = sum_v p_T s_v - logsumexp(s) since sum_v p_T = 1: no student log_softmax tensor
    student = student_logits.float()
    cross = (p_teacher * student).sum(dim=-1) - torch.logsumexp(student, dim=-1)
    kl = neg_entropy - cross
    return (kl * mask.to(kl.dtype)).sum()
