"""The recipe dying at arbitrary moments (docs/reliability.md): a few kill trials (scripts/fault_trials.sh runs
more), SIGTERM, a second run on the same ``--out`` while the first runs, and a full disk at the end.

Marked ``slow`` (a few minutes: one uninterrupted tiny run, two killed and re-run, one stopped by SIGTERM);
``pytest -m "not slow"`` leaves them out; ``FAULTS_WORK=DIR`` reuses the uninterrupted run cached in DIR.
"""
import errno
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.faults import harness

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """FAULTS_WORK=DIR reuses the uninterrupted run cached there (e.g. scripts/fault_trials.sh's WORK)."""
    given = os.environ.get("FAULTS_WORK")
    return Path(given).resolve() if given else tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def reference(work):
    return harness.reference(work)


# two kill moments: early (preparation or training) and late (decoding, scoring, results)
@pytest.mark.parametrize("seed", [3, 6])  # killed at 24% and 79% of the uninterrupted run
def test_killed_with_sigkill_and_rerun_gives_the_same_scores(work, reference, seed):
    trial = harness.trial(work, seed, reference)
    assert trial.identical, trial
    assert not trial.error and not trial.leftover and not trial.lost and not trial.redone, trial


def _wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not seen in {log} (exit {proc.poll()})")


def test_sigterm_stops_the_children_says_how_to_resume_and_resumes(work, reference):
    base = work / "sigterm"
    data, out = harness.make_raw(base / "data"), base / "out"
    log = base / "log.txt"
    with open(log, "wb") as f:
        proc = subprocess.Popen(harness.pipeline(data, out), stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True, env=harness._env())
    try:
        _wait_for(log, "training ->", proc)
        # a second recipe on the same --out refuses at once, naming the running one
        second = subprocess.run(harness.pipeline(data, out), capture_output=True, text=True, env=harness._env(),
                                timeout=120)
        err = [line for line in second.stderr.splitlines() if line.startswith("error:")]
        assert second.returncode == 2 and len(err) == 1 and f"PID {proc.pid}" in err[0], second.stderr[-2000:]
        time.sleep(2)  # let the training get going
        start = time.time()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        stopped_in = time.time() - start
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143 and stopped_in < 10, (proc.returncode, stopped_in)
    with pytest.raises(ProcessLookupError):  # no child left running in its process group
        os.killpg(proc.pid, 0)
    last = log.read_text().strip().splitlines()[-1]
    assert "interrupted by SIGTERM" in last and "resume with:" in last and "fairseq_eb.recipe.table" in last, last
    assert not (out / harness.LOCK_NAME).exists()
    again = harness.run(harness.pipeline(data, out), log)
    assert again["rc"] == 0, again["lines"][-20:]
    assert harness.scores(out) == reference["scores"]
    assert any(line.startswith("[progress] ") and "left about" in line for line in again["lines"])
    assert not harness.leftovers(data, out)


def test_a_full_disk_at_the_end_leaves_the_earlier_results_intact(work, reference, monkeypatch, capsys):
    """The finished reference re-run with every write failing with ENOSPC: one line naming the path and the free
    space, exit 1, the earlier results.json and table.md unchanged, no temporary file."""
    from fairseq_eb import atomic
    from fairseq_eb.recipe.table import main

    out, data = work / "reference" / "out", work / "reference" / "data"
    before = {name: (out / name).read_bytes() for name in ("results.json", "table.md")}

    def no_space(*_args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic, "_fsync", no_space)
    argv = harness.pipeline(data, out)[2].split("recipe.table ", 1)[1].split()
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and " free" in err[0] and str(out) in err[0], err
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not harness.leftovers(out)
    assert json.loads((out / "results.json").read_text())["methods"] == list(harness.METHODS)
