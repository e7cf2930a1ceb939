"""Error recovery: feed the decoder gold prefixes holding some of its *own* mistakes (pure tensor functions).

fairseq layout: ``prev_output_tokens[:, t]`` is the decoder input read at step ``t``, which predicts
``target[:, t]``; for every eligible position (y1 .. yn, see :func:`fairseq_eb.corruption.eligible_positions`)
``prev_output_tokens[:, t] == target[:, t - 1]``. The model's own guess for ``target[:, t - 1]`` is the
argmax at step ``t - 1`` of a clean teacher-forced pass, so replacing input ``t`` by it is the mistake
the model would itself have made there.

Where we measure ("after a corrupted one"): decoding is causal, so a replaced input ``t`` first affects
step ``t`` — the prediction made right after reading the wrong token. We measure

* ``next``: steps whose own input was actually changed (the replaced token differs from the gold one);
  this is exactly what random replacement trains on — predict the gold token after a wrong one;
* ``later``: steps whose own input is gold but some earlier input was changed (does the error linger?).

A *selected* position whose replacement equals the gold token (the model's argmax was right) changes
nothing, so it is neither measured nor counted as corrupted; the share actually changed is reported.
r = 0 is made comparable by evaluating the *clean* pass on the same step sets: every rate reports
``NLL(corrupted) - NLL(clean)`` over the same positions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from fairseq_eb.corruption import eligible_positions


def selection_draws(prev_output_tokens: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    """One uniform draw per position; ``draws < r`` selects rate r, so sets are nested across rates."""
    return torch.rand(prev_output_tokens.shape, generator=generator, device=prev_output_tokens.device)


def select_positions(prev_output_tokens: Tensor, pad: int, draws: Tensor, rate: float) -> Tensor:
    """Bool mask of eligible positions (y1 .. yn, never BOS/PAD) whose draw is below ``rate``."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    return eligible_positions(prev_output_tokens, pad) & (draws < rate)


def own_prediction_inputs(prev_output_tokens: Tensor, predictions: Tensor, selected: Tensor) -> Tensor:
    """Decoder input with the model's argmax for ``target[t-1]`` (``predictions[:, t-1]``) at selected ``t``.

    ``predictions``: (B, T) argmax of a clean teacher-forced pass. Position 0 is never eligible, so
    the shift never reads outside the row; the input tensor is not modified.
    """
    guesses = torch.cat([prev_output_tokens[:, :1], predictions[:, :-1]], dim=1)
    return torch.where(selected, guesses.to(prev_output_tokens.dtype), prev_output_tokens)


def measured_steps(changed: Tensor, target: Tensor, pad: int) -> Tuple[Tensor, Tensor]:
    """``(next, later)`` bool masks of decoding steps (see the module docstring), never PAD."""
    real = target.ne(pad)
    before = (changed.long().cumsum(dim=1) - changed.long()) > 0  # some strictly earlier input changed
    return changed & real, before & ~changed & real


# target positions per bin of the position-wise ``next`` sums (does the jump after an error grow along the output?)
POSITION_BIN = 16


def _empty() -> Dict[str, float]:
    return {"n": 0, "nll": 0.0, "nll_clean": 0.0, "correct": 0, "correct_clean": 0}


def _accumulate(s: Dict[str, float], m: Tensor, nll: Tensor, nll_clean: Tensor, correct: Tensor,
                correct_clean: Tensor) -> None:
    s["n"] += int(m.sum())
    s["nll"] += float(nll[m].double().sum())
    s["nll_clean"] += float(nll_clean[m].double().sum())
    s["correct"] += int(correct[m].sum())
    s["correct_clean"] += int(correct_clean[m].sum())


def _means(s: Dict[str, float]) -> Dict[str, Optional[float]]:
    n = s["n"]
    if n == 0:
        return {"n": 0, "nll": None, "nll_clean": None, "delta_nll": None,
                "accuracy": None, "accuracy_clean": None, "delta_accuracy": None}
    nll, clean = s["nll"] / n, s["nll_clean"] / n
    acc, acc_clean = s["correct"] / n, s["correct_clean"] / n
    return {"n": n, "nll": nll, "nll_clean": clean, "delta_nll": nll - clean,
            "accuracy": acc, "accuracy_clean": acc_clean, "delta_accuracy": acc - acc_clean}


@dataclass
class Sums:
    """Running sums for one (kind, rate): NLL and correct counts on the measured steps, clean and corrupted,
    and for the ``next`` steps also per bin of ``position_bin`` target positions (step ``t`` in bin ``t // w``)."""
    eligible: int = 0
    selected: int = 0
    changed: int = 0
    position_bin: int = POSITION_BIN
    sets: Dict[str, Dict[str, float]] = field(default_factory=lambda: {s: _empty() for s in ("next", "later", "all")})
    next_by_bin: Dict[int, Dict[str, float]] = field(default_factory=dict)

    def add(self, eligible: Tensor, selected: Tensor, changed: Tensor, masks: Dict[str, Tensor],
            nll: Tensor, nll_clean: Tensor, correct: Tensor, correct_clean: Tensor) -> None:
        self.eligible += int(eligible.sum())
        self.selected += int(selected.sum())
        self.changed += int(changed.sum())
        for name, m in masks.items():
            _accumulate(self.sets[name], m, nll, nll_clean, correct, correct_clean)
        nxt = masks.get("next")
        if nxt is not None and bool(nxt.any()):
            bins = torch.arange(nxt.size(1), device=nxt.device).div(self.position_bin, rounding_mode="floor")
            bins = bins.unsqueeze(0).expand_as(nxt)
            for b in torch.unique(bins[nxt]).tolist():
                _accumulate(self.next_by_bin.setdefault(int(b), _empty()), nxt & bins.eq(b), nll, nll_clean,
                            correct, correct_clean)

    def result(self, rate: float) -> Dict[str, object]:
        """Means per set; ``delta_*`` = corrupted minus clean on the same positions (None if no position)."""
        out: Dict[str, object] = {
            "rate": rate,
            "selected_share": self.selected / self.eligible if self.eligible else 0.0,
            "changed_share_of_selected": self.changed / self.selected if self.selected else 0.0,
            "changed_share": self.changed / self.eligible if self.eligible else 0.0,
        }
        for name, s in self.sets.items():
            out[name] = _means(s)
        w = self.position_bin
        out["next_by_position"] = [{"from": b * w, "to": (b + 1) * w - 1, **_means(self.next_by_bin[b])}
                                   for b in sorted(self.next_by_bin)]
        return out
