"""The options of the decoder-input replacement, shared by every ``*_with_replacement`` task.

Why a separate dataclass: the dataclass tasks (``translation_with_replacement``) inherit it next to their
base task's config, the argparse ones (``translation_multi_simple_epoch_with_replacement``,
``translation_from_pretrained_bart_with_replacement``) add its fields to their parser; one definition of
every option, its help and its checks (docs/method.md §2, docs/schedules.md).
"""
import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, List

from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from omegaconf import II

from fairseq_eb.choices import one_of
from fairseq_eb.corruption import POOLS, RANDOM_POOLS
from fairseq_eb.option_errors import OptionError, first_error, raise_first
from fairseq_eb.schedules import (
    POSITION_SCHEDULES,
    SCHEDULES,
    schedule_fraction,
    validate_position_schedule,
    validate_schedule,
)

REPLACE_POOL_CHOICES = ChoiceEnum(list(POOLS))
REPLACE_SCHEDULE_CHOICES = ChoiceEnum(list(SCHEDULES))
REPLACE_RANDOM_POOL_CHOICES = ChoiceEnum(list(RANDOM_POOLS))
REPLACE_POSITION_SCHEDULE_CHOICES = ChoiceEnum(list(POSITION_SCHEDULES))


@dataclass
class ReplacementConfig(FairseqDataclass):
    replace_sample_prob: float = field(
        default=0.5,
        metadata={"help": "probability p_s in [0, 1] that a training sentence's decoder input is corrupted "
                  "(the final value when a schedule is set)"},
    )
    replace_token_prob: float = field(
        default=0.3,
        metadata={
            "help": "probability p_t in [0, 1] that each target token of a corrupted sentence is replaced "
            "in the decoder input (the loss still predicts the original tokens)"
        },
    )
    replace_pool: REPLACE_POOL_CHOICES = field(
        default="target",
        metadata={
            "help": "where replacement tokens are drawn from: 'target' = the same sentence's target tokens "
            "(the article), 'source_target' = its source and target tokens incl. special symbols (the "
            "UniLM reference code), 'vocab' = uniform over the target dictionary's ordinary symbols, "
            "'model' = the model's own guess of the gold token from a no-grad teacher-forced pass "
            "(parallel scheduled sampling)"
        },
    )
    replace_model_temperature: float = field(
        default=0.0,
        metadata={"help": "--replace-pool model: 0 = the model's argmax; T > 0 = sample from softmax(logits/T)"},
    )
    seed: int = II("common.seed")
    replace_warmup_updates: int = field(
        default=0,
        metadata={
            "help": "ramp p_s linearly from 0 over this many updates (>= 0; 0 = corrupt from the first "
            "update, as the reference does); the same as --replace-schedule linear "
            "--replace-schedule-updates N"
        },
    )
    replace_schedule: REPLACE_SCHEDULE_CHOICES = field(
        default="constant",
        metadata={"help": "how p_s rises from 0 to --replace-sample-prob over updates (see docs/schedules.md)"},
    )
    replace_schedule_updates: int = field(
        default=0,
        metadata={"help": "length N > 0 of a non-constant --replace-schedule, in updates"},
    )
    replace_schedule_shape: float = field(
        default=0.0,
        metadata={"help": "steepness k >= 0 of the exponential / inverse_sigmoid schedules (0 = default: 5 / 10)"},
    )
    replace_position_schedule: REPLACE_POSITION_SCHEDULE_CHOICES = field(
        default="none",
        metadata={"help": "p_t as a function of the target position t (1 = the first target token): "
                  "--replace-token-prob times h(t), h = 1 - k^t (exponential), 1 - k/(k + exp(t/k)) "
                  "(sigmoid) or min(1, t/k) (linear), as Liu et al. 2021 define them (not normalised); "
                  "'none' = constant p_t (docs/schedules.md)"},
    )
    replace_position_constant: float = field(
        default=0.0,
        metadata={"help": "k of --replace-position-schedule (0 = default: exponential 0.99 in (0, 1), "
                  "sigmoid 20 >= 1, linear 100 > 0)"},
    )
    replace_confidence_threshold: float = field(
        default=0.0,
        metadata={"help": "--replace-pool model: feed the guess only where the model's probability of it is "
                  ">= c, gold elsewhere (confidence-aware scheduled sampling; the paper used 0.9); 0 = off"},
    )
    replace_random_above: float = field(
        default=0.0,
        metadata={"help": "--replace-pool model: where the guess's probability is >= r, feed a random token "
                  "from --replace-random-pool instead (the paper used 0.95); 0 = off; r >= "
                  "--replace-confidence-threshold"},
    )
    replace_random_pool: REPLACE_RANDOM_POOL_CHOICES = field(
        default="target",
        metadata={"help": "pool of the random tokens of --replace-random-above, as for --replace-pool (default "
                  "'target': tokens of the same target, i.e. repeated or misplaced words, the noise the paper "
                  "describes)"},
    )
    replace_imitation_weight: float = field(
        default=0.0,
        metadata={"help": "--replace-pool model: add w times KL(gold-prefix pass || mixed-prefix pass), "
                  "summed over the target positions after a replaced input, to the training loss; the "
                  "teacher is the guess pass (no extra forward); logged as 'imitation'; 0 = off"},
    )


