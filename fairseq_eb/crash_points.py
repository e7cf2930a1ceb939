"""Crash injection for the kill trials (tests/faults, docs/reliability.md); inert unless FAIRSEQ_EB_CRASH_AT is set.

Why in the package: a kill at a uniform moment almost never lands in the phases that last milliseconds — an
atomic write's rename, fairseq copying a saved checkpoint to ``checkpoint_last.pt`` — yet those are where a
half-written file would come from. As sqlite's test suite does, a trial names the point and the whole process
group is killed exactly there (SIGKILL; every process of a recipe shares its group).

``FAIRSEQ_EB_CRASH_AT="POINT:GLOB[:N]"`` kills at the N-th (default first) time, in one process, that POINT is
reached for a file whose name matches GLOB. POINTs:

- ``rename``: :func:`fairseq_eb.atomic.commit`, the temporary file complete and synced, before the rename;
- ``checkpoint-copy``: fairseq copying a just-saved checkpoint to another name (``checkpoint_best.pt``,
  ``checkpoint_last.pt``): half of the bytes are written to the destination, then the kill (a truncated file).
"""
from __future__ import annotations

import fnmatch
import os
import signal
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

ENV = "FAIRSEQ_EB_CRASH_AT"
POINTS = ("rename", "checkpoint-copy")
_seen: Dict[str, int] = {}


def _spec() -> Optional[Tuple[str, str, int]]:
    raw = os.environ.get(ENV, "")
    if not raw:
        return None
    parts = raw.split(":")
    if len(parts) not in (2, 3) or parts[0] not in POINTS or (len(parts) == 3 and not parts[2].isdigit()):
        raise SystemExit(f"{ENV}={raw!r}: expected POINT:GLOB[:N] with POINT one of {', '.join(POINTS)}")
    return parts[0], parts[1], int(parts[2]) if len(parts) == 3 else 1


def due(point: str, path: Union[str, Path]) -> bool:
    """True when the process group is to be killed at ``point`` for ``path`` (counts the matches)."""
    spec = _spec()
    if spec is None or spec[0] != point or not fnmatch.fnmatch(Path(path).name, spec[1]):
        return False
    _seen[point] = _seen.get(point, 0) + 1
    return _seen[point] == spec[2]


def crash() -> None:
    """SIGKILL this process's whole group (the recipe, fairseq children, the shell that started them)."""
    os.killpg(os.getpgrp(), signal.SIGKILL)


def maybe_crash(point: str, path: Union[str, Path]) -> None:
    if due(point, path):
        crash()


def install_checkpoint_copy() -> None:
    """Wrap fairseq's PathManager.copy so that ``checkpoint-copy`` can fire (only when FAIRSEQ_EB_CRASH_AT names
    that point: otherwise fairseq is left untouched)."""
    spec = _spec()
    if spec is None or spec[0] != "checkpoint-copy":
        return
    from fairseq.file_io import PathManager

    original = PathManager.copy

    def copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
        if due("checkpoint-copy", dst_path):
            data = Path(src_path).read_bytes()
            with open(dst_path, "wb") as f:
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
            crash()
        return original(src_path, dst_path, overwrite)

    PathManager.copy = staticmethod(copy)
