"""The options of the decoder-input replacement, shared by every ``*_with_replacement`` task.

Why a separate dataclass: the dataclass tasks (``translation_with_replacement``) inherit it next to their
base task's config, the argparse ones (``translation_multi_simple_epoch_with_replacement``,
``translation_from_pretrained_bart_with_replacement``) add its fields to their parser; one definition of
every option, its help and its checks (docs/method.md §2, docs/schedules.md).
"""
import math
from dataclasses import dataclass, field
from typing import Any

from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from omegaconf import II

from fairseq_eb.corruption import POOLS, RANDOM_POOLS
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


def validate_replacement_config(cfg: Any) -> None:
    """Reject out-of-range options at setup time, naming the option and its valid range."""
    for name, flag in (("replace_sample_prob", "--replace-sample-prob"),
                       ("replace_token_prob", "--replace-token-prob")):
        value = getattr(cfg, name)
        if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{flag} must be a probability in [0, 1], got {value!r}")
    pool = str(cfg.replace_pool)
    if pool not in POOLS:
        raise ValueError(f"--replace-pool must be one of {{{', '.join(POOLS)}}}, got {pool!r}")
    temperature = getattr(cfg, "replace_model_temperature", 0.0)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
        math.isfinite(temperature) and temperature >= 0
    ):
        raise ValueError(f"--replace-model-temperature must be a finite number >= 0, got {temperature!r}")
    warm = cfg.replace_warmup_updates
    if not isinstance(warm, int) or isinstance(warm, bool) or warm < 0:
        raise ValueError(f"--replace-warmup-updates must be an integer >= 0, got {warm!r}")
    schedule = str(getattr(cfg, "replace_schedule", "constant"))
    updates = getattr(cfg, "replace_schedule_updates", 0)
    validate_schedule(schedule, updates, getattr(cfg, "replace_schedule_shape", 0.0), option="--replace-schedule")
    validate_position_schedule(getattr(cfg, "replace_position_schedule", "none"),
                               getattr(cfg, "replace_position_constant", 0.0), option="--replace-position-schedule")
    threshold, above = (getattr(cfg, name, 0.0) for name in ("replace_confidence_threshold", "replace_random_above"))
    for value, flag in ((threshold, "--replace-confidence-threshold"), (above, "--replace-random-above")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{flag} must be a probability in [0, 1] (0 = off), got {value!r}")
    if 0 < above < threshold:
        raise ValueError(f"--replace-random-above {above} must be >= --replace-confidence-threshold {threshold} "
                         "(random where the model is very confident, its guess where it is confident)")
    random_pool = str(getattr(cfg, "replace_random_pool", "target"))
    if random_pool not in RANDOM_POOLS:
        raise ValueError(f"--replace-random-pool must be one of {{{', '.join(RANDOM_POOLS)}}}, got {random_pool!r}")
    weight = getattr(cfg, "replace_imitation_weight", 0.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (math.isfinite(weight) and weight >= 0):
        raise ValueError(f"--replace-imitation-weight must be a finite number >= 0, got {weight!r}")
    if warm > 0 and schedule != "constant":
        raise ValueError(
            f"--replace-warmup-updates is the linear schedule; use it or --replace-schedule {schedule} "
            f"--replace-schedule-updates N, not both"
        )


def scheduled_sample_prob(cfg: Any, update_num: int) -> float:
    """p_s at ``update_num``: ``--replace-sample-prob`` times the schedule's fraction."""
    if cfg.replace_warmup_updates > 0:
        return cfg.replace_sample_prob * schedule_fraction("linear", update_num, cfg.replace_warmup_updates)
    fraction = schedule_fraction(str(cfg.replace_schedule), update_num, cfg.replace_schedule_updates,
                                 cfg.replace_schedule_shape)
    return cfg.replace_sample_prob * fraction
