"""Every change the plugin makes to fairseq's and torch's behaviour, as one registry you can list and switch.

Why a registry: loading the plugin (``--user-dir``, ``fairseq_eb.register()``) changes fairseq process-wide, and a
user debugging a run must be able to see what changed (``fairseq-eb-env`` lists each patch and whether it is active)
and to switch any of it off to tell the plugin's behaviour from fairseq's. Each entry says what it fixes, which
builds need it and which test fails without it. The implementations live in :mod:`fairseq_eb.compat` and
:mod:`fairseq_eb.cli_validation`; this module only decides which of them run.

Switching: ``FAIRSEQ_EB_PATCHES=-name1,-name2`` switches patches off, ``+name`` on, ``-all`` / ``+all`` every one;
items apply left to right over the defaults (all on). Unknown names are refused (one line, exit 2 at ``--user-dir``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

ENV_VAR = "FAIRSEQ_EB_PATCHES"
STAGES = ("load", "cli")


@dataclass(frozen=True)
class Patch:
    """One change to fairseq/torch behaviour; ``here()`` says (applicable, why) for this process's builds."""

    name: str
    fixes: str
    needed_by: str
    test: str
    install: Callable[[], None]
    here: Callable[[], Tuple[bool, str]]
    stage: str = "load"  # "cli": installed after the plugin's components are registered
    changes_results: bool = False


def _torch_version() -> Tuple[int, int]:
    import torch

    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return int(major), int(minor)


def _safe_globals_here() -> Tuple[bool, str]:
    import torch

    if getattr(torch.serialization, "add_safe_globals", None) is None:
        return False, f"torch {torch.__version__} has no safe-globals list (added in 2.4) and loads unsafely by default"
    if _fairseq_loads_unsafely():
        return True, ("this fairseq passes weights_only=False itself (upstream main since 2025-09-30): checkpoints "
                      "load unsafely and the list is unused")
    if _torch_version() >= (2, 6):
        return True, f"torch {torch.__version__} loads with weights_only=True by default"
    return True, (f"torch {torch.__version__} loads with weights_only=False by default; the list serves "
                  "explicit weights_only=True loads")


def _fairseq_loads_unsafely() -> bool:
    """Whether fairseq's checkpoint loader passes ``weights_only=False`` (upstream 3d262bb2, "Pt2.6 compatibility")."""
    import inspect

    try:
        from fairseq import checkpoint_utils

        loader = inspect.unwrap(checkpoint_utils.load_checkpoint_to_cpu)
        return "weights_only=False" in inspect.getsource(loader)
    except Exception:  # no source (a frozen build) or no fairseq: assume torch's default
        return False


def _install_safe_globals() -> None:
    import torch

    from fairseq_eb import compat

    torch.serialization.add_safe_globals(compat.checkpoint_safe_globals())


def _complete_batches_here() -> Tuple[bool, str]:
    from fairseq_eb import compat

    dropped = compat.batch_by_size_drops_tail()
    if dropped is None:
        return True, "this fairseq's batch_by_size could not be probed; the wrapper is harmless"
    if dropped:
        return True, "this fairseq's batch_by_size drops the last batch short of the multiple (probed)"
    return True, "this fairseq's batch_by_size keeps the tail (probed): the wrapper changes nothing here"


def _install_complete_batches() -> None:
    from fairseq_eb import compat

    compat.wrap_once("fairseq.data.data_utils", "", "batch_by_size", compat.tail_completing, "_fairseq_eb_complete")


def _install_first_epoch_batches() -> None:
    from fairseq_eb import compat

    compat.wrap_once("fairseq.tasks", "FairseqTask", "get_batch_iterator", compat.first_epoch_batches,
                     "_fairseq_eb_first_epoch")


def _install_checkpoint_errors() -> None:
    from fairseq_eb import compat

    compat.wrap_once("fairseq.checkpoint_utils", "", "load_checkpoint_to_cpu", compat.one_line_checkpoint_errors,
                     "_fairseq_eb_one_line")
    compat.exit_2_on_checkpoint_errors()


