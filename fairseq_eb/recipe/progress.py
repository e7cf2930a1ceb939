"""Where a long recipe stands: steps done of the total, elapsed time and an estimate of the time left.

Why: a run of CPU-hours must tell a slow run from a hung one, and what a kill would cost. One line per finished
step (training, decoding, scoring); steps skipped because an earlier run finished them count as done silently.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Dict, Optional

KINDS = ("trainings", "decodings", "scorings")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
    """Counts of finished steps per kind; :meth:`done` prints the overall line."""

    def __init__(self, totals: Dict[str, int], say: Callable[[str], None]) -> None:
        self.totals = {k: int(totals.get(k, 0)) for k in KINDS}
        self.finished = {k: 0 for k in KINDS}
        self.ran = {k: 0 for k in KINDS}  # run in this invocation (the others were skipped)
        self.seconds = {k: 0.0 for k in KINDS}
        self.say = say
        self.start = time.time()
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        return sum(self.totals.values())

    @property
    def count(self) -> int:
        return sum(self.finished.values())

    def skipped(self, kind: str) -> None:
        """A step an earlier run finished: counted, not printed."""
        with self._lock:
            self.finished[kind] += 1

    def done(self, kind: str, what: str, seconds: float) -> None:
        """A step finished in this invocation (``seconds`` long): print the overall progress."""
        with self._lock:
            self.finished[kind] += 1
            self.ran[kind] += 1
            self.seconds[kind] += seconds
            line = self.line(what)
        self.say(line)

    def left_s(self) -> Optional[float]:
        """Estimated seconds left: each kind's remaining steps at its mean time this invocation (kinds not yet
        timed at the mean of all timed steps); None before any step has run."""
        timed = sum(self.ran.values())
        if not timed:
            return None
        overall = sum(self.seconds.values()) / timed
        left = 0.0
        for k in KINDS:
            mean = self.seconds[k] / self.ran[k] if self.ran[k] else overall
            left += max(0, self.totals[k] - self.finished[k]) * mean
        return left

    def line(self, what: str = "") -> str:
        parts = ", ".join(f"{k} {self.finished[k]}/{self.totals[k]}" for k in KINDS)
        left = self.left_s()
        estimate = "unknown" if left is None else f"about {_duration(left)}"
        elapsed = _duration(time.time() - self.start)
        return (f"[progress] {self.count}/{self.total} steps done ({parts}); elapsed {elapsed}, left {estimate}"
                + (f" — finished: {what}" if what else ""))

    def summary(self) -> str:
        """What finished, for the message of an interrupted run."""
        return f"{self.count} of {self.total} steps done (" + ", ".join(
            f"{k} {self.finished[k]}/{self.totals[k]}" for k in KINDS) + ")"


_CURRENT: Optional[Progress] = None


def set_current(progress: Optional[Progress]) -> None:
    global _CURRENT
    _CURRENT = progress


def current() -> Optional[Progress]:
    return _CURRENT


def skipped(kind: str) -> None:
    if _CURRENT is not None:
        _CURRENT.skipped(kind)


def done(kind: str, what: str, seconds: float) -> None:
    if _CURRENT is not None:
        _CURRENT.done(kind, what, seconds)
