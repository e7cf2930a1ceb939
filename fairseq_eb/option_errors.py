"""A refused plugin option as data: which option, the value given, what is valid; and how each front end says it.

Why one type: the same validators run behind fairseq's command line (:mod:`fairseq_eb.cli_validation`), the
task's and criteria's setup (also under ``fairseq-hydra-train``) and the recipe's check of its runs' options
(:mod:`fairseq_eb.recipe.input_checks`); each front end formats the same :class:`OptionError` its own way, and
none has to parse another's text. Dependency-free, so that the validators' modules import nothing else of the
plugin's command line (no import cycle).
"""
from __future__ import annotations

import re
import sys
from typing import Callable, List, Optional


class OptionError(ValueError):
    """One refused option. ``str()`` is the one-line message; ``option``, ``value`` and ``valid`` say it as data.

    A ``ValueError``, so that code catching the validators' errors before they were structured still does.
    """

    def __init__(self, option: str, value: object, valid: str, message: Optional[str] = None) -> None:
        self.option, self.value, self.valid = option, value, valid
        super().__init__(message or f"{option} must be {valid}, got {value!r}")


def first_error(check: Callable[[], None]) -> List[OptionError]:
    """Run a validator body that raises at its first refusal; its refusal as a list (empty when all is well)."""
    try:
        check()
    except OptionError as e:
        return [e]
    return []


def raise_first(errors: List[OptionError]) -> None:
    """Raise the first of ``errors`` (the setup-time checks fail on it, as before they were structured)."""
    if errors:
        raise errors[0]


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


def check_at_setup(errors: List[OptionError], group: str) -> None:
    """A component's setup-time check: the first error ends ``fairseq-hydra-train`` in one line, else is raised."""
    if errors:
        exit_under_hydra(errors[0], group)
        raise errors[0]
