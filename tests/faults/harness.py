"""Kill trials: the `tiny` recipe (preparation included) killed with SIGKILL at seeded moments, then re-run.

Why: long jobs die at arbitrary moments (preemption, OOM killer, a closed laptop). A trial starts the whole
pipeline (``prep.binarize`` then ``recipe.table``: two methods, one seed, two beams) in its own process group,
kills the group at a random moment of the uninterrupted run's duration, re-runs the same command until it
finishes, and checks: ``results.json``'s scores equal the uninterrupted run's to the last digit, no ``*.tmp`` or
lock file is left, no step complete before the re-run was redone, and no complete file was lost or changed.

``python -m tests.faults.harness --trials 50 --work DIR`` (scripts/fault_trials.sh) prints one JSON line per
trial and a summary; tests/faults/test_kill_trials.py runs a few trials in CI.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from tests.fairseq_tools import write_toy_raw

METHODS = ("baseline", "gp")
LOCK_NAME = ".fairseq-eb.lock"


@dataclass(frozen=True)
class Aim:
    """A kill aimed at one phase: after a seeded arming moment, the first line of the pipeline's output matching
    ``pattern`` triggers the kill after a seeded delay drawn from ``delay`` seconds. Why: short phases (checkpoint
    saving, scoring, writing results) take a few percent of a run, so kills at uniform moments rarely land in them."""

    pattern: str = ""
    delay: Tuple[float, float] = (0.0, 0.0)
    arm: float = 0.8  # arming moment: uniform over this fraction of the run's wall time (0 = from the start)
    # or a crash point (fairseq_eb.crash_points): (point, file-name globs, most N), one glob and an N in 1..most
    # drawn per trial; the whole group is killed exactly there
    crash: Optional[Tuple[str, Tuple[str, ...], int]] = None


AIMS = {
    "preparation": Aim(r"^", (0.3, 6.0), arm=0.0),
    "training": Aim(r"training -> ", (0.5, 8.0)),
    "generation": Aim(r"fairseq-generate -> ", (0.2, 3.0)),
    "diagnosis": Aim(r"fairseq-eb-diagnose -> ", (0.2, 5.0)),
    # phases of a few milliseconds: crash points
    "checkpoint saving": Aim(crash=("checkpoint-copy", ("checkpoint_last.pt", "checkpoint_best.pt"), 3)),
    "selection/averaging/noise": Aim(crash=("rename", ("checkpoint_avg.pt", "selection.json", "noise.json"), 2)),
    "scoring": Aim(crash=("rename", ("score-*.json",), 12)),
    "writing results": Aim(crash=("rename", ("results.json", "table.md", "plot.png", "curves.md"), 1)),
}


def make_raw(data: Path, n_train: int = 400, seed: int = 0) -> Path:
    """The toy raw corpus of the other end-to-end tests (tests/fairseq_tools.py), under ``data/raw``."""
    write_toy_raw(data, n_train, seed)
    return data


def pipeline(data: Path, out: Path) -> List[str]:
    """The command a trial kills and re-runs: preparation, then the recipe."""
    py = sys.executable
    script = (f"{py} -m fairseq_eb.prep.binarize --data {data} --vocab-size 40 --workers 1 && "
              f"exec {py} -m fairseq_eb.recipe.table --data {data} --out {out} --config tiny --methods "
              f"{' '.join(METHODS)} --seeds 1 --beams 1 2 --jobs 1 --threads 1 --device cpu --name toy")
    return ["bash", "-c", script]


def _env() -> Dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def run(cmd: List[str], log: Path, kill_after: Optional[float] = None,
        kill_when: Optional[Callable[[float], bool]] = None, crash_at: str = "") -> Dict[str, object]:
    """Run ``cmd`` in a new process group, output appended to ``log``; SIGKILL the group after ``kill_after`` s,
    or as soon as ``kill_when(seconds since the start)`` returns True (polled every 5 ms), or where the pipeline
    reaches the crash point ``crash_at`` (FAIRSEQ_EB_CRASH_AT; it kills its own group).

    Returns {"rc", "killed", "wall_s", "lines": the output lines of this run}."""
    start = time.time()
    offset = log.stat().st_size if log.exists() else 0
    env = _env()
    env.pop("FAIRSEQ_EB_CRASH_AT", None)
    if crash_at:
        env["FAIRSEQ_EB_CRASH_AT"] = crash_at
    with open(log, "ab") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        killed = False
        if kill_when is None:
            try:
                proc.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                killed = True
        else:
            while proc.poll() is None and not killed:
                killed = kill_when(time.time() - start)
                time.sleep(0.005)
        if killed:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        killed = killed or proc.returncode == -signal.SIGKILL
    # a killed group's grandchildren may outlive the wait by a moment: let them go before the files are read
    _wait_group_gone(proc.pid)
    with open(log, "rb") as f:
        f.seek(offset)
        lines = f.read().decode("utf-8", "replace").splitlines()
    return {"rc": proc.returncode, "killed": killed, "wall_s": time.time() - start, "lines": lines}


class AimedKill:
    """``kill_when`` for :func:`run`: watches the output for ``aim``'s pattern once armed."""

    def __init__(self, aim: Aim, rng: random.Random, wall_s: float, log: Path):
        self.aim, self.log = aim, log
        self.arm_at = rng.uniform(0, aim.arm * wall_s)
        self.delay = rng.uniform(*aim.delay)
        self.regex = re.compile(aim.pattern, re.M)
        self.offset = log.stat().st_size if log.exists() else 0
        self.fire_at: Optional[float] = None

    def _new_text(self) -> str:
        with open(self.log, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        # only complete lines count; a partial one is read again next time
        cut = data.rfind(b"\n") + 1
        self.offset += cut
        return data[:cut].decode("utf-8", "replace")

    def __call__(self, elapsed: float) -> bool:
        if self.fire_at is not None:
            return elapsed >= self.fire_at
        text = self._new_text()  # read even before arming: old lines never trigger
        if elapsed >= self.arm_at and (self.aim.pattern == "^" or self.regex.search(text)):
            self.fire_at = elapsed + self.delay
        return False


def _wait_group_gone(pgid: int, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def phase_of(lines: List[str], out: Path, data: Path) -> str:
    """What the pipeline was doing when killed, from its last output lines and the files being written."""
    if list(out.rglob("*.pt.tmp")) or any(_saving(log) for log in out.glob("runs/*/*/*/train.log")):
        return "checkpoint saving"
    if not (data / "bin").exists() or not (out / "runs").exists() and not any("[floor]" in x for x in lines):
        return "preparation"
    progress = [x for x in lines if "[progress]" in x]
    last = re.search(r"\] (\d+)/(\d+) steps", progress[-1]) if progress else None
    runs = list(out.glob("runs/*/*/seed*"))
    if last and last.group(1) == last.group(2) and runs and all((r / "diagnose.json").exists() for r in runs):
        return "writing results"  # every step and every diagnosis done: only the report is left
    for line in reversed(lines):
        if "[progress]" in line:
            done = re.search(r"\] (\d+)/(\d+) steps", line)
            if "finished: decoding" in line:
                return "scoring"
            if done and done.group(1) == done.group(2):
                return "writing results"
            if "finished: scoring" in line:
                return "generation"
            if "finished: training" in line:
                return "selection/averaging/noise"
        if "fairseq-eb-diagnose ->" in line:
            return "diagnosis"
        if "fairseq-generate ->" in line:
            return "generation"
        if "averaging the last" in line or "valid BLEU noise" in line:
            return "selection/averaging/noise"
        if "Saved checkpoint" in line or "train_inner" in line or "training ->" in line or "| valid |" in line:
            return "training"
        if "[floor]" in line or "[recipe]" in line:
            return "training"
    return "preparation"


def _saving(train_log: Path) -> bool:
    """fairseq announced a checkpoint save in this log and did not report it saved (killed inside the save)."""
    text = train_log.read_text(errors="replace")
    start = text.rfind("Preparing to save checkpoint")
    return start >= 0 and "Saved checkpoint" not in text[start:]


def scores(out: Path) -> Dict[str, object]:
    """Every score in results.json (the tables' numbers), without wall times or paths."""
    found = json.loads((out / "results.json").read_text())
    floor = {k: v for k, v in (found["floor"] or {}).items() if k != "data"}  # "data" is the data's path
    return {"summary_by_selection": found["summary_by_selection"], "floor": floor,
            "diagnostics": found["diagnostics"], "paired": found["paired_rouge_l"],
            "runs": {k: {"scores": v["scores_by_selection"], "noise": v["noise"], "selection": v["selection"],
                         "diagnosis": v["diagnosis"]} for k, v in found["runs"].items()}}


def complete_files(out: Path, data: Path) -> Dict[str, str]:
    """Files a re-run skips on, with their sha256 (train.done by existence: it holds a wall time)."""
    found = {}
    patterns = ("generate-*.txt", "score-*.json", "train.done", "selection.json", "averaging.json", "noise.json",
                "diagnose.json", "settings.json")
    for pattern in patterns:
        for path in out.rglob(pattern):
            found[str(path)] = "" if path.name == "train.done" else hashlib.sha256(path.read_bytes()).hexdigest()
    for path in (data / "bin").glob("*") if (data / "bin").exists() else []:
        found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def leftovers(*dirs: Path) -> List[str]:
    return sorted(str(p) for d in dirs for p in d.rglob("*") if p.name.endswith(".tmp") or p.name == LOCK_NAME)


@dataclass
class Trial:
    seed: int
    kill_fraction: float  # of the latest uninterrupted run's wall time
    kill_at_s: float
    phase: str = ""
    killed: bool = False
    reruns: int = 0
    identical: bool = False
    leftover: List[str] = field(default_factory=list)
    redone: List[str] = field(default_factory=list)
    lost: List[str] = field(default_factory=list)
    error: str = ""
    wall_s: float = 0.0
    first_run_s: float = 0.0
    aim: str = ""  # the phase the kill was aimed at (AIMS), "" for a kill at a uniform moment
    crash_at: str = ""  # the crash point of an aim that has one (FAIRSEQ_EB_CRASH_AT of the first run)


def reference(work: Path) -> Dict[str, object]:
    """The uninterrupted run (cached in WORK/reference.json): its scores and wall time."""
    cache = work / "reference.json"
    if cache.exists():
        return json.loads(cache.read_text())
    base = work / "reference"
    shutil.rmtree(base, ignore_errors=True)
    data, out = make_raw(base / "data"), base / "out"
    result = run(pipeline(data, out), base / "log.txt")
    if result["rc"] != 0:
        raise RuntimeError(f"the uninterrupted run failed (exit {result['rc']}); see {base / 'log.txt'}")
    ref = {"scores": scores(out), "wall_s": result["wall_s"]}
    cache.write_text(json.dumps(ref, indent=1) + "\n")
    return ref


def trial(work: Path, seed: int, ref: Dict[str, object], max_reruns: int = 4,
          wall_s: Optional[float] = None, aim: str = "") -> Trial:
    """One seeded kill, then re-runs until the pipeline finishes; every check recorded.

    The kill comes at a seeded fraction of ``wall_s`` (default: the uninterrupted run's wall time); on a shared
    machine whose load changes, pass the latest uninterrupted duration so the kills still spread over the run.
    With ``aim`` (a key of AIMS) it comes instead inside that phase, at a seeded occurrence and delay."""
    rng = random.Random(seed)
    fraction = rng.uniform(0.02, 1.0)
    wall = float(wall_s or ref["wall_s"])
    t = Trial(seed=seed, kill_fraction=round(fraction, 3), kill_at_s=round(fraction * wall, 2), aim=aim)
    base = work / f"trial-{seed}"
    shutil.rmtree(base, ignore_errors=True)
    data, out, log = make_raw(base / "data"), base / "out", base / "log.txt"
    start = time.time()
    crash = AIMS[aim].crash if aim else None
    if crash:
        point, globs, most = crash
        t.crash_at = f"{point}:{rng.choice(globs)}:{rng.randint(1, most)}"
        first = run(pipeline(data, out), log, crash_at=t.crash_at)
        t.kill_at_s = round(float(first["wall_s"]), 2) if first["killed"] else 0.0
        t.kill_fraction = round(t.kill_at_s / wall, 3)
    elif aim:
        when = AimedKill(AIMS[aim], rng, wall, log)
        first = run(pipeline(data, out), log, kill_when=when)
        t.kill_at_s = round(float(first["wall_s"]), 2) if first["killed"] else 0.0
        t.kill_fraction = round(t.kill_at_s / wall, 3)
    else:
        first = run(pipeline(data, out), log, kill_after=t.kill_at_s)
    t.killed = bool(first["killed"])
    t.first_run_s = round(float(first["wall_s"]), 1)
    t.phase = phase_of(first["lines"], out, data) if t.killed else "finished before the kill"
    before = complete_files(out, data) if out.exists() else {}
    while True:
        again = run(pipeline(data, out), log)
        t.reruns += 1
        if again["rc"] == 0:
            break
        if t.reruns >= max_reruns:
            t.error = f"re-run {t.reruns} exited {again['rc']}: " + " | ".join(again["lines"][-3:])
            break
        if t.reruns == 1:
            t.error = f"first re-run exited {again['rc']}"
    text = "\n".join(again["lines"])
    for path in before:
        if path.endswith("train.done") and f"training -> {Path(path).parent / 'train.log'}" in text:
            t.redone.append(path)
        if "generate-" in Path(path).name and f"fairseq-generate -> {path}" in text:
            t.redone.append(path)
    after = complete_files(out, data) if out.exists() else {}
    t.lost = sorted(p for p, digest in before.items() if p not in after or after[p] != digest)
    t.leftover = leftovers(data, out)
    if again["rc"] == 0:
        t.identical = scores(out) == ref["scores"]
    t.wall_s = round(time.time() - start, 1)
    return t


def summarise(trials: List[Trial]) -> Dict[str, object]:
    phases: Dict[str, int] = {}
    for t in trials:
        phases[t.phase] = phases.get(t.phase, 0) + 1
    return {"trials": len(trials), "killed": sum(t.killed for t in trials),
            "identical_of_killed": sum(t.identical for t in trials if t.killed),
            "identical": sum(t.identical for t in trials), "kill_points": phases,
            "files_lost": sum(len(t.lost) for t in trials), "leftover_files": sum(len(t.leftover) for t in trials),
            "steps_redone": sum(len(t.redone) for t in trials),
            "failed_reruns": sum(bool(t.error) for t in trials)}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.faults.harness", description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--seed", type=int, default=1, help="first trial's seed (trial i uses seed + i)")
    p.add_argument("--work", type=Path, required=True, help="working directory (trial-<seed>/ each)")
    p.add_argument("--wall-s", type=float, default=None,
                   help="duration the kill moments spread over (default: the cached uninterrupted run's wall time)")
    p.add_argument("--keep", action="store_true", help="keep each trial's directory (default: deleted when it passed)")
    p.add_argument("--aim", choices=sorted(AIMS), default="",
                   help="aim every kill at this phase (a seeded occurrence and delay) instead of a uniform moment")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    ref = reference(args.work)
    print(json.dumps({"reference_wall_s": round(ref["wall_s"], 1)}), flush=True)
    trials = []
    wall = args.wall_s or float(ref["wall_s"])
    for i in range(args.trials):
        t = trial(args.work, args.seed + i, ref, wall_s=wall, aim=args.aim)
        if not t.killed and not args.aim:  # it finished first: the machine got faster; aim later kills at this
            wall = t.first_run_s
        trials.append(t)
        print(json.dumps(asdict(t)), flush=True)
        print(json.dumps({"so_far": summarise(trials)}), flush=True)  # a batch stopped early still has its counts
        ok = t.identical and not (t.lost or t.leftover or t.redone or t.error)
        if ok and not args.keep:
            shutil.rmtree(args.work / f"trial-{t.seed}", ignore_errors=True)
    summary = summarise(trials)
    print(json.dumps({"summary": summary}), flush=True)
    bad = summary["trials"] - summary["identical"] + summary["files_lost"] + summary["leftover_files"]
    return 1 if bad or summary["steps_redone"] else 0


if __name__ == "__main__":
    sys.exit(main())
