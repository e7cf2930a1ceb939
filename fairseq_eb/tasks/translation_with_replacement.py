"""fairseq task ``translation_with_replacement``: ``translation`` + decoder-input replacement.

A thin adapter: it corrupts a *copy* of the batch's ``prev_output_tokens`` and hands it to fairseq's own
``train_step`` (autocast for ``--amp``, ``ignore_grad``, ``set_num_updates`` stay fairseq's). Targets,
validation, ``fairseq-generate`` and ``fairseq-interactive`` are untouched. Replacements are random
tokens (``--replace-pool target/source_target/vocab``) or the model's own guesses (``model``: parallel
scheduled sampling); p_s may follow a schedule over updates (``fairseq_eb.schedules``).
"""

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Dict, NamedTuple, Optional, Tuple, Union

import torch
from fairseq.dataclass import ChoiceEnum
from fairseq.distributed import utils as distributed_utils
from fairseq.logging import metrics
from fairseq.optim.amp_optimizer import AMPOptimizer
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask
from omegaconf import II

from fairseq_eb.cli_validation import exit_under_hydra
from fairseq_eb.corruption import POOLS, changed_positions, corrupt_decoder_input, replacement_seed
from fairseq_eb.model_guesses import model_guesses
from fairseq_eb.schedules import SCHEDULES, schedule_fraction, validate_schedule

logger = logging.getLogger(__name__)

REPLACE_POOL_CHOICES = ChoiceEnum(list(POOLS))
REPLACE_SCHEDULE_CHOICES = ChoiceEnum(list(SCHEDULES))


@dataclass
class TranslationWithReplacementConfig(TranslationConfig):
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


class MicroBatchCounter:
    """Index of the current micro-batch within its update.

    Why: with ``--update-freq k`` fairseq calls ``train_step`` k times with the same update number, and
    each micro-batch needs its own draws. The index restarts at 0 whenever the update number changes, so
    a resumed run (fresh counter) continues exactly as an uninterrupted one.
    """

    def __init__(self) -> None:
        self.update_num = -1
        self.index = -1

    def next(self, update_num: int) -> int:
        self.index = self.index + 1 if update_num == self.update_num else 0
        self.update_num = update_num
        return self.index


class CorruptedSample(NamedTuple):
    """What :meth:`TranslationWithReplacementTask.corrupt_sample` returns."""

    sample: Dict[str, Any]  # a shallow copy with the corrupted decoder input (or the input sample)
    # counts: 0-dim tensors on the batch's device (no host sync); plain 0 only for a batch without decoder input
    selected: Union[int, torch.Tensor]  # number of positions chosen by the gates
    changed: Union[int, torch.Tensor]  # number of positions whose token actually changed (<= selected)
    seed: Optional[int]  # the generator seed of the draws (None: nothing drawn)


def _data_parallel_rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return distributed_utils.get_data_parallel_rank()
    return 0


def ordinary_symbol_range(dictionary) -> Tuple[int, int]:
    """``[low, high)`` ids of real symbols: after the specials, before fairseq's 'madeupword' padding."""
    high = len(dictionary)
    while high > dictionary.nspecial and dictionary[high - 1].startswith("madeupword"):
        high -= 1
    return dictionary.nspecial, high


