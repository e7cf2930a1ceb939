"""One run per output directory: a lock file holding the owner's PID, host and command.

Why: two recipes (or preparers, or diagnoses) started on the same ``--out`` trample each other's files and die
far from the cause. The second one refuses at once, naming the running process; a lock left by a killed run
(its PID no longer alive on this host) is taken over with a one-line message.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional

LOCK_NAME = ".fairseq-eb.lock"


class RunLocked(RuntimeError):
    """Another live process holds the directory's lock; the message names it."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read(path: Path) -> Optional[Dict[str, object]]:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _describe(owner: Dict[str, object]) -> str:
    return (f"PID {owner.get('pid')} on {owner.get('host')} since {owner.get('started')}: "
            f"{owner.get('command', '?')}")


class RunLock:
    """``with RunLock(out, "--out"):`` holds ``out/.fairseq-eb.lock`` for the block (re-entrant per process)."""

    def __init__(self, directory: Path, option: str = "--out", say: Callable[[str], None] = None) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.option = option
        self.say = say or (lambda message: print(message, file=sys.stderr, flush=True))
        self.held = False
        self.created: Optional[Path] = None  # the first directory the lock had to create (removed if left empty)

    def _mine(self) -> Dict[str, object]:
        return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(sys.argv)[:300]}

    def _create(self) -> bool:
        """Create the lock file exclusively; False when it exists already."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self._mine(), f)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:  # a full disk: no half-written lock left to be judged later
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise
        return True

    def acquire(self) -> None:
        """Take the lock, take over a stale one, or raise :class:`RunLocked` naming the live owner."""
        missing = self.directory
        while not missing.parent.exists() and missing.parent != missing:
            missing = missing.parent
        self.created = None if self.directory.exists() else missing
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._acquire()
        except BaseException:
            self._remove_created()
            raise

    def _acquire(self) -> None:
        for _ in range(3):  # a lock removed between our look and our create: look again
            if self._create():
                self.held = True
                return
            owner = _read(self.path)
            if owner is None:  # unreadable: a creator killed between create and write, or being written now
                time.sleep(0.2)
                owner = _read(self.path) or {}
            pid, host = owner.get("pid"), owner.get("host")
            if pid == os.getpid() and host == socket.gethostname():
                return  # already ours (nested use in one process): the outer use releases it
            if isinstance(pid, int) and host == socket.gethostname() and _alive(pid):
                raise RunLocked(f"{self.option} {self.directory} is in use by another run ({_describe(owner)}); "
                                "wait for it, stop it, or use another directory")
            if host not in (None, socket.gethostname()):
                raise RunLocked(f"{self.option} {self.directory} is locked by a run on host {host} "
                                f"({_describe(owner)}); if that run is dead, delete {self.path}")
            self.say(f"[lock] taking over {self.path}: its run ({_describe(owner) if owner else 'unknown'}) is no "
                     "longer running")
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        raise RunLocked(f"{self.option} {self.directory}: could not take {self.path} (another run keeps taking it)")

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if not self.held:
            return
        owner = _read(self.path)
        if owner and owner.get("pid") == os.getpid():
            try:
                os.unlink(self.path)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
        self.held = False
        self._remove_created()

    def _remove_created(self) -> None:
        """A run refused (or failed) before writing anything leaves no directory behind."""
        if self.created is None:
            return
        directory = self.directory
        while True:
            try:
                directory.rmdir()  # only when empty
            except OSError:
                break
            if directory == self.created or directory.parent == directory:
                break
            directory = directory.parent
        self.created = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
