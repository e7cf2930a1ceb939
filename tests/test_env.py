"""``fairseq-eb-env`` / ``python -m fairseq_eb env``: the bug-report environment report, and the fairseq check."""
import json
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import fairseq
import pytest
import torch

from fairseq_eb import patches
from fairseq_eb.fairseq_check import distribution_of, explain
from tests.fairseq_tools import USER_DIR


def run_env(*args, env=None, cwd=None):
    from os import environ

    return subprocess.run([sys.executable, "-m", "fairseq_eb", "env", *args], capture_output=True, text=True,
                          timeout=300, env={**environ, **(env or {})}, cwd=cwd)


@pytest.fixture(scope="module")
def report():
    proc = run_env("--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_report_names_the_versions_in_use(report):
    assert report["python"]["version"] == platform.python_version()
    assert report["torch"]["version"] == torch.__version__
    assert report["torch"]["cuda_available"] == torch.cuda.is_available()
    dist = distribution_of("fairseq")
    assert dist is not None and report["fairseq"]["distribution"] == f"{dist[0]} {dist[1]}"
    assert report["fairseq"]["version"] == fairseq.__version__
    assert Path(report["fairseq"]["location"]) == Path(fairseq.__file__).parent
    assert report["fairseq-eb"]["user_dir"] == USER_DIR


def test_report_says_which_compiled_extensions_load(report):
    extensions = report["fairseq"]["compiled_extensions"]
    assert set(extensions) >= {"fairseq.data.data_utils_fast", "fairseq.data.token_block_utils_fast"}
    # the batching kernel every fairseq command uses must load (or the report must say why not)
    assert extensions["fairseq.data.data_utils_fast"] == "ok"
    for module, state in extensions.items():
        assert state == "ok" or state.split(":")[0].endswith("Error"), (module, state)


def test_report_lists_every_patch_with_its_state_here(report):
    listed = {p["name"]: p for p in report["patches"]["patches"]}
    assert list(listed) == [p.name for p in patches.REGISTRY]
    for item in listed.values():
        assert item["state"] in ("on when loaded", "not applicable"), item
        assert item["here"] and item["fixes"] and item["test"]
    safe = listed["safe_globals"]["state"]
    assert (safe == "on when loaded") == hasattr(torch.serialization, "add_safe_globals")
    assert listed["resumed_epoch_batches"]["changes_results"]


def test_text_report_and_switched_off_patches():
    proc = run_env(env={patches.ENV_VAR: "-resumed_epoch_batches,-cli_help"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert f"version: {torch.__version__}" in lines and f"user_dir: {USER_DIR}" in lines
    assert f"{patches.ENV_VAR}=-resumed_epoch_batches,-cli_help" in lines
    assert any(line.startswith("resumed_epoch_batches: off (FAIRSEQ_EB_PATCHES)") for line in lines)
    assert any(line.startswith("cli_help: off (FAIRSEQ_EB_PATCHES)") for line in lines)
    assert any(line.startswith("complete_batches: on when loaded") for line in lines)


def test_console_script_and_patch_details():
    script = Path(sys.executable).with_name("fairseq-eb-env")
    assert script.exists(), "fairseq-eb-env is not installed next to this Python (pip install the plugin again)"
    proc = subprocess.run([str(script), "--patches"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resumed_epoch_batches (changes results)" in proc.stdout
    test = "tests/test_compat.py::test_resume_after_the_first_epoch_continues_the_uninterrupted_run"
    assert f"test: {test}" in proc.stdout


def test_bad_patch_selection_and_bad_command_exit_2():
    # torch >= 2.15 deprecates torch.jit.script, which fairseq calls on import: that FutureWarning is torch's and
    # fairseq's, printed by every fairseq command; the plugin's own error is what must be one line
    proc = run_env(env={patches.ENV_VAR: "-complete_batch", "PYTHONWARNINGS": "ignore::FutureWarning"})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        proc.stderr.strip()] and "unknown patch 'complete_batch'" in proc.stderr, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "fairseq_eb", "report"], capture_output=True, text=True)
    assert proc.returncode == 2 and "the only command is 'env'" in proc.stderr


BROKEN_FAIRSEQ = """
from dataclasses import dataclass


@dataclass
class CommonConfig:
    seed: int = 1


@dataclass
class FairseqConfig:  # what fairseq 0.12.2's configs do, refused by Python >= 3.11
    common: CommonConfig = CommonConfig()
"""


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Python < 3.11 accepts the mutable dataclass default")
def test_a_fairseq_that_does_not_import_is_explained_in_one_line(tmp_path):
    (tmp_path / "fairseq").mkdir()
    (tmp_path / "fairseq" / "__init__.py").write_text(textwrap.dedent(BROKEN_FAIRSEQ))
    env = {"PYTHONPATH": f"{tmp_path}:{Path(__file__).parents[1]}"}
    proc = subprocess.run([sys.executable, "-m", "fairseq_eb.fairseq_check"], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "does not import on Python 3." in proc.stderr and "install ve-fairseq==0.12.3" in proc.stderr
    report = run_env(env=env, cwd=tmp_path)  # the report still prints, with the reason instead of the details
    fairseq_section = report.stdout.split("[fairseq]")[1].split("[fairseq-eb]")[0]
    assert report.returncode == 0 and "does not import on Python 3." in fairseq_section, report.stdout


def test_explain_other_failures_names_the_error():
    line = explain(ImportError("libc10.so: cannot open shared object file"), ("fairseq-fixed", "0.12.3.1"))
    assert line.startswith("fairseq-fixed 0.12.3.1 is installed but does not import (ImportError: libc10.so")
    assert "\n" not in line