@register_task("translation_with_replacement", dataclass=TranslationWithReplacementConfig)
class TranslationWithReplacementTask(TranslationTask):
    """Translation whose training decoder input is corrupted (random tokens or the model's own guesses;
    docs/method.md §2, docs/schedules.md)."""

    cfg: TranslationWithReplacementConfig

    def __init__(self, cfg: TranslationWithReplacementConfig, src_dict, tgt_dict):
        validate_replacement_config(cfg)
        super().__init__(cfg, src_dict, tgt_dict)
        self.vocab_range = ordinary_symbol_range(tgt_dict)
        if str(cfg.replace_pool) in ("vocab", "model") and self.vocab_range[1] <= self.vocab_range[0]:
            raise ValueError(f"--replace-pool {cfg.replace_pool} needs a target dictionary with ordinary symbols")
        self.micro_batches = MicroBatchCounter()

    @classmethod
    def setup_task(cls, cfg: TranslationWithReplacementConfig, **kwargs):
        try:
            validate_replacement_config(cfg)  # fail before dictionaries/data are touched
        except ValueError as e:
            exit_under_hydra(e, "task")  # fairseq-hydra-train: one line, exit 2
            raise
        return super().setup_task(cfg, **kwargs)

    def corrupt_sample(self, sample: Dict[str, Any], update_num: int, model: Optional[torch.nn.Module] = None,
                       autocast: bool = False) -> CorruptedSample:
        """Corrupt a shallow copy of ``sample`` for training update ``update_num``.

        Each call is one micro-batch: the draws come from a generator seeded by (``--seed``, update,
        data-parallel rank, micro-batch index). ``model`` (and ``autocast`` for ``--amp``) are needed for
        ``--replace-pool model`` only.
        """
        net_input = sample.get("net_input") if sample else None
        if net_input is None or "prev_output_tokens" not in net_input:
            return CorruptedSample(sample, 0, 0, None)
        micro = self.micro_batches.next(update_num)
        prev = net_input["prev_output_tokens"]
        p_s = scheduled_sample_prob(self.cfg, update_num)
        if p_s <= 0.0 or self.cfg.replace_token_prob <= 0.0:
            none = prev.new_zeros(())
            return CorruptedSample(sample, none, none, None)
        pool = str(self.cfg.replace_pool)
        guesses = None
        if pool == "model":
            if model is None:
                raise ValueError("--replace-pool model needs the model in corrupt_sample")

            def guesses(generator):
                return model_guesses(model, net_input, temperature=self.cfg.replace_model_temperature,
                                     generator=generator, autocast=autocast)
        seed = replacement_seed(self.cfg.seed, update_num, _data_parallel_rank(), micro)
        generator = torch.Generator(device=prev.device)
        generator.manual_seed(seed)
        corruption = corrupt_decoder_input(
            prev,
            pad=self.tgt_dict.pad(),
            sample_prob=p_s,
            token_prob=self.cfg.replace_token_prob,
            pool=pool,
            src_tokens=net_input.get("src_tokens"),
            vocab_range=self.vocab_range,
            generator=generator,
            model_guesses=guesses,
        )
        new_sample = dict(sample)
        new_sample["net_input"] = dict(net_input, prev_output_tokens=corruption.tokens)
        changed = changed_positions(prev, corruption).sum()
        return CorruptedSample(new_sample, corruption.selected.sum(), changed, seed)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        # same autocast decision as fairseq's FairseqTask.train_step, for the model pool's guess pass
        corrupted = self.corrupt_sample(sample, update_num, model=model,
                                        autocast=isinstance(optimizer, AMPOptimizer))
        loss, sample_size, logging_output = super().train_step(
            corrupted.sample, model, criterion, optimizer, update_num, ignore_grad
        )
        logging_output["eb_selected"] = corrupted.selected
        logging_output["eb_replaced"] = corrupted.changed
        return loss, sample_size, logging_output

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        if logging_outputs and "eb_replaced" in logging_outputs[0]:
            ntokens = sum(log.get("ntokens", 0) for log in logging_outputs)
            if ntokens > 0:
                # shares of target tokens, in %: `replaced` = actually changed (a drawn token may equal the
                # original), `selected` = chosen by the gates (shows p_s*p_t and the schedule at work)
                for key, name in (("eb_replaced", "replaced"), ("eb_selected", "selected")):
                    count = sum(log.get(key, 0) for log in logging_outputs)
                    metrics.log_scalar(name, 100.0 * float(count) / float(ntokens), ntokens, round=2)
