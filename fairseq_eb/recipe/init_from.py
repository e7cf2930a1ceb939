"""``--init-from CHECKPOINT`` for the table recipe and the sweep: every run fine-tunes from a user's checkpoint.

Why: the study's gains are in the fine-tuning regime, and a user's version of it is a pretrained checkpoint
(``bart.base``, a model of their own), not the tiny model the recipe pre-trains itself. The checkpoint is read
once, at setup, and decides the network; the named configuration decides the training:

* **from the checkpoint**: ``--arch`` and every option of that architecture's own parser that defines the
  network (layers, dimensions, heads, normalisation, positions, shared embeddings, activation, ...), emitted only
  where it differs from what the architecture would set by itself. They replace the configuration's model
  options (its ``--arch`` and every option its architecture's parser knows, e.g. ``_transformer(...)``).
* **from the configuration**: everything else, training regularisation included (``REGULARISATION``:
  dropout, attention/activation dropout, layer drop), because those are choices of the fine-tuning, not
  properties of the pretrained weights, and every method of one table must be trained alike whichever
  checkpoint it starts from. A regularisation option the configuration does not set takes fairseq's default
  for the checkpoint's architecture.

The checkpoint's dictionary is checked against ``DATA/bin/dict.{src,tgt}.txt`` (embedding rows, and the lines of a
``dict.txt`` next to the checkpoint, as ``bart.base`` ships one), so a mismatch is one line at setup instead of a
size-mismatch traceback from inside ``fairseq-train``. The recipe's own pre-training is skipped; each run passes
``--finetune-from-model CHECKPOINT``, and the checkpoint's sha256 with the derived options is part of each run's
settings, so another checkpoint makes other runs. Everything here raises :class:`ValueError` naming
``--init-from PATH``; the recipe prints it as ``error: ...`` and exits 2. torch and fairseq are imported lazily.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from fairseq_eb.prep.common import sha256_file
from fairseq_eb.recipe.configs import RecipeConfig

# Model options that regularise training rather than define the network: the configuration's (see module doc).
REGULARISATION = frozenset({
    "dropout", "attention_dropout", "activation_dropout", "relu_dropout", "encoder_layerdrop", "decoder_layerdrop",
    "pooler_dropout", "adaptive_softmax_dropout", "quant_noise_pq", "quant_noise_pq_block_size",
    "quant_noise_scalar",
})
# Model options that only change how training uses memory: never inherited from the pre-training either.
MEMORY_ONLY = frozenset({"checkpoint_activations", "offload_activations", "min_params_to_wrap"})
NOT_INHERITED = REGULARISATION | MEMORY_ONLY
# embedding matrices checked against the data's dictionaries
EMBEDDINGS = (("encoder.embed_tokens.weight", "src"), ("decoder.embed_tokens.weight", "tgt"))
MASK = "<mask>"
_ABSENT = object()


@dataclass(frozen=True)
class InitFrom:
    """A user's checkpoint read at setup: what every run of the recipe fine-tunes from."""

    checkpoint: Path
    sha256: str
    arch: str
    # --arch ARCH and the architecture's options that differ from its defaults (fairseq-train tokens)
    model_options: Tuple[str, ...]

    def settings(self) -> Dict[str, object]:
        """Part of every run's settings: the checkpoint by content (not path) and the options derived from it."""
        return {"init_from_sha256": self.sha256, "arch": self.arch, "model_options": list(self.model_options)}

    def run_fields(self) -> Dict[str, object]:
        """RunSpec fields: fine-tune from the checkpoint (``--finetune-from-model``)."""
        return {"init_checkpoint": self.checkpoint, "init_settings": self.settings()}

    def config(self, cfg: RecipeConfig) -> RecipeConfig:
        """``cfg`` with the checkpoint's model options in place of its own, and no pre-training."""
        kept = strip_model_options(cfg.train_args)
        return dataclasses.replace(cfg, train_args=(*self.model_options, *kept), pretrain_args=())

    def record(self) -> Dict[str, object]:
        """What results.json says about the checkpoint."""
        return {"checkpoint": str(self.checkpoint), **self.settings()}


def _where(checkpoint: Path) -> str:
    return f"--init-from {checkpoint}"


