"""The recipe's inputs checked before any step runs: ``--chosen``, ``--train-args``, the runs' options, ``OUT``.

Why: a malformed ``chosen.json`` ended in a ``KeyError`` or a JSON message without the file name, and an
out-of-range option (``--train-args '--replace-token-prob 2'``, a chosen variant's args) only failed as a
``StepFailed`` pointing at a training log, after the floor and the run directories had been written. Each
function here raises :class:`ValueError` with one line naming the option or file and what is valid; the
table and the sweep print it and exit 2. Options are parsed with fairseq's own training parser and checked by
the plugin's validators (:mod:`fairseq_eb.cli_validation`), so the rules stay in one place; nothing trains.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

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


def _error_line(captured: str) -> str:
    """The message of an argparse / plugin error printed as ``usage: ...`` then ``prog: error: MESSAGE``."""
    lines = [line for line in captured.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else "fairseq's parser refused the options"
    return last.split(" error: ", 1)[1] if " error: " in last else last


def train_options_error(options: Sequence[str]) -> Optional[str]:
    """Why fairseq-train (with the plugin loaded) would refuse ``options`` at once, or ``None``.

    fairseq's training parser adds the chosen task's, model's and criterion's options and the plugin's
    validators run on the result (out-of-range values, options that need an encoder-decoder model); the data
    directory is a placeholder, as nothing is loaded.
    """
    import fairseq_eb

    fairseq_eb.register()  # our task, criterion and the validating parser
    from fairseq import options as fairseq_options

    parser = fairseq_options.get_training_parser()
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured), contextlib.redirect_stdout(io.StringIO()):
            fairseq_options.parse_args_and_arch(parser, ["/nonexistent-data-dir", *options])
    except SystemExit as e:
        if e.code not in (0, None):
            return _error_line(captured.getvalue())
    return None


_FLAG = re.compile(r"--[a-z0-9][a-z0-9-]*")


def blame(message: str, sources: Sequence[Tuple[str, Sequence[str]]]) -> str:
    """The source (``--train-args``, ``--chosen FILE (method)``, the configuration) whose options hold the flag
    the message names; the last source that holds it wins, as the last occurrence of an option does in argparse."""
    flags = _FLAG.findall(message)
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
        error = train_options_error(options)
        if error is None:
            continue
        method = spec.method
        sources: List[Tuple[str, Sequence[str]]] = [
            (f"--config {spec.cfg.name} ({method})", options),
            (f"--chosen {chosen_path} ({method})" if chosen_path is not None
             else f"the sweep's variant {spec.run_dir.parent.name} ({method})", tuple(spec.variant_args)),
            (f"--train-args {train_args!r}", tuple(getattr(spec, "extra_train_args", ()))),
        ]
        raise ValueError(f"{blame(error, sources)}: {error}")


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