def complete_replacement_config(cfg: Any) -> Any:
    """``cfg`` with every replacement field it lacks set, in place, to the dataclass default; returns ``cfg``.

    Why: the argparse tasks' options come back from a checkpoint as they were saved, so a checkpoint older than an
    option lacks it (the dataclass task gets fairseq's merge with its dataclass instead). The defaults stay the
    dataclass's.
    """
    defaults = ReplacementConfig()
    missing = [f.name for f in dataclasses.fields(ReplacementConfig) if f.name != "seed" and not hasattr(cfg, f.name)]
    if missing:
        from omegaconf import DictConfig, open_dict

        with open_dict(cfg) if isinstance(cfg, DictConfig) else contextlib.nullcontext():
            for name in missing:
                setattr(cfg, name, getattr(defaults, name))
    return cfg


def replacement_errors(cfg: Any) -> List[OptionError]:
    """The replacement options' refusal (the first found), naming the option, its value and the valid range.

    ``cfg``: anything with the :class:`ReplacementConfig` fields (the task's config, a parsed fairseq namespace).
    """
    return first_error(lambda: _check(cfg))


def validate_replacement_config(cfg: Any) -> None:
    """Raise the first of :func:`replacement_errors` (an :class:`OptionError`, i.e. a ``ValueError``)."""
    raise_first(replacement_errors(cfg))


def _probability(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0.0 <= float(value) <= 1.0


def _finite_non_negative(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


def _check(cfg: Any) -> None:
    for name, flag in (("replace_sample_prob", "--replace-sample-prob"),
                       ("replace_token_prob", "--replace-token-prob")):
        value = getattr(cfg, name)
        if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise OptionError(flag, value, "a probability in [0, 1]")
    pool = str(cfg.replace_pool)
    if pool not in POOLS:
        raise OptionError("--replace-pool", pool, f"one of {one_of(POOLS)}")
    if not _finite_non_negative(cfg.replace_model_temperature):
        raise OptionError("--replace-model-temperature", cfg.replace_model_temperature, "a finite number >= 0")
    warm = cfg.replace_warmup_updates
    if not isinstance(warm, int) or isinstance(warm, bool) or warm < 0:
        raise OptionError("--replace-warmup-updates", warm, "an integer >= 0")
    schedule = str(cfg.replace_schedule)
    validate_schedule(schedule, cfg.replace_schedule_updates, cfg.replace_schedule_shape, option="--replace-schedule")
    validate_position_schedule(cfg.replace_position_schedule, cfg.replace_position_constant,
                               option="--replace-position-schedule")
    threshold, above = cfg.replace_confidence_threshold, cfg.replace_random_above
    for value, flag in ((threshold, "--replace-confidence-threshold"), (above, "--replace-random-above")):
        if not _probability(value):
            raise OptionError(flag, value, "a probability in [0, 1] (0 = off)")
    if 0 < above < threshold:
        raise OptionError("--replace-random-above", above, f">= --replace-confidence-threshold {threshold}",
                          f"--replace-random-above {above} must be >= --replace-confidence-threshold {threshold} "
                          "(random where the model is very confident, its guess where it is confident)")
    random_pool = str(cfg.replace_random_pool)
    if random_pool not in RANDOM_POOLS:
        raise OptionError("--replace-random-pool", random_pool, f"one of {one_of(RANDOM_POOLS)}")
    if not _finite_non_negative(cfg.replace_imitation_weight):
        raise OptionError("--replace-imitation-weight", cfg.replace_imitation_weight, "a finite number >= 0")
    if warm > 0 and schedule != "constant":
        raise OptionError("--replace-warmup-updates", warm, "0 with a --replace-schedule",
                          f"--replace-warmup-updates is the linear schedule; use it or --replace-schedule {schedule} "
                          f"--replace-schedule-updates N, not both")


def scheduled_sample_prob(cfg: Any, update_num: int) -> float:
    """p_s at ``update_num``: ``--replace-sample-prob`` times the schedule's fraction."""
    if cfg.replace_warmup_updates > 0:
        return cfg.replace_sample_prob * schedule_fraction("linear", update_num, cfg.replace_warmup_updates)
    fraction = schedule_fraction(str(cfg.replace_schedule), update_num, cfg.replace_schedule_updates,
                                 cfg.replace_schedule_shape)
    return cfg.replace_sample_prob * fraction
