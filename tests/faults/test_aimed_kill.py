"""The harness's aimed kills fire inside the phase they aim at, and only there (no fairseq: a scripted process)."""
from __future__ import annotations

import random
import sys
from pathlib import Path

from tests.faults.harness import AIMS, Aim, AimedKill, run

# a stand-in pipeline: a phase line, then a long step, then a later line that must never be reached
SCRIPT = ("import sys, time\n"
          "print('[recipe] 1 runs', flush=True); time.sleep(0.3)\n"
          "print('[x beam1] fairseq-generate -> out/generate-beam1.txt', flush=True); time.sleep(3)\n"
          "print('after the phase', flush=True)\n")


def _run(tmp_path: Path, aim: Aim, seed: int = 0):
    log = tmp_path / "log.txt"
    when = AimedKill(aim, random.Random(seed), wall_s=4.0, log=log)
    return run([sys.executable, "-c", SCRIPT], log, kill_when=when), when


def test_kill_fires_after_the_phase_line_within_its_delay(tmp_path):
    result, when = _run(tmp_path, Aim(r"fairseq-generate -> ", (0.2, 0.4), arm=0.0))
    assert result["killed"]
    assert any("fairseq-generate ->" in line for line in result["lines"])
    assert not any("after the phase" in line for line in result["lines"])
    assert 0.2 <= when.delay <= 0.4 and result["wall_s"] < 2.5


def test_no_kill_without_the_phase_line(tmp_path):
    result, when = _run(tmp_path, Aim(r"fairseq-eb-diagnose -> ", (0.0, 0.1), arm=0.0))
    assert not result["killed"] and result["rc"] == 0 and when.fire_at is None
    assert any("after the phase" in line for line in result["lines"])


def test_lines_before_arming_do_not_trigger(tmp_path):
    """Armed after the phase line was printed, the kill waits for a later occurrence (none here)."""
    aim = Aim(r"fairseq-generate -> ", (0.0, 0.1), arm=1.0)
    log = tmp_path / "log.txt"
    when = AimedKill(aim, random.Random(0), wall_s=4.0, log=log)
    when.arm_at = 1.0  # after the line (printed at ~0.3 s), before the end (~3.3 s)
    result = run([sys.executable, "-c", SCRIPT], log, kill_when=when)
    assert not result["killed"] and result["rc"] == 0


def test_the_issue_phases_can_be_aimed_at():
    assert set(AIMS) >= {"preparation", "training", "checkpoint saving", "generation", "scoring", "writing results"}


def test_a_kill_between_save_announcement_and_saved_is_checkpoint_saving(tmp_path):
    from tests.faults.harness import phase_of

    log = tmp_path / "out" / "runs" / "gp" / "default" / "seed1" / "train.log"
    log.parent.mkdir(parents=True)
    (tmp_path / "data" / "bin").mkdir(parents=True)
    lines = ["[gp seed1] training -> x"]
    log.write_text("| Preparing to save checkpoint for epoch 1 @ 4 updates\n")
    assert phase_of(lines, tmp_path / "out", tmp_path / "data") == "checkpoint saving"
    log.write_text(log.read_text() + "| Saved checkpoint checkpoint_1_4.pt (epoch 1 @ 4 updates)\n")
    assert phase_of(lines, tmp_path / "out", tmp_path / "data") == "training"


def test_a_kill_after_the_last_diagnosis_is_writing_results(tmp_path):
    from tests.faults.harness import phase_of

    run_dir = tmp_path / "out" / "runs" / "gp" / "default" / "seed1"
    run_dir.mkdir(parents=True)
    (tmp_path / "data" / "bin").mkdir(parents=True)
    lines = ["[progress] 13/13 steps done (…)", "[gp seed1] fairseq-eb-diagnose -> x"]
    assert phase_of(lines, tmp_path / "out", tmp_path / "data") == "diagnosis"  # diagnose.json not written yet
    (run_dir / "diagnose.json").write_text("{}")
    assert phase_of(lines, tmp_path / "out", tmp_path / "data") == "writing results"
