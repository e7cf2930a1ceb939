"""The patch registry: every entry documented, switchable with FAIRSEQ_EB_PATCHES, and switching one off really
brings fairseq's own behaviour back (run through real fairseq commands)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fairseq_eb import compat, patches
from tests.fairseq_tools import TINY_MODEL, TRAIN_COMMON, USER_DIR, run_fairseq

ROOT = Path(__file__).parents[1]


def test_every_patch_says_what_it_fixes_who_needs_it_and_names_an_existing_test():
    assert len({p.name for p in patches.REGISTRY}) == len(patches.REGISTRY)
    for p in patches.REGISTRY:
        assert p.fixes and p.needed_by and p.stage in patches.STAGES, p.name
        path, name = p.test.split("::")
        assert re.search(rf"^def {name}\(", (ROOT / path).read_text(), flags=re.M), p.test
    assert [p.name for p in patches.REGISTRY if p.changes_results] == ["resumed_epoch_batches"]


@pytest.mark.parametrize("value,off", [
    ("", set()),
    ("-resumed_epoch_batches", {"resumed_epoch_batches"}),
    (" -safe_globals , +safe_globals,-cli_help", {"cli_help"}),
    ("-all,+complete_batches", {p.name for p in patches.REGISTRY} - {"complete_batches"}),
])
def test_selection(value, off):
    chosen = patches.selection(value)
    assert {n for n, on in chosen.items() if not on} == off


@pytest.mark.parametrize("value", ["-nope", "complete-batches", "-all,+"])
def test_unknown_names_are_refused(value):
    with pytest.raises(patches.PatchSelectionError, match=r"FAIRSEQ_EB_PATCHES=.*unknown patch .* one of: all, "):
        patches.selection(value)


PROBE = """
import fairseq.tasks, fairseq.checkpoint_utils as cu, fairseq.options as opts
from fairseq.data import data_utils
import fairseq_eb
fairseq_eb.register()
print(getattr(data_utils.batch_by_size, '_fairseq_eb_complete', False),
      getattr(fairseq.tasks.FairseqTask.get_batch_iterator, '_fairseq_eb_first_epoch', False),
      getattr(cu.load_checkpoint_to_cpu, '_fairseq_eb_one_line', False),
      getattr(opts.parse_args_and_arch, '_fairseq_eb_validate', False))
"""


@pytest.mark.parametrize("value,expected", [
    ("", "True True True True"),
    ("-complete_batches,-cli_validation", "False True True False"),
    ("-all,+resumed_epoch_batches", "False True False False"),
])
def test_switched_off_patches_leave_fairseq_alone(value, expected):
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, patches.ENV_VAR: value})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == expected.split()


@pytest.mark.slow
def test_a_bad_selection_stops_fairseq_in_one_line(toy_bin, tmp_path):
    proc = run_fairseq("train", [toy_bin, "--user-dir", USER_DIR, *TINY_MODEL, *TRAIN_COMMON, "--max-update", "1",
                                 "--save-dir", tmp_path], check=False, env={patches.ENV_VAR: "-weights_only"})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "fairseq-eb: error: FAIRSEQ_EB_PATCHES=-weights_only: unknown patch 'weights_only'"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_complete_batches_switch_decides_how_many_test_sentences_fairseq_generate_decodes(toy_bin, tmp_path):
    """fairseq-generate's default --required-batch-size-multiple is 8: of 20 test sentences, a batch_by_size that drops
    the short last batch decodes 16. With the patch every build decodes 20; without it, what the build does."""
    run_fairseq("train", [toy_bin, "--user-dir", USER_DIR, "--task", "translation", *TINY_MODEL, *TRAIN_COMMON,
                          "--max-update", "2", "--save-dir", tmp_path, "--disable-validation"])

    def decoded(value):
        gen = run_fairseq("generate", [toy_bin, "--user-dir", USER_DIR, "--path", tmp_path / "checkpoint_last.pt",
                                       "--beam", "1", "--cpu", "--max-tokens", "500", "--gen-subset", "test"],
                          env={patches.ENV_VAR: value})
        return len(re.findall(r"^H-\d+\t", gen.stdout, flags=re.M))

    drops = compat.batch_by_size_drops_tail()
    assert decoded("") == 20
    assert decoded("-complete_batches") == (16 if drops else 20)


def test_where_a_patch_applies_follows_the_installed_versions(monkeypatch):
    import numpy as np

    safe = patches.BY_NAME["safe_globals"]
    assert safe.here()[0] == hasattr(torch.serialization, "add_safe_globals")
    monkeypatch.setattr(torch, "__version__", "2.5.1+cu124")
    monkeypatch.setattr(torch.serialization, "add_safe_globals", lambda types: None, raising=False)
    applies, why = safe.here()
    assert applies and "weights_only=False by default" in why
    monkeypatch.delattr(torch.serialization, "add_safe_globals")
    applies, why = safe.here()
    assert not applies and "added in 2.4" in why
    monkeypatch.setattr(np, "compat", object(), raising=False)
    assert patches.BY_NAME["numpy_compat"].here()[0] is False
