"""Out-of-range plugin options fail on the command line like argparse errors: one line, exit status 2.

Why: the task and criterion validate their options at setup, which fairseq reaches only after building
the whole trainer, so a typo such as ``--replace-token-prob 1.5`` ended in a 40-line traceback. fairseq
parses its command line with :func:`fairseq.options.parse_args_and_arch`; we wrap it so the parsed
options go through the same validators (the task's ``validate_replacement_config`` and the criterion's
``validate_gp_options``, looked up by name so they stay the single source of the rules) right after
parsing. Hydra (``fairseq-hydra-train``) does not use this parser; there the setup-time checks still apply.

Two of fairseq's own behaviours are refused here too, whatever the task: ``--restore-file`` naming a file
that does not exist (fairseq logs "No existing checkpoint found" and trains from scratch), and the
replacement task with a model that has no encoder (``--arch transformer_lm``: an omegaconf traceback).
Settings that are valid but have no effect get a one-line warning on stderr (:func:`inert_option_warnings`).
"""
from __future__ import annotations

import argparse
import functools
import glob
import os
import re
import sys
from typing import Any, Callable, List

TASK = "translation_with_replacement"
# every task with the replacement options (fairseq_eb/tasks; docs/pretrained.md)
TASKS = (TASK, "translation_from_pretrained_bart_with_replacement", "translation_multi_simple_epoch_with_replacement")
CRITERION = "label_smoothed_cross_entropy_with_gp"
SEQUENCE_CRITERIA = ("sequence_risk", "sequence_ranking")


def _check_task(args: argparse.Namespace) -> None:
    from fairseq_eb.tasks import translation_with_replacement as module

    module.validate_replacement_config(args)


def _check_criterion(args: argparse.Namespace) -> None:
    from fairseq_eb.criterions import label_smoothed_cross_entropy_with_gp as module

    module.validate_gp_options(args.gp_epsilon, args.gp_over, args.gp_method,
                               getattr(args, "ddp_backend", None), getattr(args, "distributed_world_size", 1),
                               getattr(args, "gp_interval", 1), getattr(args, "gp_warmup_updates", 0),
                               getattr(args, "gp_attention", "auto"),
                               bool(getattr(args, "fp16", False) or getattr(args, "memory_efficient_fp16", False)))


def _check_sequence_criterion(args: argparse.Namespace) -> None:
    from fairseq_eb.criterions import sequence_level as module

    module.validate_sequence_options(**module.sequence_options_of(args))
    from fairseq.models import ARCH_MODEL_REGISTRY, FairseqEncoderDecoderModel

    arch = getattr(args, "arch", None)
    model = ARCH_MODEL_REGISTRY.get(arch)
    if model is not None and not issubclass(model, FairseqEncoderDecoderModel):
        raise ValueError(f"--criterion {args.criterion} decodes candidates from a source: it needs an encoder-decoder "
                         f"model such as --arch transformer; --arch {arch} is {model.__name__}, which has no encoder")


def _check_restore_file(args: argparse.Namespace) -> None:
    """``--restore-file`` other than fairseq's default must exist (with or without a shard suffix)."""
    path = getattr(args, "restore_file", None)
    if path in (None, "", "checkpoint_last.pt") or "://" in str(path):
        return
    if os.path.isfile(path) or glob.glob(glob.escape(str(path)).replace(".pt", "*.pt")):
        return
    raise ValueError(f"--restore-file {path}: no such checkpoint file (fairseq would train from scratch without "
                     "a word); give an existing checkpoint, or leave the option out to resume from "
                     "SAVE_DIR/checkpoint_last.pt")


def _check_encoder_decoder(args: argparse.Namespace) -> None:
    """The replacement task corrupts a decoder input that only an encoder-decoder model has."""
    from fairseq.models import ARCH_MODEL_REGISTRY, FairseqEncoderDecoderModel

    if getattr(args, "path", None):  # fairseq-generate/-interactive: the model is the checkpoint's, and their
        return  # --arch is a placeholder (fairseq-generate defaults it to wav2vec2)
    arch = getattr(args, "arch", None)
    model = ARCH_MODEL_REGISTRY.get(arch)
    if model is None or issubclass(model, FairseqEncoderDecoderModel):
        return
    pool = str(getattr(args, "replace_pool", ""))
    what = "--replace-pool model (the model's own guesses)" if pool == "model" else f"--task {args.task}"
    raise ValueError(f"{what} needs an encoder-decoder model such as --arch transformer; --arch {arch} is "
                     f"{model.__name__}, which has no encoder")