def load_state(checkpoint: Path) -> Dict[str, object]:
    """The checkpoint loaded on the CPU with fairseq's own loader (and the plugin's shims: safe loading of the
    types fairseq checkpoints hold, a one-line message for a file that is not one); any failure is a ValueError."""
    where = _where(checkpoint)
    if not checkpoint.exists():
        raise ValueError(f"{where}: no such file")
    if not checkpoint.is_file():
        raise ValueError(f"{where}: not a file (give the checkpoint, e.g. DIR/checkpoint_best.pt)")
    import fairseq_eb

    fairseq_eb.register()
    from fairseq import checkpoint_utils

    from fairseq_eb.compat import CheckpointLoadError  # the plugin's one-line wrapper of that loader raises it

    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(str(checkpoint))
    except CheckpointLoadError as e:  # truncated, not a torch file, refused by safe loading: the shim's line
        text, prefix = " ".join(str(e).split()), f"checkpoint {checkpoint}: "
        raise ValueError(f"{where}: {text[len(prefix):] if text.startswith(prefix) else text}") from None
    except Exception as e:  # noqa: BLE001 - a torch file that fairseq's upgrade of old checkpoints cannot read
        text = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        raise ValueError(f"{where}: not a fairseq checkpoint (fairseq's loader failed with {text})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), Mapping):
        raise ValueError(f"{where}: not a fairseq checkpoint (no model weights in it)")
    return state


def _flat(values: Mapping[str, object], prefix: str = "") -> Dict[str, object]:
    """Nested dataclass configs (``encoder.embed_dim``) flattened as fairseq's parsers name them
    (``encoder_embed_dim``)."""
    out: Dict[str, object] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{name}_"))
        else:
            out[name] = value
    return out


def model_config(state: Mapping[str, object], checkpoint: Path = Path("checkpoint")) -> Tuple[str, Dict[str, object]]:
    """The architecture name and the model's option values recorded in a checkpoint.

    Modern checkpoints keep them in ``state["cfg"]["model"]`` (an omegaconf config, or a Namespace for models
    that define ``add_args``); old ones (``bart.base``, ``bart.large``) in the ``state["args"]`` Namespace.
    """
    model = None
    cfg = state.get("cfg")
    if cfg is not None:
        try:
            model = cfg["model"]
        except (KeyError, TypeError):
            model = None
    if model is None:
        model = state.get("args")
    if model is None:
        raise ValueError(f"{_where(checkpoint)}: holds no model configuration (neither cfg.model nor args)")
    if isinstance(model, argparse.Namespace):
        values = dict(vars(model))
    else:
        from omegaconf import OmegaConf

        values = OmegaConf.to_container(model, resolve=True) if OmegaConf.is_config(model) else dict(model)
    values = _flat(values)
    arch = values.get("arch") or values.get("_name")
    if not isinstance(arch, str) or not arch:
        raise ValueError(f"{_where(checkpoint)}: its model configuration names no architecture (arch / _name)")
    return arch, values


def arch_parser(arch: str) -> argparse.ArgumentParser:
    """The architecture's own options, parsed as fairseq-train does (defaults suppressed: the architecture
    function fills in what is not given)."""
    import fairseq_eb

    fairseq_eb.register()
    from fairseq.models import ARCH_MODEL_REGISTRY

    if arch not in ARCH_MODEL_REGISTRY:
        raise ValueError(f"architecture {arch!r} is not registered in fairseq (a model of another --user-dir?)")
    parser = argparse.ArgumentParser(argument_default=argparse.SUPPRESS, add_help=False, allow_abbrev=False)
    ARCH_MODEL_REGISTRY[arch].add_args(parser)
    return parser


def _model_actions(parser: argparse.ArgumentParser) -> Dict[str, argparse.Action]:
    """dest -> action of every model option (the long form)."""
    return {a.dest: a for a in parser._actions if any(s.startswith("--") for s in a.option_strings)}


def resolve(arch: str, options: Sequence[str]) -> Dict[str, object]:
    """The model's option values that fairseq-train would build from ``--arch arch`` and ``options``."""
    from fairseq.models import ARCH_CONFIG_REGISTRY

    namespace = arch_parser(arch).parse_args(list(options))
    namespace.arch = arch
    ARCH_CONFIG_REGISTRY[arch](namespace)
    return vars(namespace)


def _tokens(action: argparse.Action, value: object) -> List[str]:
    flag = next(s for s in action.option_strings if s.startswith("--"))
    if action.nargs == 0:  # store_true / store_false / store_const
        return [flag]
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
        return [flag, *items] if action.nargs in ("+", "*") or isinstance(action.nargs, int) else [flag, str(value)]
    return [flag, str(value)]


def _same(got: object, value: object) -> bool:
    """Equal values; an option parsed without a type (fairseq's interpolated dataclass fields) is its text."""
    return got == value or (isinstance(got, str) != isinstance(value, str) and str(got) == str(value))


def _expressible(action: argparse.Action, value: object) -> bool:
    """Whether ``value`` can be given on the command line: a flag only sets its constant."""
    return value == action.const if action.nargs == 0 else value is not None


def model_options(arch: str, values: Mapping[str, object]) -> List[str]:
    """``--arch ARCH`` and the architecture's own options that rebuild ``values``.

    An option is emitted where the checkpoint's value differs from what the architecture sets by itself, then
    again where it differs given the options emitted so far (until nothing changes: some defaults follow other
    options, e.g. the decoder's size the encoder's), so that the emitted options rebuild every recorded value.
    Regularisation and memory options are left to the recipe's configuration (module doc). A value the command
    line cannot express (a flag whose architecture default is on, recorded off) is a ValueError naming it.
    """
    actions = {d: a for d, a in _model_actions(arch_parser(arch)).items() if d not in NOT_INHERITED}

    def emitted(chosen: Mapping[str, object]) -> List[str]:
        return [t for d in sorted(chosen) for t in _tokens(actions[d], chosen[d])]

    def differing(chosen: Mapping[str, object]) -> Dict[str, object]:
        built = resolve(arch, emitted(chosen))
        out = {}
        for dest in actions:
            if dest not in values:  # an option newer than the checkpoint: the architecture's default
                continue
            value, got = values[dest], built.get(dest, _ABSENT)
            if got is _ABSENT and (value is None or value is False):
                continue  # the model reads a missing option as off / unset
            if not _same(got, value):
                out[dest] = value
        return out

    chosen: Dict[str, object] = {}
    for _ in range(len(actions) + 1):
        differ = {d: v for d, v in differing(chosen).items() if d not in chosen}
        if not differ:
            break
        unsettable = [f"{d}={v!r}" for d, v in differ.items() if not _expressible(actions[d], v)]
        if unsettable:
            raise ValueError(f"its model has {', '.join(sorted(unsettable))}, which architecture {arch} cannot be "
                             "told on the command line (a flag whose default there is the opposite)")
        chosen.update(differ)
    left = differing(chosen)
    if left:
        raise ValueError(f"its model options {', '.join(sorted(left))} cannot be rebuilt from architecture {arch}'s "
                         "command-line options")
    return ["--arch", arch, *emitted(chosen)]


def _option_table(archs: Sequence[str]) -> Dict[str, argparse.Action]:
    table: Dict[str, argparse.Action] = {}
    for arch in archs:
        for action in arch_parser(arch)._actions:
            for name in action.option_strings:
                table.setdefault(name, action)
    return table


def _arch_of(args: Sequence[str]) -> Optional[str]:
    args = list(args)
    for i, token in enumerate(args):
        if token == "--arch" and i + 1 < len(args):
            return args[i + 1]
        if token.startswith("--arch="):
            return token.split("=", 1)[1]
    return None


def strip_model_options(train_args: Sequence[str]) -> List[str]:
    """``train_args`` without ``--arch`` and the options its architecture's parser knows (with their values),
    regularisation and memory options excepted: what a configuration keeps under ``--init-from``."""
    arch = _arch_of(train_args)
    table = _option_table([arch]) if arch else {}
    out: List[str] = []
    args = list(train_args)
    i = 0
    while i < len(args):
        token = args[i]
        name = token.split("=", 1)[0]
        action = table.get(name)
        if name == "--arch" or (action is not None and action.dest not in NOT_INHERITED):
            i += 1
            if "=" not in token and (name == "--arch" or action.nargs != 0):
                if action is not None and action.nargs in ("+", "*"):
                    while i < len(args) and not args[i].startswith("--"):
                        i += 1
                elif i < len(args):
                    i += 1
            continue
        out.append(token)
        i += 1
    return out


def embedding_rows(state: Mapping[str, object], checkpoint: Path = Path("checkpoint")) -> Dict[str, int]:
    """Rows of the encoder's and the decoder's token embeddings, by the data side they must match."""
    weights = state["model"]
    rows = {side: int(weights[key].shape[0]) for key, side in EMBEDDINGS if key in weights}
    if set(rows) != {"src", "tgt"}:
        raise ValueError(f"{_where(checkpoint)}: no encoder.embed_tokens.weight and decoder.embed_tokens.weight in "
                         "its weights: not a fairseq encoder-decoder checkpoint the recipe can fine-tune")
    return rows


def drops_extra_mask_row(arch: str) -> bool:
    """Whether the architecture's model drops a last ``<mask>`` embedding row that the data's dictionary lacks
    when it loads (BART's ``upgrade_state_dict_named``: bart.base/large have 1 row more than their dict.txt)."""
    from fairseq.models import ARCH_MODEL_REGISTRY
    from fairseq.models.bart import BARTModel

    return issubclass(ARCH_MODEL_REGISTRY[arch], BARTModel)


def _first_difference(a: Sequence[str], b: Sequence[str]) -> Tuple[int, str, str]:
    """(1-based line, a's symbol, b's symbol) of the first line where two symbol lists differ."""
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else "(end of file)"
        y = b[i] if i < len(b) else "(end of file)"
        if x != y:
            return i + 1, x, y
    raise ValueError("the symbol lists are equal")


def dictionary_lines(path: Path) -> List[str]:
    """The symbols a fairseq dictionary file lists, in order, as fairseq's Dictionary reads them (no specials)."""
    from fairseq.data import Dictionary

    try:
        d = Dictionary.load(str(path))
    except Exception as e:  # noqa: BLE001 - a malformed file is the user's to fix: one line
        raise ValueError(f"{path}: not a fairseq dictionary ({' '.join(str(e).split())[:200]})") from None
    return list(d.symbols[d.nspecial:])


def check_dictionary(checkpoint: Path, rows: Mapping[str, int], data_dir: Path, arch: str) -> None:
    """The checkpoint's dictionary against the one the task builds from ``DATA/bin/dict.{src,tgt}.txt``.

    Accepted: as many embedding rows as the data's dictionary has symbols, or one more when that extra row is a
    denoising ``<mask>`` the data's dictionary lacks and the model drops it on loading (BART). The recipe's own
    pre-training (``prep.finetune``) lists ``<mask>`` in the dictionary file itself, so there rows and symbols
    are equal. A ``dict.txt`` next to the checkpoint must list the same symbols as the data's (the data's may
    add a last ``<mask>``). A mismatch is a ValueError naming both files, both sizes and the first differing line.
    """
    where = _where(checkpoint)
    ckpt_dict = checkpoint.parent / "dict.txt"
    try:
        ckpt_lines = dictionary_lines(ckpt_dict) if ckpt_dict.is_file() else None
        data_lines = {side: dictionary_lines(data_dir / "bin" / f"dict.{side}.txt") for side in ("src", "tgt")}
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    fix = ("; binarise the data with the checkpoint's dictionary (python -m fairseq_eb.prep.binarize --dict "
           "DICT --spm-model SPM)")
    for side in ("src", "tgt"):
        data_dict = data_dir / "bin" / f"dict.{side}.txt"
        lines = data_lines[side]
        size = len(lines) + 4
        if ckpt_lines is not None and lines not in (ckpt_lines, ckpt_lines + [MASK]):
            line, a, b = _first_difference(ckpt_lines, lines)
            raise ValueError(f"{where}: its dictionary {ckpt_dict} ({len(ckpt_lines)} lines) and {data_dict} "
                             f"({len(lines)} lines) differ first at line {line}: {a!r} vs {b!r}{fix}")
        n = rows[side]
        if n == size or (n == size + 1 and MASK not in lines and drops_extra_mask_row(arch)):
            continue
        key = dict((s, k) for k, s in EMBEDDINGS)[side]
        if ckpt_lines is not None:
            line, a, b = _first_difference(ckpt_lines, lines) if ckpt_lines != lines else (len(lines) + 1, "", "")
            detail = (f"first differing line {line}: {a!r} in {ckpt_dict} vs {b!r}" if a or b
                      else f"{ckpt_dict} lists the same {len(lines)} lines")
        else:
            detail = "first differing line unknown: no dict.txt next to the checkpoint to compare lines with"
        hint = ""
        if n == size + 1 and MASK not in lines:
            hint = (f"; one row more is a denoising pre-training's appended {MASK}: architecture {arch} does not drop "
                    f"it on loading, so list '{MASK} 0' as the last line of the data's dictionary")
        raise ValueError(f"{where}: its {key} has {n} rows but {data_dict} makes a dictionary of {size} symbols "
                         f"(4 specials + {len(lines)} lines); {detail}{hint or fix}")


def setup(checkpoint: Path, data_dir: Path) -> InitFrom:
    """Read the checkpoint once: its architecture and options, its dictionary checked against the data's.

    ValueError (one line naming ``--init-from PATH``) for a missing or unreadable file, a checkpoint without an
    encoder-decoder model or configuration, or a dictionary that differs from the data's.
    """
    checkpoint = Path(checkpoint)
    state = load_state(checkpoint)
    arch, values = model_config(state, checkpoint)
    try:
        options = model_options(arch, values)
    except ValueError as e:
        raise ValueError(f"{_where(checkpoint)}: {e}") from None
    check_dictionary(checkpoint, embedding_rows(state, checkpoint), data_dir, arch)
    return InitFrom(checkpoint=checkpoint, sha256=sha256_file(checkpoint), arch=arch, model_options=tuple(options))
