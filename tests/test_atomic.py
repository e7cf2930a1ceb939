"""Atomic writes and one-line disk errors (fairseq_eb.atomic), the run lock (fairseq_eb.runlock), and the recipe's
checks of damaged inputs and its progress line; the kill trials are in tests/faults/."""
import errno
import json
import os
import socket
import subprocess
import sys

import pytest

from fairseq_eb import atomic
from fairseq_eb.recipe.checkpoints import DamagedCheckpoint, check_resumable
from fairseq_eb.recipe.data_files import DamagedData, check_binarized
from fairseq_eb.recipe.progress import Progress
from fairseq_eb.recipe.selection import NonFiniteValidation, select
from fairseq_eb.runlock import LOCK_NAME, RunLock, RunLocked

# ---------------------------------------------------------------- atomic writes

def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "results.json"
    atomic.write_json(path, {"a": 1})
    atomic.write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2} and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_failed_write_keeps_the_earlier_file(tmp_path):
    path = tmp_path / "table.md"
    path.write_text("earlier\n")
    with pytest.raises(RuntimeError):
        with atomic.writing(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "earlier\n" and not atomic.tmp_path(path).exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_full_or_read_only_disk_is_one_line_naming_the_path_and_the_free_space(tmp_path, monkeypatch, code):
    """Injected where a full disk reports it (fsync, with delayed allocation); the earlier file is intact."""
    path = tmp_path / "score-beam1.json"
    path.write_text('{"rouge-l": 1}\n')

    def fail(*_args):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(atomic, "_fsync", fail)
    with pytest.raises(atomic.DiskWriteError) as info:
        atomic.write_json(path, {"rouge-l": 2})
    message = str(info.value)
    assert "\n" not in message and str(path) in message and " free" in message and os.strerror(code) in message
    assert message.startswith(f"cannot write {path}: ")
    assert path.read_text() == '{"rouge-l": 1}\n' and not atomic.tmp_path(path).exists()


def test_leftover_temporaries_are_removed(tmp_path):
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "generate-beam1.txt.tmp").write_text("half")
    (tmp_path / "bin.tmp").mkdir()
    (tmp_path / "keep.txt").write_text("x")
    assert atomic.remove_leftovers(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "keep.txt", "runs"]


def test_a_preparer_on_a_full_disk_says_one_line_and_exits_1(tmp_path, capsys):
    from fairseq_eb.prep.common import run_main

    def body():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "raw" / "train.src"))

    with pytest.raises(SystemExit) as info:
        run_main(body, lock=(tmp_path, "--out"))
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 1 and len(err) == 1 and "train.src" in err[0] and "free" in err[0]
    assert not (tmp_path / LOCK_NAME).exists()


# ---------------------------------------------------------------- the run lock

def _live_other_process():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def _write_lock(directory, pid, host=None):
    (directory / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                                   "started": "then", "command": "python -m other"}))


def test_a_second_run_on_a_locked_directory_refuses_naming_the_process(tmp_path):
    other = _live_other_process()
    try:
        _write_lock(tmp_path, other.pid)
        with pytest.raises(RunLocked) as info:
            RunLock(tmp_path).acquire()
        assert f"PID {other.pid}" in str(info.value) and "\n" not in str(info.value)
    finally:
        other.kill()
        other.wait()


