"""Run one external command with its output going to a log file and (prefixed) to the console.

Why not just ``subprocess.run``: several trainings may run in parallel, and the user must still see
fairseq's progress; each line is copied to the run's own log and echoed with a ``[method seed]`` tag.
Steps are made atomic (write to ``*.tmp``, rename on success) so an interrupted recipe can resume.
Every child is tracked, so that an interrupted recipe (SIGINT/SIGTERM) stops them all within seconds
(:func:`stop_children`) and starts no new one.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence, Set, TextIO

from fairseq_eb.atomic import commit, disk_error

_PRINT_LOCK = threading.Lock()
_CHILDREN: Set[subprocess.Popen] = set()
_CHILDREN_LOCK = threading.Lock()
_STOPPING = threading.Event()


def echo(message: str, stream: Optional[TextIO] = None) -> None:
    """Print one line without interleaving with other threads' lines."""
    stream = stream or sys.stdout  # looked up per call: callers (and pytest) may replace sys.stdout
    with _PRINT_LOCK:
        stream.write(message.rstrip("\n") + "\n")
        stream.flush()


class StepFailed(RuntimeError):
    """A command exited with a non-zero status; the message names its log file."""


class Stopped(RuntimeError):
    """The recipe is stopping (a signal): no new command is started."""


def stop_children(grace_s: float = 3.0) -> int:
    """Refuse new commands, SIGTERM every running child, SIGKILL those still alive after ``grace_s``; returns
    how many were running. Why: fairseq-train ignores nothing, but a child stuck in I/O must not outlive us."""
    _STOPPING.set()
    with _CHILDREN_LOCK:
        children = list(_CHILDREN)
    for proc in children:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.time() + grace_s
    for proc in children:
        try:
            proc.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return len(children)


def resume_children() -> None:
    """Allow commands again (a new recipe invocation in the same process, e.g. in tests)."""
    _STOPPING.clear()


def run_logged(cmd: Sequence[str], log_path: Path, tag: str, env: Optional[Mapping[str, str]] = None,
               stdout_path: Optional[Path] = None) -> float:
    """Run ``cmd``; stderr (and stdout unless ``stdout_path``) go to ``log_path`` and the console.

    ``stdout_path``: the command's stdout is written there instead (atomically: ``.tmp`` then rename).
    Returns the wall time in seconds; raises :class:`StepFailed` on a non-zero exit.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ, PYTHONUNBUFFERED="1")
    if env:
        full_env.update(env)
    start = time.time()
    tmp_out = stdout_path.with_name(stdout_path.name + ".tmp") if stdout_path else None
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(shlex.quote(str(c)) for c in cmd)}\n")
        log.flush()
        out_file = open(tmp_out, "w", encoding="utf-8") if tmp_out else None
        try:
            with _CHILDREN_LOCK:
                if _STOPPING.is_set():
                    raise Stopped(f"[{tag}] not started: the recipe is stopping")
                proc = subprocess.Popen(
                    [str(c) for c in cmd], env=full_env, text=True, bufsize=1,
                    stdout=out_file if out_file else subprocess.PIPE,
                    stderr=subprocess.STDOUT if not out_file else subprocess.PIPE,
                )
                _CHILDREN.add(proc)
            stream = proc.stderr if out_file else proc.stdout
            assert stream is not None
            try:
                for line in stream:
                    log.write(line)
                    log.flush()
                    if _worth_echoing(line):
                        echo(f"[{tag}] {line.rstrip()}")
                code = proc.wait()
            except BaseException:
                proc.terminate()
                proc.wait()
                raise
            finally:
                with _CHILDREN_LOCK:
                    _CHILDREN.discard(proc)
            if out_file:
                out_file.flush()
                os.fsync(out_file.fileno())
        except OSError as exc:
            raise disk_error(exc, tmp_out or log_path) from exc
        finally:
            if out_file:
                out_file.close()
    elapsed = time.time() - start
    if code != 0:
        if tmp_out:
            tmp_out.unlink(missing_ok=True)
        if _STOPPING.is_set():
            raise Stopped(f"[{tag}] stopped (exit status {code})")
        raise StepFailed(f"[{tag}] command failed with exit status {code}; see {log_path}")
    if tmp_out and stdout_path:
        commit(tmp_out, stdout_path)
    return elapsed


def _worth_echoing(line: str) -> bool:
    """Keep the console readable: progress, validation, errors; not fairseq's start-up dump."""
    keys = ("train_inner", "| valid |", "| train |", "Saved checkpoint", "Error", "error", "Traceback",
            "done training", "NOTE", "WARNING", "Generate test", "BLEU")
    return any(k in line for k in keys)
