"""Two checkpoint selections of one training run: by a generation metric and by validation loss.

Why both: validation loss is a teacher-forced quantity, so selecting by it favours teacher forcing; the
recipe's main selection is fairseq's own ``checkpoint_best.pt`` by the validation BLEU of beam-1 decoding
(``--eval-bleu --best-checkpoint-metric bleu``), and this module recovers the lowest-loss checkpoint from the
same training's log, so every table can report both. Training keeps every interval checkpoint; once it
has ended, :func:`select` copies the lowest-loss one to ``checkpoint_best_loss.pt``, writes
``selection.json`` and deletes the other interval checkpoints. Pure log parsing is kept separate so it
is unit-tested on text.
"""
from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional

from fairseq_eb import atomic

# selection name -> checkpoint file in the run's checkpoints/ directory
SELECTIONS: Dict[str, str] = {"bleu": "checkpoint_best.pt", "loss": "checkpoint_best_loss.pt",
                              "avg": "checkpoint_avg.pt"}

_VALID = re.compile(r"\| valid on 'valid' subset \|(?P<fields>.*)$")
_INTERVAL = re.compile(r"checkpoint_\d+_\d+\.pt")
_SAVED = re.compile(r"Saved checkpoint (?P<path>\S+) \(epoch \d+ @ (?P<updates>\d+) updates")


class NonFiniteValidation(ValueError):
    """The training's validation loss or BLEU became NaN or infinite."""


@dataclass(frozen=True)
class Validation:
    """One validation of the training log."""

    num_updates: int
    loss: float
    bleu: Optional[float]


def parse_validations(log_text: str) -> List[Validation]:
    """Every validation in the log, by update; a resumed run's repeated update keeps its last record."""
    found: Dict[int, Validation] = {}
    for line in log_text.splitlines():
        match = _VALID.search(line)
        if not match:
            continue
        fields = dict(part.strip().split(" ", 1) for part in match["fields"].split("|") if " " in part.strip())
        if "num_updates" not in fields or "loss" not in fields:
            continue
        bleu = fields.get("bleu")
        found[int(fields["num_updates"])] = Validation(int(fields["num_updates"]), float(fields["loss"]),
                                                       None if bleu is None else float(bleu))
    return [found[u] for u in sorted(found)]


def parse_saved(log_text: str) -> Dict[int, str]:
    """update number -> path of the first checkpoint file fairseq wrote at that update."""
    saved: Dict[int, str] = {}
    for line in log_text.splitlines():
        match = _SAVED.search(line)
        if match:
            saved[int(match["updates"])] = match["path"]
    return saved


def best(validations: List[Validation], metric: str) -> Validation:
    """The earliest best validation: lowest loss, or highest BLEU (fairseq keeps the first strictly better)."""
    if not validations:
        raise ValueError("no validation found in the training log")
    if metric == "loss":
        return min(validations, key=lambda v: (v.loss, v.num_updates))
    scored = [v for v in validations if v.bleu is not None]
    if not scored:
        raise ValueError("no validation BLEU in the training log (was it trained with --eval-bleu?)")
    return max(scored, key=lambda v: (v.bleu, -v.num_updates))


def check_finite(validations: List[Validation], log_path: Path) -> None:
    """Refuse a training whose validation loss or BLEU is NaN/inf: fairseq keeps a first non-finite validation as
    its ``checkpoint_best.pt`` (no later value compares better), so no checkpoint of that run may be selected."""
    bad = [v for v in validations if not math.isfinite(v.loss) or (v.bleu is not None and not math.isfinite(v.bleu))]
    if bad:
        raise NonFiniteValidation(
            f"{log_path}: validation at update {bad[0].num_updates} has a non-finite loss or BLEU (loss {bad[0].loss},"
            f" BLEU {bad[0].bleu}); no checkpoint of this run is selected. Lower --lr or the method's strength "
            "(e.g. --gp-epsilon) and delete the run directory to redo it")


def prune_intervals(checkpoints: Path) -> None:
    """Delete the interval checkpoints once every selection has been made from them."""
    for interval in checkpoints.glob("checkpoint_*_*.pt"):
        if _INTERVAL.fullmatch(interval.name):
            interval.unlink()


def select(checkpoints: Path, log_path: Path, prune: bool = True) -> Dict[str, object]:
    """Make ``checkpoint_best_loss.pt``, write and return ``selection.json`` (idempotent); ``prune=False`` keeps
    the interval checkpoints for the selections made after this one (averaging, the noise measurement)."""
    out = checkpoints.parent / "selection.json"
    if out.exists() and (checkpoints / SELECTIONS["loss"]).exists():
        return json.loads(out.read_text())
    text = log_path.read_text(encoding="utf-8", errors="replace")
    validations = parse_validations(text)
    check_finite(validations, log_path)
    by_loss = best(validations, "loss")
    if all(v.bleu is None for v in validations):
        # trained without --eval-bleu: fairseq's checkpoint_best.pt is already the lowest-loss one
        atomic.save_with(checkpoints / SELECTIONS["loss"],
                         lambda tmp: shutil.copyfile(checkpoints / SELECTIONS["bleu"], tmp))
        result = {"bleu": None, "loss": asdict(by_loss), "same": True, "validations": [asdict(v) for v in validations]}
        atomic.write_json(out, result)
        return result
    by_bleu = best(validations, "bleu")
    saved = parse_saved(text)
    source = saved.get(by_loss.num_updates)
    if source is None or not Path(source).exists():
        interval = sorted(checkpoints.glob(f"checkpoint_*_{by_loss.num_updates}.pt"))
        source = str(interval[0]) if interval else None
    if source is None:
        raise RuntimeError(f"{checkpoints}: no checkpoint was kept for update {by_loss.num_updates} (lowest valid "
                           "loss); train with --keep-interval-updates -1")
    atomic.save_with(checkpoints / SELECTIONS["loss"], lambda tmp: shutil.copyfile(source, tmp))
    if prune:
        prune_intervals(checkpoints)
    result = {"bleu": asdict(by_bleu), "loss": asdict(by_loss), "same": by_bleu.num_updates == by_loss.num_updates,
              "validations": [asdict(v) for v in validations]}
    atomic.write_json(out, result)
    return result