def _numpy_compat_here() -> Tuple[bool, str]:
    import numpy as np

    if hasattr(np, "compat"):
        return False, f"numpy {np.__version__} still has numpy.compat"
    return True, f"numpy {np.__version__} has no numpy.compat"


def _install_numpy_compat() -> None:
    from fairseq_eb import compat

    compat.numpy_compat_namespace()


def _install_gloo_exit() -> None:
    from fairseq_eb import compat

    compat.destroy_gloo_group_at_exit()


def _install_prefetch_exit() -> None:
    import atexit

    from fairseq_eb import compat

    atexit.register(compat.stop_prefetch_threads)


def _install_cli_help() -> None:
    from fairseq_eb import compat

    compat.complete_cli_help()


def _install_cli_validation() -> None:
    from fairseq_eb import cli_validation

    cli_validation.install()


def _always(why: str) -> Callable[[], Tuple[bool, str]]:
    return lambda: (True, why)


REGISTRY: List[Patch] = [
    Patch("safe_globals",
          "torch >= 2.6 refuses fairseq checkpoints (argparse.Namespace, omegaconf containers, numpy meters) under "
          "its weights_only default; exactly those types are allow-listed, safe loading stays on",
          "torch >= 2.6 with any fairseq 0.12 (upstream's 2025 fix instead passes weights_only=False); "
          "harmless on 2.4-2.5, skipped before 2.4",
          "tests/test_compat.py::test_namespace_and_omegaconf_load_with_weights_only",
          _install_safe_globals, _safe_globals_here),
    Patch("complete_batches",
          "fairseq's batch_by_size drops the last batch when its size is not a multiple of "
          "--required-batch-size-multiple: fairseq-generate silently skipped the longest test sentences (16 of 20 "
          "in the test) and training skipped them every epoch",
          "every build of fairseq's main since 2022-12-12 (d871f616, data2vec 2.0): ve-fairseq 0.12.3, "
          "fairseq-fixed 0.12.3.1, a checkout of main; not the 0.12.2 release",
          "tests/test_task_e2e.py::test_generate_and_interactive_on_checkpoint",
          _install_complete_batches, _complete_batches_here),
    Patch("resumed_epoch_batches",
          "a run resumed after epoch 1 trained on differently composed batches than the uninterrupted run (fairseq "
          "seeds the batch composition with the epoch the iterator is built in); a resumed run now gets epoch 1's",
          "every fairseq 0.12 build (upstream behaviour)",
          "tests/test_compat.py::test_resume_after_the_first_epoch_continues_the_uninterrupted_run",
          _install_first_epoch_batches, _always("fairseq 0.12 builds a resumed run's batches with its epoch"),
          changes_results=True),
    Patch("checkpoint_errors",
          "an unloadable checkpoint (truncated, not a checkpoint, refused by safe loading) ended in a torch "
          "traceback advising weights_only=False; now one line naming the file, exit 2",
          "every fairseq 0.12 build; the refusal case needs torch >= 2.6",
          "tests/test_bad_inputs_fairseq.py::test_train_resuming_from_a_truncated_checkpoint_last",
          _install_checkpoint_errors, _always("fairseq 0.12 lets torch.load's errors through")),
    Patch("numpy_compat",
          "numpy >= 2 removed numpy.compat, which fairseq's TokenBlockDataset (denoising, language modelling) uses",
          "numpy >= 2 with any fairseq 0.12",
          "tests/test_init_from.py::test_a_denoising_pretraining_of_prep_finetune_data_is_accepted",
          _install_numpy_compat, _numpy_compat_here),
    Patch("gloo_exit",
          "a gloo rank that reaches interpreter shutdown with its process group alive can abort (SIGABRT) after a "
          "successful training; the group is destroyed at a normal exit",
          "torch >= 2 with fairseq 0.12 on CPU data-parallel (gloo); NCCL is left alone",
          "tests/test_compat.py::test_gloo_group_destroyed_at_normal_exit_only",
          _install_gloo_exit, _always("fairseq 0.12 never destroys its process group")),
    Patch("prefetch_exit",
          "fairseq's batch-prefetching thread still collating at interpreter shutdown aborted the process "
          "(SIGABRT) after a successful training; it is stopped at exit",
          "every fairseq 0.12 build (BackgroundConsumer)",
          "tests/test_compat.py::test_training_that_stops_while_batches_are_prefetched_exits_cleanly",
          _install_prefetch_exit, _always("fairseq 0.12 leaves its prefetch thread running at exit")),
    Patch("cli_help",
          "fairseq-train --task T --criterion C --help omitted T's and C's options (fairseq exits on --help before "
          "adding them)",
          "every fairseq 0.12 build",
          "tests/test_task_e2e.py::test_options_in_help",
          _install_cli_help, _always("fairseq 0.12 parses --help before adding component options"), stage="cli"),
    Patch("cli_validation",
          "out-of-range plugin options (and a missing --restore-file) failed deep inside fairseq with a traceback; "
          "now one argparse-style line at parse time, exit 2",
          "every fairseq 0.12 build (fairseq-hydra-train keeps the setup-time checks)",
          "tests/test_inert_imports.py::test_out_of_range_plugin_option_fails_like_argparse",
          _install_cli_validation, _always("the plugin's options are checked when fairseq parses them"),
          stage="cli"),
]
BY_NAME: Dict[str, Patch] = {p.name: p for p in REGISTRY}

