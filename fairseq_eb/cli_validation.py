"""Out-of-range plugin options fail on the command line like argparse errors: one line, exit status 2.

Why: the task and criterion validate their options at setup, which fairseq reaches only after building
the whole trainer, so a typo such as ``--replace-token-prob 1.5`` ended in a 40-line traceback. fairseq
parses its command line with :func:`fairseq.options.parse_args_and_arch`; we wrap it so the parsed
options go through the same validators (the task's ``validate_replacement_config`` and the criterion's
``validate_gp_options``, looked up by name so they stay the single source of the rules) right after
parsing. Hydra (``fairseq-hydra-train``) does not use this parser; there the setup-time checks still apply.
"""
from __future__ import annotations

import argparse
import functools
import sys
from typing import Any, Callable, List

TASK = "translation_with_replacement"
CRITERION = "label_smoothed_cross_entropy_with_gp"


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


def validation_errors(args: argparse.Namespace) -> List[str]:
    """The plugin validators' messages for a parsed fairseq namespace (empty when all is well)."""
    checks: List[Callable[[argparse.Namespace], None]] = []
    if getattr(args, "task", None) == TASK:
        checks.append(_check_task)
    if getattr(args, "criterion", None) == CRITERION:
        checks.append(_check_criterion)
    errors = []
    for check in checks:
        try:
            check(args)
        except ValueError as e:
            errors.append(str(e))
    return errors


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
        return result

    parse_args_and_arch._fairseq_eb_validate = True
    options.parse_args_and_arch = parse_args_and_arch
