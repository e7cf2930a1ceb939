"""The helpers import neither torch nor fairseq; only the --user-dir entry (or register()) sets up fairseq."""
import subprocess
import sys

import pytest

from tests.fairseq_tools import USER_DIR, run_fairseq

HELPERS = [
    "fairseq_eb", "fairseq_eb.user_dir", "fairseq_eb.choices", "fairseq_eb.scoring", "fairseq_eb.scoring.cli",
    "fairseq_eb.prep", "fairseq_eb.prep.binarize", "fairseq_eb.prep.debian", "fairseq_eb.prep.tsv",
    "fairseq_eb.recipe", "fairseq_eb.recipe.table", "fairseq_eb.recipe.floor", "fairseq_eb.recipe.plot",
    "fairseq_eb.recipe.aggregate", "fairseq_eb.recipe.sweep", "fairseq_eb.recipe.selection",
    "fairseq_eb.recipe.pretrain", "fairseq_eb.recipe.run_steps", "fairseq_eb.prep.finetune", "fairseq_eb.diagnose",
]


def _loaded_after(code: str) -> set:
    probe = code + "\nimport sys\nprint(' '.join(sorted(m for m in ('torch', 'fairseq') if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("module", HELPERS)
def test_helper_import_leaves_torch_and_fairseq_out(module):
    assert _loaded_after(f"import {module}") == set()


def test_the_probe_sees_torch_when_it_is_imported():  # the test above can fail
    assert _loaded_after("import fairseq_eb; fairseq_eb.register()") == {"torch", "fairseq"}


def test_import_after_fairseq_registers_and_register_is_explicit_otherwise():
    code = ("import fairseq_eb, fairseq.tasks as t\nbefore = 'translation_with_replacement' in t.TASK_REGISTRY\n"
            "fairseq_eb.register(); fairseq_eb.register()\n"
            "from fairseq.data import data_utils\n"
            "print(before, 'translation_with_replacement' in t.TASK_REGISTRY, "
            "getattr(data_utils.batch_by_size, '_fairseq_eb_complete', False))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True", "True"]
    code = ("import fairseq, fairseq_eb, fairseq.criterions as c\n"
            "print('label_smoothed_cross_entropy_with_gp' in c.CRITERION_REGISTRY)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True"]


def test_user_dir_command_prints_the_package_dir_and_help():
    out = subprocess.run([sys.executable, "-m", "fairseq_eb.user_dir"], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == USER_DIR
    help_text = subprocess.run([sys.executable, "-m", "fairseq_eb.user_dir", "--help"], capture_output=True, text=True,
                               check=True).stdout
    assert "usage: fairseq-eb-user-dir" in help_text and "--user-dir" in help_text


@pytest.mark.slow
@pytest.mark.parametrize("bad,option", [
    (["--task", "translation_with_replacement", "--replace-token-prob", "1.5"], "--replace-token-prob"),
    (["--task", "translation_with_replacement", "--replace-sample-prob", "-0.1"], "--replace-sample-prob"),
    (["--criterion", "label_smoothed_cross_entropy_with_gp", "--gp-epsilon", "-1"], "--gp-epsilon"),
    # the exact penalty overflows float16 (bench/RESULTS.md §7): refused before training, --amp suggested
    (["--criterion", "label_smoothed_cross_entropy_with_gp", "--fp16"], "--gp-method exact"),
])
def test_out_of_range_plugin_option_fails_like_argparse(toy_bin, tmp_path, bad, option):
    proc = run_fairseq("train", [toy_bin, "--user-dir", USER_DIR, "--arch", "transformer", "--cpu", "--max-update",
                                 "1", "--save-dir", tmp_path, *bad], check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "| INFO |" not in line]
    assert len(lines) == 1, proc.stderr
    assert "error: " + option in lines[0] and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())  # failed before any training work


def test_importing_a_component_first_still_sets_up_the_plugin():
    """A component imported before fairseq (fairseq's --user-dir import then does nothing) registers everything."""
    code = ("import fairseq_eb.tasks.translation_with_replacement, argparse, torch\n"
            "import fairseq.criterions as c\nfrom fairseq.data import data_utils\n"
            "print('label_smoothed_cross_entropy_with_gp' in c.CRITERION_REGISTRY, "
            "getattr(data_utils.batch_by_size, '_fairseq_eb_complete', False), "
            "argparse.Namespace in torch.serialization.get_safe_globals())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "True"]
