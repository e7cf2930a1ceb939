"""Helpers shared by the preparers: the ``raw/`` layout, manifests, step stamps, errors, progress."""
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

SPLITS: Tuple[str, ...] = ("train", "valid", "test")
Pair = Tuple[str, str]  # (source = long text, target = title / synopsis)


class PrepError(RuntimeError):
    """A problem the user can fix (missing file, bad format, no apt); printed without a traceback."""


def log(message: str) -> None:
    """Progress goes to stderr so that stdout stays clean for pipes."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def one_line(text: str) -> str:
    """Collapse all whitespace (tabs, newlines included) so an example fits on one line."""
    return " ".join(text.split())


def raw_paths(out: Path, split: str) -> Tuple[Path, Path]:
    return out / "raw" / f"{split}.src", out / "raw" / f"{split}.tgt"


def write_raw(out: Path, splits: Dict[str, Sequence[Pair]]) -> Dict[str, int]:
    """Write ``out/raw/{split}.{src,tgt}`` atomically (temp file + rename); return the counts."""
    (out / "raw").mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in SPLITS:
        pairs = splits[split]
        for path, column in zip(raw_paths(out, split), (0, 1)):
            tmp = path.with_suffix(path.suffix + ".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                for pair in pairs:
                    f.write(pair[column] + "\n")
            os.replace(tmp, path)
        counts[split] = len(pairs)
    return counts


def raw_sha256(out: Path) -> Dict[str, str]:
    """sha256 of every raw output file, so two builds can be compared byte for byte."""
    return {p.name: sha256_file(p) for split in SPLITS for p in raw_paths(out, split)}


def write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def raw_is_complete(out: Path, manifest: Optional[dict], expect: dict) -> bool:
    """True when a previous run with the same inputs/parameters (``expect``) left complete raw files.

    ``expect`` holds the manifest entries that must match (e.g. input sha256 and parameters); the
    line counts of the raw files must match the manifest's counts too, so a half-written or
    hand-edited directory is rebuilt rather than trusted.
    """
    if not manifest or any(manifest.get(k) != v for k, v in expect.items()):
        return False
    for split in SPLITS:
        for path in raw_paths(out, split):
            if not path.exists() or count_lines(path) != manifest.get("counts", {}).get(split):
                return False
    return True


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def run_main(body: Callable[[], None]) -> None:
    """Run a preparer's body, turning :class:`PrepError` into a one-paragraph message and exit code 2."""
    try:
        body()
    except PrepError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def check_out_dir(out: Path) -> None:
    """``--out`` must be a directory (or not exist yet): an existing file is a clear error, not a traceback."""
    if Path(out).exists() and not Path(out).is_dir():
        raise PrepError(f"--out {out} is an existing file; give a directory (it is created if missing)")


def require_files(paths: List[Optional[str]]) -> None:
    for p in paths:
        if p is not None and not Path(p).is_file():
            raise PrepError(f"input file not found: {p}")
