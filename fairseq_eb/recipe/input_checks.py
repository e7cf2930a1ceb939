"""The recipe's inputs checked before any step runs: ``--chosen``, ``--train-args``, the runs' options, ``OUT``.

Why: a malformed ``chosen.json`` ended in a ``KeyError`` or a JSON message without the file name, and an
out-of-range option (``--train-args '--replace-token-prob 2'``, a chosen variant's args) only failed as a
``StepFailed`` pointing at a training log, after the floor and the run directories had been written. Each
function here raises :class:`ValueError` with one line naming the option or file and what is valid; the
table and the sweep print it and exit 2. Options are parsed with fairseq's own training parser and checked by
the plugin's validators (:func:`fairseq_eb.cli_validation.option_errors`), whose structured errors say which
option to blame; the rules stay in one place, and nothing trains.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from fairseq_eb.option_errors import OptionError
from fairseq_eb.recipe.methods import METHODS

CHOSEN_LAYOUT = '{"chosen": {METHOD: {"variant": NAME, "args": [OPTION, ...]}}}'


def load_chosen_checked(path: Path) -> Dict[str, Dict[str, object]]:
    """method -> {"variant", "args"} of a sweep's ``chosen.json``, or ``ValueError`` naming the file and the fault.

    Returns what ``table.load_chosen`` returns for a well-formed file.
    """
    where = f"--chosen {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{where}: cannot be read ({type(e).__name__}: {e})") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{where}: not valid JSON ({e}); a sweep writes {CHOSEN_LAYOUT}") from None
    if not isinstance(data, dict) or not isinstance(data.get("chosen"), dict):
        raise ValueError(f"{where}: no \"chosen\" object; a sweep writes {CHOSEN_LAYOUT}")
    chosen = {}
    for method, entry in data["chosen"].items():
        if method not in METHODS:
            raise ValueError(f"{where}: unknown method {method!r}; valid methods are {', '.join(METHODS)}")
        if not isinstance(entry, dict) or "args" not in entry:
            raise ValueError(f"{where}: the entry of {method} has no \"args\" list; expected {CHOSEN_LAYOUT}")
        args, variant = entry["args"], entry.get("variant")
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ValueError(f"{where}: \"args\" of {method} must be a list of strings (fairseq options), "
                             f"got {args!r}")
        if not isinstance(variant, str) or not variant or "/" in variant or variant in (".", ".."):
            raise ValueError(f"{where}: \"variant\" of {method} must be a name usable as a directory, got "
                             f"{variant!r}")
        chosen[method] = {"variant": variant, "args": list(args)}
    return chosen


class _ParserRefused(Exception):
    """argparse's own refusal of a command line (``parser.error``), raised instead of printing and exiting."""


def _refuse(message: str) -> None:
    raise _ParserRefused(message)


def train_options_errors(options: Sequence[str]) -> List[OptionError]:
    """Why fairseq-train (with the plugin loaded) would refuse ``options`` at once: empty when it would not.

    fairseq's training parser adds the chosen task's, model's and criterion's options; argparse's refusals
    (unknown option, malformed value) and the plugin's validators (:func:`fairseq_eb.cli_validation.option_errors`:
    out-of-range values, options that need an encoder-decoder model) come back as
    :class:`~fairseq_eb.option_errors.OptionError` records, not as text. The data directory is a placeholder, as
    nothing is loaded.
    """
    import fairseq_eb

    fairseq_eb.register()  # our task and criteria
    from fairseq import options as fairseq_options

    from fairseq_eb.cli_validation import option_errors

    parser = fairseq_options.get_training_parser()
    parser.exit_on_error = False  # a malformed value raises argparse.ArgumentError, naming its option
    parser.error = _refuse  # what argparse reports otherwise (unrecognised arguments)
    # fairseq's parser itself: the plugin's command-line hook, if installed, would print and exit
    parse = getattr(fairseq_options.parse_args_and_arch, "__wrapped__", fairseq_options.parse_args_and_arch)
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            args = parse(parser, ["/nonexistent-data-dir", *options])
    except argparse.ArgumentError as e:
        return [OptionError(e.argument_name or "", None, e.message, str(e))]
    except _ParserRefused as e:
        return [OptionError("", None, "", str(e))]
    return option_errors(args)


def train_options_error(options: Sequence[str]) -> Optional[str]:
    """The message of the first of :func:`train_options_errors`, or ``None``."""
    errors = train_options_errors(options)
    return str(errors[0]) if errors else None


_FLAG = re.compile(r"--[a-z0-9][a-z0-9-]*")


def blame(error: Union[str, OptionError], sources: Sequence[Tuple[str, Sequence[str]]]) -> str:
    """The source (``--train-args``, ``--chosen FILE (method)``, the configuration) whose options hold the refused
    option; the last source that holds it wins, as the last occurrence of an option does in argparse. An
    :class:`OptionError` names its option; for a bare message, the flags it mentions count."""
    option = error.option if isinstance(error, OptionError) else ""
    flags = [f for f in option.split("/") if f.startswith("--")] or _FLAG.findall(str(error))
    for label, options in reversed(sources):
        if any(flag in options for flag in flags):
            return label
    return sources[0][0] if sources else "the run's options"


def check_run_options(specs: Iterable[object], train_args: str = "", chosen_path: Optional[Path] = None) -> None:
    """Parse every distinct run's fairseq-train options (``RunSpec.train_options()``) before anything runs.

    ``ValueError`` naming where the refused option came from: ``--train-args``, ``--chosen FILE`` or the
    configuration (or, without ``chosen_path``, the sweep's variant). Call it before ``check_settings``, which
    writes each run's ``settings.json``.
    """
    seen = set()
    for spec in specs:
        if not hasattr(spec, "train_options"):  # the pre-training: fairseq's own denoising task
            continue
        options = tuple(spec.train_options())
        if options in seen:
            continue
        seen.add(options)
        errors = train_options_errors(options)
        if not errors:
            continue
        method = spec.method
        sources: List[Tuple[str, Sequence[str]]] = [
            (f"--config {spec.cfg.name} ({method})", options),
            (f"--chosen {chosen_path} ({method})" if chosen_path is not None
             else f"the sweep's variant {spec.run_dir.parent.name} ({method})", tuple(spec.variant_args)),
            (f"--train-args {train_args!r}", tuple(getattr(spec, "extra_train_args", ()))),
        ]
        raise ValueError(f"{blame(errors[0], sources)}: {errors[0]}")


def check_floor_cache(out: Path, data: Path) -> None:
    """Refuse an ``OUT/floor.json`` computed on other data before anything in ``OUT`` is written.

    Why: ``check_identity`` compares ``OUT/results.json``, which an interrupted experiment has not written yet;
    its ``floor.json`` was then replaced by the new data's floor before the run directories refused.
    """
    path = Path(out) / "floor.json"
    if not path.exists():
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ValueError(f"--out {out}: {path} cannot be read, so whose experiment {out} holds is unknown; use a "
                         "new --out directory, or delete that file") from None
    recorded = saved.get("data") if isinstance(saved, dict) else None
    if recorded != str(Path(data).resolve()):
        raise ValueError(f"--out {out} holds an experiment on other data ({path} records {recorded}, not "
                         f"{Path(data).resolve()}); use a new --out directory, or delete {path} to replace it")
