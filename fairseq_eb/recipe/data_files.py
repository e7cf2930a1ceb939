"""The binarised data's ``.idx``/``.bin`` pairs checked for truncation before any training starts.

Why: fairseq memory-maps them; a truncated file (a copy cut short, a full disk while binarising) surfaces
only as an index error or garbage batches deep inside a training. Checked from the index header alone (no data
is read): the ``.idx`` must hold the arrays its header announces, and the ``.bin`` the bytes its last pointer
and size reach.
"""
from __future__ import annotations

import struct
from pathlib import Path

MAGIC = b"MMIDIDX\x00\x00"  # fairseq's MMapIndexedDataset index (fairseq-preprocess' default --dataset-impl mmap)
_ITEMSIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 4, 7: 8, 8: 2}
_HEADER = len(MAGIC) + 8 + 1 + 8  # magic, version <Q, dtype code <B, sequence count <Q; then sizes, pointers


class DamagedData(ValueError):
    """A binarised data file is truncated or not fairseq's format; the message names it."""


def check_pair(idx: Path, hint: str) -> None:
    """Raise :class:`DamagedData` when ``idx`` or its ``.bin`` is shorter than the index says (other index formats,
    e.g. the legacy ``lazy``/``cached`` ones, are left to fairseq)."""
    binary = idx.with_suffix(".bin")
    with open(idx, "rb") as f:
        head = f.read(_HEADER)
        if not head.startswith(MAGIC[:4]) and len(head) >= 8:
            return  # another dataset implementation: fairseq's own checks apply
        if len(head) < _HEADER or not head.startswith(MAGIC):
            raise DamagedData(f"{idx} is truncated or damaged ({idx.stat().st_size} bytes, no complete fairseq index "
                              f"header); {hint}")
        _version, code, count = struct.unpack("<QBQ", head[len(MAGIC):])
        expected_idx = _HEADER + 4 * count + 8 * count
        actual_idx = idx.stat().st_size
        if actual_idx < expected_idx or code not in _ITEMSIZE:
            raise DamagedData(f"{idx} is truncated ({actual_idx} bytes, its header announces {expected_idx}); {hint}")
        if count == 0:
            return
        f.seek(_HEADER + 4 * (count - 1))
        (last_size,) = struct.unpack("<i", f.read(4))
        f.seek(_HEADER + 4 * count + 8 * (count - 1))
        (last_pointer,) = struct.unpack("<q", f.read(8))
    expected_bin = last_pointer + last_size * _ITEMSIZE[code]
    actual_bin = binary.stat().st_size if binary.exists() else 0
    if actual_bin < expected_bin:
        raise DamagedData(f"{binary} is truncated ({actual_bin} bytes, its index {idx.name} needs {expected_bin}); "
                          f"{hint}")


def check_binarized(bin_dir: Path, hint: str = "re-run python -m fairseq_eb.prep.binarize (or fairseq-preprocess) "
                    "to rebuild it") -> None:
    """Check every ``*.idx``/``*.bin`` pair under ``bin_dir``."""
    for idx in sorted(Path(bin_dir).glob("*.idx")):
        check_pair(idx, hint)
