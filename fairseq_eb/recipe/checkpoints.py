"""Before a training resumes: ``checkpoint_last.pt`` must load, else resume from the newest checkpoint that does.

Why: fairseq writes the first checkpoint of an update through a temporary file but *copies* it to the others
(``checkpoint_best.pt``, ``checkpoint_last.pt``); a run killed during that copy, or a damaged disk, leaves a
truncated ``checkpoint_last.pt`` and every resume fails on it. The newest loadable checkpoint of the same run
(an interval checkpoint, or the best one) holds the full training state of its update, so resuming from it
repeats at most the updates since then.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

from fairseq_eb import atomic
from fairseq_eb.recipe.logged_command import echo

LAST = "checkpoint_last.pt"


class DamagedCheckpoint(ValueError):
    """``checkpoint_last.pt`` does not load and no other checkpoint of the run does; the message names it."""


def _load_updates(path: Path) -> Tuple[Optional[int], str]:
    """(the checkpoint's update count, "") when ``path`` loads as a fairseq checkpoint, else (None, why)."""
    import torch

    from fairseq_eb.compat import checkpoint_load_message

    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        return int(state["optimizer_history"][-1]["num_updates"]), ""
    except Exception as exc:  # noqa: BLE001 - any failure to load means: not usable to resume
        if isinstance(exc, (KeyError, IndexError, TypeError)):
            return None, f"checkpoint {path}: not a fairseq training checkpoint (no optimizer history)"
        return None, checkpoint_load_message(str(path), exc)


def check_resumable(checkpoints: Path, tag: str) -> Optional[Path]:
    """Make sure fairseq can resume from ``checkpoints/checkpoint_last.pt``; returns the checkpoint put in its place
    (None when it loads or does not exist). Raises :class:`DamagedCheckpoint` when no checkpoint loads."""
    last = checkpoints / LAST
    if not last.exists():
        return None
    updates, why = _load_updates(last)
    if updates is not None:
        return None
    found = []
    for candidate in checkpoints.glob("checkpoint*.pt"):
        if candidate.name == LAST:
            continue
        n, _ = _load_updates(candidate)
        if n is not None:
            found.append((n, candidate.stat().st_mtime, candidate))
    if not found:
        raise DamagedCheckpoint(f"[{tag}] {why}, and no other checkpoint in {checkpoints} loads; delete "
                                f"{checkpoints.parent} to train this run from the start")
    n, _, newest = max(found)
    import shutil

    atomic.save_with(last, lambda tmp: shutil.copyfile(newest, tmp))
    echo(f"[{tag}] {why}: resuming from {newest.name} (update {n}), the newest checkpoint that loads")
    return newest
