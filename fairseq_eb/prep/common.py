"""Helpers shared by the preparers: the ``raw/`` layout, manifests, step stamps, errors, progress."""
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from fairseq_eb import atomic

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
    """Write ``out/raw/{split}.{src,tgt}`` atomically (temp file + rename); return the counts.

    ``splits`` holds train/valid/test and possibly extra test sets (e.g. ``ood``), written the same way."""
    (out / "raw").mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in all_splits(splits):
        pairs = splits[split]
        for path, column in zip(raw_paths(out, split), (0, 1)):
            with atomic.writing(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
                for pair in pairs:
                    f.write(pair[column] + "\n")
        counts[split] = len(pairs)
    return counts


def all_splits(names: Iterable[str]) -> List[str]:
    """train, valid, test, then any extra test sets (e.g. ``ood``) in name order."""
    return list(SPLITS) + sorted(set(names) - set(SPLITS))


def raw_sha256(out: Path, splits: Iterable[str] = SPLITS) -> Dict[str, str]:
    """sha256 of every raw output file, so two builds can be compared byte for byte."""
    return {p.name: sha256_file(p) for split in all_splits(splits) for p in raw_paths(out, split)}


def write_json(path: Path, obj: dict) -> None:
    atomic.write_json(path, obj, indent=2, ensure_ascii=False, sort_keys=True)


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
    for split in all_splits(manifest.get("counts", {})):
        for path in raw_paths(out, split):
            if not path.exists() or count_lines(path) != manifest.get("counts", {}).get(split):
                return False
    return True


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def run_main(body: Callable[[], None], lock: Optional[Tuple[Path, str]] = None) -> None:
    """Run a preparer's body, turning :class:`PrepError` into a one-paragraph message and exit code 2.

    ``lock``: (directory, option) held for the body (:class:`fairseq_eb.runlock.RunLock`), so a second preparer on
    the same directory refuses at once; a full or read-only disk is one line naming the path (exit 1)."""
    from fairseq_eb.atomic import DISK_ERRNOS, disk_error
    from fairseq_eb.runlock import RunLock, RunLocked

    held = RunLock(*lock, say=log) if lock is not None and not Path(lock[0]).is_file() else None
    try:
        if held is not None:
            held.acquire()
        body()
    except (PrepError, RunLocked) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        if e.errno not in DISK_ERRNOS:
            raise
        print(f"error: {disk_error(e, e.filename or (lock[0] if lock else '.'))}", file=sys.stderr)
        sys.exit(1)
    finally:
        if held is not None:
            held.release()


def check_out_dir(out: Path) -> None:
    """``--out`` must be a directory (or not exist yet): an existing file is a clear error, not a traceback."""
    if Path(out).exists() and not Path(out).is_dir():
        raise PrepError(f"--out {out} is an existing file; give a directory (it is created if missing)")


def require_files(paths: List[Optional[str]]) -> None:
    for p in paths:
        if p is not None and not Path(p).is_file():
            raise PrepError(f"input file not found: {p}")


def is_within(path: Path, directory: Path) -> bool:
    """True when ``path`` is ``directory`` or lies under it (both resolved, so ``..`` and links count)."""
    path, directory = Path(path).resolve(), Path(directory).resolve()
    return path == directory or directory in path.parents


def check_out_not_in_input(out: Path, input_dir: Path, input_option: str) -> None:
    """Refuse ``--out`` equal to or inside the input directory: the preparer would overwrite what it reads.

    Why: ``prep.finetune --parent p --out p`` replaced the parent's ``raw/train.*`` by the subset and then
    failed, leaving the parent's data gone.
    """
    if is_within(out, input_dir):
        where = "the same directory as" if Path(out).resolve() == Path(input_dir).resolve() else "inside"
        raise PrepError(f"--out {out} is {where} {input_option} {input_dir}; give an output directory outside "
                        "the input")


def check_inputs_not_in_outputs(out: Path, inputs: Dict[str, Optional[str]]) -> None:
    """Refuse input files that this preparer would overwrite (``OUT/raw/*``, ``OUT/manifest.json``)."""
    for option, path in inputs.items():
        if path is not None and (is_within(Path(path), out / "raw")
                                 or Path(path).resolve() == (out / "manifest.json").resolve()):
            raise PrepError(f"{option} {path} lies in --out {out}, whose raw/ and manifest.json this preparer "
                            "writes; move the input or give another --out")


def _has_files(directory: Path) -> bool:
    return directory.is_dir() and any(directory.iterdir())


def recorded_manifest(out: Path) -> Optional[dict]:
    """``OUT/manifest.json`` as recorded by an earlier run; ``PrepError`` when it exists but cannot be read
    (it may be another corpus's: never overwrite what cannot be compared)."""
    path = Path(out) / "manifest.json"
    if not path.exists():
        return None
    manifest = read_json(path)
    if not isinstance(manifest, dict):
        raise PrepError(f"--out {out}: {path} cannot be read as JSON, so whose data {out} holds is unknown; "
                        "use a new --out directory, or delete that file to replace the data")
    return manifest


def check_same_corpus(out: Path, manifest: Optional[dict], other: Optional[str],
                      data_dirs: Sequence[str] = ("raw",)) -> None:
    """Refuse an ``--out`` that holds another corpus's data, as the recipe refuses another experiment's.

    ``other`` is ``None`` when ``manifest`` records this corpus (a re-run, possibly with other parameters:
    rebuilt), else a short description of what it records instead. Data directories without any manifest
    are refused too: nothing says whose they are.
    """
    if manifest is None:
        found = [d for d in data_dirs if _has_files(Path(out) / d)]
        if found:
            raise PrepError(f"--out {out} holds {', '.join(d + '/' for d in found)} that no manifest.json records "
                            "(another corpus's data?); use a new --out directory, or delete them to replace them")
        return
    if other is not None:
        raise PrepError(f"--out {out} holds another corpus ({other}); use a new --out directory, or delete "
                        f"{Path(out) / 'manifest.json'} to replace it")


def same_input(recorded: Optional[dict], current: dict) -> bool:
    """One input is the same when its path or its content (sha256) is unchanged: an edited file or a moved
    one is still this corpus; a different file at a different path is not."""
    return isinstance(recorded, dict) and (recorded.get("path") == current["path"]
                                           or recorded.get("sha256") == current["sha256"])
