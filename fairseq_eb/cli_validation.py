"""Out-of-range plugin options fail on the command line like argparse errors: one line, exit status 2.

Why: the task and criterion validate their options at setup, which fairseq reaches only after building
the whole trainer, so a typo such as ``--replace-token-prob 1.5`` ended in a 40-line traceback. fairseq
parses its command line with :func:`fairseq.options.parse_args_and_arch`; we wrap it so the parsed
options go through the same validators the components run at setup (``replacement_errors``, ``gp_errors``,
``sequence_errors``: the single source of the rules) right after parsing. Hydra (``fairseq-hydra-train``)
does not use this parser; there the setup-time checks still apply. The validators return
:class:`~fairseq_eb.option_errors.OptionError` records; the recipe calls :func:`option_errors` itself
instead of reading this hook's stderr.

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
import sys
from typing import Any, List

from fairseq_eb.option_errors import OptionError, first_error

TASK = "translation_with_replacement"
# every task with the replacement options (fairseq_eb/tasks; docs/pretrained.md)
TASKS = (TASK, "translation_from_pretrained_bart_with_replacement", "translation_multi_simple_epoch_with_replacement")
CRITERION = "label_smoothed_cross_entropy_with_gp"
SEQUENCE_CRITERIA = ("sequence_risk", "sequence_ranking")


def _check_restore_file(args: argparse.Namespace) -> None:
    """``--restore-file`` other than fairseq's default must exist (with or without a shard suffix)."""
    path = getattr(args, "restore_file", None)  # a training option: other tools' parsers lack it
    if path in (None, "", "checkpoint_last.pt") or "://" in str(path):
        return
    if os.path.isfile(path) or glob.glob(glob.escape(str(path)).replace(".pt", "*.pt")):
        return
    raise OptionError("--restore-file", path, "an existing checkpoint file",
                      f"--restore-file {path}: no such checkpoint file (fairseq would train from scratch without "
                      "a word); give an existing checkpoint, or leave the option out to resume from "
                      "SAVE_DIR/checkpoint_last.pt")


def _encoder_decoder_error(args: argparse.Namespace, what: str, option: str, value: object) -> List[OptionError]:
    """``what`` (an option of ours) needs an encoder-decoder model: refuse an ``--arch`` that has no encoder."""
    from fairseq.models import ARCH_MODEL_REGISTRY, FairseqEncoderDecoderModel

    arch = getattr(args, "arch", None)  # fairseq-generate and -interactive have none of their own
    model = ARCH_MODEL_REGISTRY.get(arch)
    if model is None or issubclass(model, FairseqEncoderDecoderModel):
        return []
    return [OptionError(option, value, "used with an encoder-decoder --arch",
                        f"{what} needs an encoder-decoder model such as --arch transformer; --arch {arch} is "
                        f"{model.__name__}, which has no encoder")]


# The components' validators are imported where used: importing them registers the plugin (fairseq_eb.register),
# which installs this module's hook. They import nothing from here.

def _task_errors(args: argparse.Namespace) -> List[OptionError]:
    from fairseq_eb.tasks.replacement_config import replacement_errors

    errors = replacement_errors(args)
    if getattr(args, "path", None):  # fairseq-generate/-interactive: the model is the checkpoint's, and their
        return errors  # --arch is a placeholder (fairseq-generate defaults it to wav2vec2)
    pool = str(args.replace_pool)
    if pool == "model":
        return errors + _encoder_decoder_error(args, "--replace-pool model (the model's own guesses)",
                                               "--replace-pool", pool)
    return errors + _encoder_decoder_error(args, f"--task {args.task}", "--task", args.task)


def _sequence_criterion_errors(args: argparse.Namespace) -> List[OptionError]:
    from fairseq_eb.criterions.sequence_level import sequence_errors

    return sequence_errors(args) or _encoder_decoder_error(
        args, f"--criterion {args.criterion} decodes candidates from a source: it", "--criterion", args.criterion)


def option_errors(args: argparse.Namespace) -> List[OptionError]:
    """The plugin validators' refusals for a parsed fairseq namespace, one per component at most (empty when all
    is well): the same functions the task and the criteria run at setup."""
    errors = first_error(lambda: _check_restore_file(args))
    task, criterion = getattr(args, "task", None), getattr(args, "criterion", None)
    if task in TASKS:
        errors += _task_errors(args)
    if criterion == CRITERION:
        from fairseq_eb.criterions.label_smoothed_cross_entropy_with_gp import gp_errors

        errors += gp_errors(args)
    if criterion in SEQUENCE_CRITERIA:
        errors += _sequence_criterion_errors(args)
    return errors


def validation_errors(args: argparse.Namespace) -> List[str]:
    """The messages of :func:`option_errors`."""
    return [str(e) for e in option_errors(args)]


def inert_option_warnings(args: argparse.Namespace) -> List[str]:
    """Options set away from their default that have no effect with the other settings (a likely mistake)."""
    if getattr(args, "task", None) not in TASKS:
        return []
    warnings = []
    temperature = args.replace_model_temperature
    pool = str(args.replace_pool)
    if temperature and pool != "model":
        warnings.append(f"--replace-model-temperature {temperature} has no effect with --replace-pool {pool} "
                        "(it applies to --replace-pool model only)")
    from fairseq_eb.schedules import DEFAULT_SHAPE

    shape = args.replace_schedule_shape
    schedule = str(args.replace_schedule)
    if shape and schedule not in DEFAULT_SHAPE:
        warnings.append(f"--replace-schedule-shape {shape} has no effect with --replace-schedule {schedule} (it "
                        "sets the steepness of the exponential and inverse_sigmoid schedules only)")
    for name, flag in (("replace_confidence_threshold", "--replace-confidence-threshold"),
                       ("replace_random_above", "--replace-random-above"),
                       ("replace_imitation_weight", "--replace-imitation-weight")):
        value = getattr(args, name)
        if value and pool != "model":
            warnings.append(f"{flag} {value} has no effect with --replace-pool {pool} (it applies to --replace-pool "
                            "model only)")
    random_pool = str(args.replace_random_pool)
    if random_pool != "target" and not args.replace_random_above:
        warnings.append(f"--replace-random-pool {random_pool} has no effect without --replace-random-above (it is "
                        "the pool of its random tokens)")
    constant = args.replace_position_constant
    position = str(args.replace_position_schedule)
    if constant and position == "none":
        warnings.append(f"--replace-position-constant {constant} has no effect with --replace-position-schedule none "
                        "(it is the constant k of the exponential, sigmoid and linear position schedules)")
    return warnings


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
