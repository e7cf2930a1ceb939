"""A criterion's own options from its dataclass: one constructor whatever the options, defaults said once.

Why: fairseq builds a criterion by matching its ``__init__`` parameters to the config's fields, so a criterion
with many options repeats each one, with its default, in every constructor (the sequence criteria had three
copies of a 16-parameter signature, and their defaults drifted from the dataclass's). With
:func:`build_from_config` as ``build_criterion`` the constructor takes ``**options`` and
:func:`resolve_options` fills what a direct call leaves out from the dataclass.
"""
import dataclasses
from types import SimpleNamespace
from typing import Any, Dict, List, Type

from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterionConfig

# the base criterion's own parameters, passed to LabelSmoothedCrossEntropyCriterion.__init__
_BASE = tuple(f.name for f in dataclasses.fields(LabelSmoothedCrossEntropyCriterionConfig))


def _options(config_class: Type) -> List[dataclasses.Field]:
    """The dataclass's option fields (not FairseqDataclass's ``_name``)."""
    return [f for f in dataclasses.fields(config_class) if not f.name.startswith("_")]


def build_from_config(cls: Type, cfg: Any, task: Any) -> Any:
    """``cls(task, <every field of cls.config_class that cfg has>)``: what fairseq's ``build_criterion`` does for a
    constructor that names its parameters one by one."""
    names = [f.name for f in _options(cls.config_class)]
    return cls(task, **{name: getattr(cfg, name) for name in names if hasattr(cfg, name)})


def _fairseq_default(interpolation: str) -> Any:
    """The default of fairseq's ``${group.key}`` (what the config would interpolate outside a training run)."""
    from fairseq.dataclass.configs import FairseqConfig

    group, key = interpolation[2:-1].split(".")
    field = next(f for f in dataclasses.fields(FairseqConfig) if f.name == group)
    holder = field.default_factory() if field.default is dataclasses.MISSING else field.default
    return getattr(holder, key)


def _default(field: dataclasses.Field) -> Any:
    value = field.default_factory() if field.default is dataclasses.MISSING else field.default
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        return _fairseq_default(value)
    return value


def resolve_options(config_class: Type, options: Dict[str, Any]) -> SimpleNamespace:
    """The criterion's own options (every field of ``config_class`` but the base criterion's): ``options`` over the
    dataclass defaults. An unknown name is a ``TypeError``, as for a constructor with named parameters."""
    own = {f.name: f for f in _options(config_class) if f.name not in _BASE}
    unknown = sorted(set(options) - set(own))
    if unknown:
        raise TypeError(f"{config_class.__name__} has no option {', '.join(unknown)}")
    return SimpleNamespace(**{name: options[name] if name in options else _default(f) for name, f in own.items()})