def test_a_lock_of_a_dead_run_is_taken_over_with_a_message(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lock(tmp_path, dead.pid)
    said = []
    with RunLock(tmp_path, say=said.append):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert len(said) == 1 and "taking over" in said[0] and f"PID {dead.pid}" in said[0]
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_lock_of_another_host_is_not_taken_over(tmp_path):
    _write_lock(tmp_path, 1, host="elsewhere.invalid")
    with pytest.raises(RunLocked, match="elsewhere.invalid"):
        RunLock(tmp_path).acquire()


def test_a_refused_run_leaves_no_directory_it_made(tmp_path):
    with RunLock(tmp_path / "new" / "out"):
        assert (tmp_path / "new" / "out" / LOCK_NAME).exists()
    assert not (tmp_path / "new").exists()


def test_the_recipe_preparers_and_diagnose_refuse_a_locked_directory(toy_bin, tmp_path, capsys):
    from fairseq_eb.diagnose.cli import main as diagnose_main
    from fairseq_eb.prep.binarize import main as binarize_main
    from fairseq_eb.recipe.table import main as table_main

    other = _live_other_process()
    try:
        out = tmp_path / "out"
        out.mkdir()
        _write_lock(out, other.pid)
        assert table_main(["--data", str(toy_bin.parent), "--out", str(out), "--config", "tiny", "--methods",
                           "baseline", "--seeds", "1", "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"PID {other.pid}" in err[0] and "--out" in err[0]
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written

        data = tmp_path / "data"
        (data / "raw").mkdir(parents=True)
        _write_lock(data, other.pid)
        with pytest.raises(SystemExit) as info:
            binarize_main(["--data", str(data), "--vocab-size", "40"])
        err = capsys.readouterr().err.strip().splitlines()
        assert info.value.code == 2 and len(err) == 1 and f"PID {other.pid}" in err[0]

        with pytest.raises(SystemExit) as info:
            diagnose_main([str(toy_bin), "--path", str(tmp_path / "none.pt"), "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert info.value.code == 2 and f"PID {other.pid}" in err[-1]
    finally:
        other.kill()
        other.wait()


# ---------------------------------------------------------------- damaged inputs

def _fake_checkpoint(path, updates):
    import torch

    torch.save({"optimizer_history": [{"num_updates": updates}], "model": {}}, path)


def test_a_truncated_checkpoint_last_resumes_from_the_newest_that_loads(tmp_path, capsys):
    ck = tmp_path / "checkpoints"
    ck.mkdir()
    _fake_checkpoint(ck / "checkpoint_1_4.pt", 4)
    _fake_checkpoint(ck / "checkpoint_1_8.pt", 8)
    _fake_checkpoint(ck / "checkpoint_last.pt", 12)
    data = (ck / "checkpoint_last.pt").read_bytes()
    (ck / "checkpoint_last.pt").write_bytes(data[: len(data) // 2])
    assert check_resumable(ck, "baseline seed1") == ck / "checkpoint_1_8.pt"
    assert (ck / "checkpoint_last.pt").read_bytes() == (ck / "checkpoint_1_8.pt").read_bytes()
    out = capsys.readouterr().out
    assert "truncated or not a torch checkpoint" in out and "resuming from checkpoint_1_8.pt (update 8)" in out
    assert check_resumable(ck, "baseline seed1") is None  # loads now


def test_no_loadable_checkpoint_is_one_line_error(tmp_path):
    ck = tmp_path / "checkpoints"
    ck.mkdir()
    (ck / "checkpoint_last.pt").write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(DamagedCheckpoint) as info:
        check_resumable(ck, "gp seed1")
    assert "\n" not in str(info.value) and "checkpoint_last.pt" in str(info.value) and "delete" in str(info.value)


@pytest.mark.parametrize("name,cut", [("train.src-tgt.src.bin", 7), ("valid.src-tgt.tgt.idx", 5)])
def test_a_truncated_bin_or_idx_is_one_line_naming_it_before_training(toy_bin, tmp_path, capsys, name, cut):
    import shutil

    from fairseq_eb.recipe.table import main as table_main

    data = tmp_path / "data"
    shutil.copytree(toy_bin, data / "bin")
    check_binarized(data / "bin")  # intact: no error
    target = data / "bin" / name
    target.write_bytes(target.read_bytes()[:-cut])
    with pytest.raises(DamagedData, match=name.replace(".", r"\.")):
        check_binarized(data / "bin")
    assert table_main(["--data", str(data), "--out", str(tmp_path / "out"), "--config", "tiny", "--device",
                       "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(target) in err[0] and "truncated" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_non_finite_validation_is_never_selected(tmp_path):
    ck = tmp_path / "checkpoints"
    ck.mkdir()
    log = tmp_path / "train.log"
    log.write_text("| valid on 'valid' subset | loss nan | nll_loss nan | bleu 0 | num_updates 4\n"
                   "| valid on 'valid' subset | loss 3.1 | nll_loss 2.5 | bleu 1.2 | num_updates 8\n")
    with pytest.raises(NonFiniteValidation) as info:
        select(ck, log)
    assert "update 4" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "selection.json").exists()


# ---------------------------------------------------------------- progress

def test_progress_line_counts_steps_and_estimates_the_time_left():
    lines = []
    progress = Progress({"trainings": 2, "decodings": 4, "scorings": 4}, lines.append)
    progress.skipped("trainings")
    assert progress.left_s() is None
    progress.done("decodings", "decoding baseline seed1 beam1", 10.0)
    assert progress.left_s() == pytest.approx(10.0 * 8)  # 8 steps left at the one mean
    assert len(lines) == 1 and "[progress] 2/10 steps done (trainings 1/2, decodings 1/4, scorings 0/4)" in lines[0]
    assert "left about 1m20s" in lines[0] and "finished: decoding baseline seed1 beam1" in lines[0]
    assert progress.summary() == "2 of 10 steps done (trainings 1/2, decodings 1/4, scorings 0/4)"


# ---------------------------------------------------------------- a real full disk (a small tmpfs, where allowed)

@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs (root and a kernel that allows it); skipped elsewhere, where the injected ENOSPC above
    stands in for it."""
    mount = tmp_path / "full"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()[:100]}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_preparer_filling_a_real_disk_fails_in_one_line_and_keeps_earlier_files(small_tmpfs, tmp_path, capsys):
    from fairseq_eb.prep.tsv import main as tsv_main

    rows = "".join(f"title {i}\t{'content words ' * 12}{i}\n" for i in range(600))  # ~110 KB of raw text
    (tmp_path / "train.tsv").write_text(rows)
    (tmp_path / "test.tsv").write_text(rows[:2000])
    out = small_tmpfs / "data"
    earlier = small_tmpfs / "earlier.json"
    atomic.write_json(earlier, {"kept": True})
    with pytest.raises(SystemExit) as info:
        tsv_main(["--train", str(tmp_path / "train.tsv"), "--test", str(tmp_path / "test.tsv"), "--format",
                  "reference", "--valid-from-train", "10", "--out", str(out)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert info.value.code == 1 and len(err) == 1, err
    assert "No space left on device" in err[0] and str(out) in err[0] and " free" in err[0], err[0]
    assert json.loads(earlier.read_text()) == {"kept": True}
    assert not [p for p in small_tmpfs.rglob("*") if p.name.endswith(".tmp") or p.name == LOCK_NAME]
    assert not (out / "manifest.json").exists()  # nothing recorded as complete


def test_a_training_stopped_on_nan_gradients_is_one_line_naming_the_options(tmp_path):
    from types import SimpleNamespace

    from fairseq_eb.recipe.run_steps import _diverged

    spec = SimpleNamespace(run_dir=tmp_path, tag="gp seed1")
    assert _diverged(spec) is None
    (tmp_path / "train.log").write_text("...\nFloatingPointError: gradients are Nan/Inf\n")
    message = _diverged(spec)
    assert "\n" not in message and "--gp-epsilon" in message and str(tmp_path / "train.log") in message


def test_a_training_that_ran_to_its_end_is_not_resumed():
    """Killed after fairseq-train finished but before train.done: fairseq would add one update past --max-update."""
    from fairseq_eb.recipe.run_steps import finished_in_log

    start = "2026-12-07 19:29:14 | INFO | fairseq_cli.train | {'_name': None}\n"
    end = "2026-12-07 19:29:16 | INFO | fairseq_cli.train | done training in 0.5 seconds\n"
    assert finished_in_log(start + "epoch 001: 8 / 8\n" + end)
    assert not finished_in_log(start + "epoch 001: 4 / 8\n")  # killed mid-training: resume
    assert not finished_in_log(start + end + start + "epoch 001: 2 / 8\n")  # the last invocation decides
    assert not finished_in_log("")
