"""A second checkpoint selection that no noisy validation decides: the average of the last k checkpoints.

Why: picking the best of many noisy validations rewards the luckiest one (the valid metric moved by ±0.5–1
BLEU between consecutive validations in the study), while averaging the weights of the last k checkpoints of
a fixed budget is the same rule for every method and seed and is standard fairseq practice (its
``scripts/average_checkpoints.py``, which the pip package does not ship). Parameters are averaged in float64
and cast back; integer buffers are taken from the newest checkpoint; the newest checkpoint's other fields
(configuration, training state) are kept, its optimizer state dropped (decoding never needs it).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

from fairseq_eb import atomic

_INTERVAL = re.compile(r"checkpoint_\d+_(?P<updates>\d+)\.pt")


def interval_checkpoints(checkpoints: Path) -> List[Path]:
    """fairseq's interval checkpoints (``checkpoint_<epoch>_<updates>.pt``) of a run, oldest first."""
    found = [(int(m["updates"]), p) for p in checkpoints.glob("checkpoint_*_*.pt")
             if (m := _INTERVAL.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def checkpoints_by_update(checkpoints: Path, log_text: str) -> Dict[int, Path]:
    """update -> a checkpoint file holding the model of that update: the interval checkpoints, and
    ``checkpoint_last.pt`` for the run's last save (fairseq writes no interval checkpoint when the budget ends
    at an epoch's end)."""
    from fairseq_eb.recipe.selection import parse_saved

    found = {int(m["updates"]): p for p in checkpoints.glob("checkpoint_*_*.pt")
             if (m := _INTERVAL.fullmatch(p.name))}
    saved = parse_saved(log_text)
    last = checkpoints / "checkpoint_last.pt"
    if saved and max(saved) not in found and last.exists():
        found[max(saved)] = last
    return dict(sorted(found.items()))


def average_state_dicts(states: Sequence[Mapping[str, "object"]]) -> Dict[str, "object"]:
    """Element-wise mean of floating-point tensors over ``states`` (same keys and shapes, or ValueError);
    other entries (integer buffers) come from the last state."""
    import torch

    if not states:
        raise ValueError("nothing to average: no checkpoints")
    keys = list(states[-1].keys())
    for i, st in enumerate(states):
        if list(st.keys()) != keys:
            raise ValueError(f"checkpoint {i} has other parameters than the newest one; cannot average them")
    out: Dict[str, object] = {}
    for key in keys:
        last = states[-1][key]
        if isinstance(last, torch.Tensor) and last.is_floating_point():
            total = torch.zeros(last.shape, dtype=torch.float64)
            for st in states:
                if st[key].shape != last.shape:
                    raise ValueError(f"parameter {key} changes shape between checkpoints; cannot average them")
                total += st[key].to(torch.float64)
            out[key] = (total / len(states)).to(last.dtype)
        else:
            out[key] = last
    return out


def average_checkpoints(paths: Sequence[Path], output: Path) -> Dict[str, object]:
    """Write the average of ``paths`` (oldest first) to ``output`` atomically; returns what was averaged."""
    import torch
    from fairseq import checkpoint_utils

    import fairseq_eb

    fairseq_eb.register()  # the safe-loading shims
    states = [checkpoint_utils.load_checkpoint_to_cpu(str(p)) for p in paths]
    newest = dict(states[-1])
    newest["model"] = average_state_dicts([st["model"] for st in states])
    newest["last_optimizer_state"] = None
    newest.pop("averaged_from", None)
    newest["extra_state"] = dict(newest.get("extra_state") or {}, averaged_from=[p.name for p in paths])
    atomic.save_with(output, lambda tmp: torch.save(newest, tmp))
    return {"averaged": [p.name for p in paths], "k": len(paths)}