def inert_option_warnings(args: argparse.Namespace) -> List[str]:
    """Options set away from their default that have no effect with the other settings (a likely mistake)."""
    if getattr(args, "task", None) not in TASKS:
        return []
    warnings = []
    temperature = getattr(args, "replace_model_temperature", 0.0)
    pool = str(getattr(args, "replace_pool", "target"))
    if temperature and pool != "model":
        warnings.append(f"--replace-model-temperature {temperature} has no effect with --replace-pool {pool} "
                        "(it applies to --replace-pool model only)")
    from fairseq_eb.schedules import DEFAULT_SHAPE

    shape = getattr(args, "replace_schedule_shape", 0.0)
    schedule = str(getattr(args, "replace_schedule", "constant"))
    if shape and schedule not in DEFAULT_SHAPE:
        warnings.append(f"--replace-schedule-shape {shape} has no effect with --replace-schedule {schedule} (it "
                        "sets the steepness of the exponential and inverse_sigmoid schedules only)")
    for name, flag in (("replace_confidence_threshold", "--replace-confidence-threshold"),
                       ("replace_random_above", "--replace-random-above"),
                       ("replace_imitation_weight", "--replace-imitation-weight")):
        value = getattr(args, name, 0.0)
        if value and pool != "model":
            warnings.append(f"{flag} {value} has no effect with --replace-pool {pool} (it applies to --replace-pool "
                            "model only)")
    random_pool = str(getattr(args, "replace_random_pool", "target"))
    if random_pool != "target" and not getattr(args, "replace_random_above", 0.0):
        warnings.append(f"--replace-random-pool {random_pool} has no effect without --replace-random-above (it is "
                        "the pool of its random tokens)")
    constant = getattr(args, "replace_position_constant", 0.0)
    position = str(getattr(args, "replace_position_schedule", "none"))
    if constant and position == "none":
        warnings.append(f"--replace-position-constant {constant} has no effect with --replace-position-schedule none "
                        "(it is the constant k of the exponential, sigmoid and linear position schedules)")
    return warnings


def validation_errors(args: argparse.Namespace) -> List[str]:
    """The plugin validators' messages for a parsed fairseq namespace (empty when all is well)."""
    checks: List[Callable[[argparse.Namespace], None]] = [_check_restore_file]
    if getattr(args, "task", None) in TASKS:
        checks += [_check_task, _check_encoder_decoder]
    if getattr(args, "criterion", None) == CRITERION:
        checks.append(_check_criterion)
    if getattr(args, "criterion", None) in SEQUENCE_CRITERIA:
        checks.append(_check_sequence_criterion)
    errors = []
    for check in checks:
        try:
            check(args)
        except ValueError as e:
            errors.append(str(e))
    return errors


def hydra_key_message(message: str, group: str) -> str:
    """The validator's message with its ``--option`` names written as Hydra keys (``task.replace_token_prob``)."""
    return re.sub(r"--([a-z0-9-]+)", lambda m: f"{group}.{m.group(1).replace('-', '_')}", message)


def exit_under_hydra(error: ValueError, group: str) -> None:
    """Under ``fairseq-hydra-train``, print a validator's error as one line and exit 2; elsewhere do nothing.

    Why: Hydra prints an exception from the task or criterion setup as a traceback and exits 1. ``SystemExit`` is
    no ``Exception``: fairseq's ``_hydra_main`` re-raises it and Hydra's ``run_and_report`` lets it through.
    """
    try:
        from hydra.core.hydra_config import HydraConfig
    except ImportError:  # pragma: no cover - hydra comes with fairseq
        return
    if HydraConfig.initialized():
        print(f"fairseq-hydra-train: error: {hydra_key_message(str(error), group)}", file=sys.stderr)
        raise SystemExit(2)


def install() -> None:
    """Wrap ``fairseq.options.parse_args_and_arch`` (idempotent)."""
    from fairseq import options

    original = options.parse_args_and_arch
    if getattr(original, "_fairseq_eb_validate", False):
        return

    @functools.wraps(original)
    def parse_args_and_arch(parser, input_args=None, parse_known=False, suppress_defaults=False,
                            modify_parser=None, **kwargs: Any):
        result = original(parser, input_args=input_args, parse_known=parse_known,
                          suppress_defaults=suppress_defaults, modify_parser=modify_parser, **kwargs)
        if suppress_defaults:  # options left unset are None here: nothing to check
            return result
        args = result[0] if parse_known else result
        errors = validation_errors(args)
        if errors:
            print(f"{parser.prog}: error: {errors[0]}", file=sys.stderr)
            sys.exit(2)
        for warning in inert_option_warnings(args):
            print(f"{parser.prog}: warning: {warning}", file=sys.stderr)
        return result

    parse_args_and_arch._fairseq_eb_validate = True
    options.parse_args_and_arch = parse_args_and_arch
