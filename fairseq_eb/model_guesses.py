"""The model's own guesses of the gold tokens, for ``--replace-pool model`` (parallel scheduled sampling).

One teacher-forced forward pass without gradients gives, at every target position ``j``, the model's
prediction of ``target[j]`` given the gold prefix (Duckworth et al. 2019; Mihaylova & Martins 2019).
:func:`fairseq_eb.corruption.align_model_guesses` then moves them into decoder-input positions.
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, Optional

import torch
from torch import Tensor


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
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    flat = torch.multinomial(probs.reshape(-1, probs.size(-1)), 1, generator=generator)
    return flat.view(logits.shape[:-1])
