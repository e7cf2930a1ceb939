"""fairseq_eb.crash_points: inert by default, and kills its process group exactly at the named point."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fairseq_eb import crash_points

ROOT = str(Path(__file__).resolve().parents[1])


@pytest.fixture(autouse=True)
def fresh_counts(monkeypatch):
    monkeypatch.setattr(crash_points, "_seen", {})


def test_inert_without_the_variable(monkeypatch):
    monkeypatch.delenv(crash_points.ENV, raising=False)
    assert not crash_points.due("rename", "score-beam1.json")


def test_fires_on_the_nth_matching_file_only(monkeypatch):
    monkeypatch.setenv(crash_points.ENV, "rename:score-*.json:2")
    assert not crash_points.due("rename", "/x/results.json")  # not matching: not counted
    assert not crash_points.due("checkpoint-copy", "/x/score-a.json")  # another point
    assert not crash_points.due("rename", "/x/score-a.json")  # the first match
    assert crash_points.due("rename", "/x/score-b.json")  # the second
    assert not crash_points.due("rename", "/x/score-c.json")


@pytest.mark.parametrize("bad", ["rename", "explode:*.json", "rename:*.json:two", "rename:a:1:2"])
def test_a_bad_value_is_one_line_naming_the_variable(monkeypatch, bad):
    monkeypatch.setenv(crash_points.ENV, bad)
    with pytest.raises(SystemExit, match="FAIRSEQ_EB_CRASH_AT.*POINT:GLOB"):
        crash_points.due("rename", "x")


def _run(code: str, tmp_path, crash_at: str) -> subprocess.CompletedProcess:
    env = {"FAIRSEQ_EB_CRASH_AT": crash_at, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env,
                          start_new_session=True, capture_output=True, text=True, timeout=300)


def test_rename_point_kills_with_the_temporary_file_complete_and_the_target_absent(tmp_path):
    proc = _run(f"""
        import sys; sys.path.insert(0, {ROOT!r})
        from fairseq_eb import atomic
        atomic.write_text("a.json", "first")
        atomic.write_text("score-beam1.json", "second")
        print("not reached")
    """, tmp_path, "rename:score-*.json")
    assert proc.returncode == -signal.SIGKILL and "not reached" not in proc.stdout
    assert (tmp_path / "a.json").read_text() == "first"
    assert not (tmp_path / "score-beam1.json").exists()
    assert [p.name for p in tmp_path.glob("score-beam1.json*")] != []  # its temporary file, left for the re-run


def test_checkpoint_copy_point_leaves_a_truncated_copy(tmp_path):
    (tmp_path / "checkpoint_1_2.pt").write_bytes(bytes(range(256)) * 40)
    proc = _run(f"""
        import sys; sys.path.insert(0, {ROOT!r})
        from fairseq_eb import crash_points
        crash_points.install_checkpoint_copy()
        from fairseq.file_io import PathManager
        PathManager.copy("checkpoint_1_2.pt", "checkpoint_best.pt", overwrite=True)
        PathManager.copy("checkpoint_1_2.pt", "checkpoint_last.pt", overwrite=True)
        print("not reached")
    """, tmp_path, "checkpoint-copy:checkpoint_last.pt")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (tmp_path / "checkpoint_best.pt").stat().st_size == 10240  # copied whole before the point
    assert (tmp_path / "checkpoint_last.pt").stat().st_size == 5120  # half: a kill during fairseq's copy