# name -> (applicable, why) as decided when apply() met the patch; installed where applicable. Kept because some
# checks read the state a patch changes (numpy.compat exists once numpy_compat is installed).
_decided: Dict[str, Tuple[bool, str]] = {}


class PatchSelectionError(ValueError):
    """``FAIRSEQ_EB_PATCHES`` names no patch, or is malformed; the message is one line."""


def selection(value: Optional[str] = None) -> Dict[str, bool]:
    """Which patches are switched on: all by default, then ``FAIRSEQ_EB_PATCHES`` items left to right."""
    value = os.environ.get(ENV_VAR, "") if value is None else value
    chosen = {p.name: True for p in REGISTRY}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        on = not item.startswith("-")
        name = item.lstrip("+-")
        if name == "all":
            chosen = {n: on for n in chosen}
        elif name in chosen:
            chosen[name] = on
        else:
            raise PatchSelectionError(
                f"{ENV_VAR}={value}: unknown patch '{name}'; give comma-separated -NAME (off) or +NAME (on) with NAME "
                f"one of: all, {', '.join(chosen)}")
    return chosen


def apply(stage: str = "load") -> List[str]:
    """Install the selected, applicable patches of ``stage`` (idempotent); return the names installed now."""
    chosen = selection()
    done = []
    for patch in REGISTRY:
        if patch.stage != stage or patch.name in _decided or not chosen[patch.name]:
            continue
        applicable, why = patch.here()
        if applicable:
            patch.install()
            done.append(patch.name)
        _decided[patch.name] = (applicable, why)
    return done


@dataclass(frozen=True)
class PatchStatus:
    """A patch as this process sees it: switched on, applicable to these builds, installed."""

    patch: Patch
    enabled: bool
    applicable: bool
    why_here: str
    installed: bool

    @property
    def state(self) -> str:
        if not self.enabled:
            return f"off ({ENV_VAR})"
        if not self.applicable:
            return "not applicable"
        return "active" if self.installed else "on when loaded"


def status(value: Optional[str] = None) -> List[PatchStatus]:
    """Every patch with its state here (needs torch and fairseq; installs nothing)."""
    chosen = selection(value)
    out = []
    for patch in REGISTRY:
        installed = patch.name in _decided and _decided[patch.name][0]
        applicable, why = _decided[patch.name] if patch.name in _decided else patch.here()
        out.append(PatchStatus(patch, chosen[patch.name], applicable, why, installed))
    return out
