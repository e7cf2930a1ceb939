"""Atomic writes: a file a later step reads, or a re-run skips on, is either whole or absent.

Why: a run killed mid-write (SIGKILL, a full disk, a power cut) must not leave a half-written file that the
next run takes as done. Every such file is written to ``<name>.tmp`` in the same directory, flushed, fsync'ed
and renamed over the target (rename is atomic within one file system); the directory is fsync'ed too so the
rename survives a crash. A leftover ``*.tmp`` is never read: the next write of that file replaces it.
A full or read-only disk becomes :class:`DiskWriteError`, one line naming the path and the free space.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator, Union

from fairseq_eb import crash_points

PathLike = Union[str, "os.PathLike[str]"]
TMP_SUFFIX = ".tmp"
# write failures that are the disk's, not the program's: reported in one line with the free space
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


class DiskWriteError(OSError):
    """A write failed because the disk is full or read-only; the message names the path and the free space."""

    def __str__(self) -> str:  # the message alone: OSError's own adds "[Errno N]" and the file name again
        return str(self.args[1]) if len(self.args) > 1 else super().__str__()


def _fsync(fd: int) -> None:
    """``os.fsync``, where a delayed-allocation file system reports a full disk (tests inject ENOSPC here)."""
    os.fsync(fd)


def free_space(path: PathLike) -> str:
    """Free space on the file system holding ``path`` (its nearest existing parent), e.g. ``'12.3 MiB free'``."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return "free space unknown"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if free < 1024 or unit == "TiB":
            return f"{free:.0f} {unit} free" if unit == "B" else f"{free:.1f} {unit} free"
        free /= 1024
    return "free space unknown"  # not reached


def disk_error(exc: OSError, path: PathLike) -> OSError:
    """``exc`` as a :class:`DiskWriteError` naming ``path`` when it is a full/read-only disk, else ``exc``."""
    if isinstance(exc, DiskWriteError) or exc.errno not in DISK_ERRNOS:
        return exc
    err = DiskWriteError(exc.errno, f"cannot write {path}: {os.strerror(exc.errno)} ({free_space(path)}); "
                         "earlier results are intact, free some space and re-run the same command")
    err.filename = str(path)
    return err


def tmp_path(path: PathLike) -> Path:
    """The temporary sibling ``path`` is written through (same directory, so the rename is atomic)."""
    path = Path(path)
    return path.with_name(path.name + TMP_SUFFIX)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened or synced
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def commit(tmp: PathLike, path: PathLike) -> None:
    """fsync ``tmp``, rename it over ``path``, fsync the directory: ``path`` is now whole and durable."""
    tmp, path = Path(tmp), Path(path)
    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            _fsync(fd)
        finally:
            os.close(fd)
        crash_points.maybe_crash("rename", path)  # the kill trials' hook: inert unless FAIRSEQ_EB_CRASH_AT is set
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise disk_error(exc, path) from exc
    _fsync_dir(path.parent)


@contextlib.contextmanager
def writing(path: PathLike) -> Iterator[Path]:
    """Yield the temporary path to write ``path`` through; committed when the block ends without an error,
    removed otherwise (so a failed write never leaves a file a re-run could take as complete)."""
    path = Path(path)
    tmp = tmp_path(path)
    try:
        yield tmp
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise disk_error(exc, path) from exc
        raise
    commit(tmp, path)


def write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with writing(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()


def write_text(path: PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    write_bytes(path, text.encode(encoding))


def write_json(path: PathLike, obj: Any, **dump_options: Any) -> None:
    """Write ``obj`` as JSON (``indent=1`` unless given) plus a newline to ``path`` atomically."""
    dump_options.setdefault("indent", 1)
    write_text(path, json.dumps(obj, **dump_options) + "\n")


def save_with(path: PathLike, save: Callable[[Path], Any]) -> None:
    """Atomically write ``path`` with a writer that takes a file name (``torch.save``, ``fig.savefig``,
    ``shutil.copyfile`` bound to its source)."""
    with writing(path) as tmp:
        save(tmp)


def remove_leftovers(directory: PathLike) -> int:
    """Delete the ``*.tmp`` files (and ``*.tmp`` directories) a killed run left under ``directory``; returns how
    many. Only safe while holding the directory's run lock (:mod:`fairseq_eb.runlock`)."""
    removed = 0
    for leftover in sorted(Path(directory).rglob(f"*{TMP_SUFFIX}"), reverse=True):
        with contextlib.suppress(OSError):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
            removed += 1
    return removed
