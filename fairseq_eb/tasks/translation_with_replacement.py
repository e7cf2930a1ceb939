"""fairseq task ``translation_with_replacement``: ``translation`` + random decoder-input replacement.

A thin adapter: it corrupts a *copy* of the batch's ``prev_output_tokens`` and hands it to fairseq's own
``train_step`` (autocast for ``--amp``, ``ignore_grad``, ``set_num_updates`` stay fairseq's). Targets,
validation, ``fairseq-generate`` and ``fairseq-interactive`` are untouched.
"""

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, Tuple

import torch
from omegaconf import II
from fairseq.dataclass import ChoiceEnum
from fairseq.distributed import utils as distributed_utils
from fairseq.logging import metrics
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from fairseq_eb.corruption import POOLS, corrupt_decoder_input, replacement_seed, warmup_sample_prob

logger = logging.getLogger(__name__)

REPLACE_POOL_CHOICES = ChoiceEnum(list(POOLS))


@dataclass
class TranslationWithReplacementConfig(TranslationConfig):
    replace_sample_prob: float = field(
        default=0.5,
        metadata={"help": "probability p_s in [0, 1] that a training sentence's decoder input is corrupted"},
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
            "UniLM reference code), 'vocab' = uniform over the target dictionary's ordinary symbols"
        },
    )
    seed: int = II("common.seed")
    replace_warmup_updates: int = field(
        default=0,
        metadata={
            "help": "ramp p_s linearly from 0 over this many updates (>= 0; 0 = corrupt from the first "
            "update, as the reference does)"
        },
    )


def validate_replacement_config(cfg: Any) -> None:
    """Reject out-of-range options at setup time, naming the option and its valid range."""
    for name, flag in (("replace_sample_prob", "--replace-sample-prob"), ("replace_token_prob", "--replace-token-prob")):
        value = getattr(cfg, name)
        if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{flag} must be a probability in [0, 1], got {value!r}")
    pool = str(cfg.replace_pool)
    if pool not in POOLS:
        raise ValueError(f"--replace-pool must be one of {{{', '.join(POOLS)}}}, got {pool!r}")
    warm = cfg.replace_warmup_updates
    if not isinstance(warm, int) or isinstance(warm, bool) or warm < 0:
        raise ValueError(f"--replace-warmup-updates must be an integer >= 0, got {warm!r}")


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
    """Translation whose training decoder input is randomly corrupted (docs/method.md §2)."""

    cfg: TranslationWithReplacementConfig

    def __init__(self, cfg: TranslationWithReplacementConfig, src_dict, tgt_dict):
        validate_replacement_config(cfg)
        super().__init__(cfg, src_dict, tgt_dict)
        self.vocab_range = ordinary_symbol_range(tgt_dict)
        if str(cfg.replace_pool) == "vocab" and self.vocab_range[1] <= self.vocab_range[0]:
            raise ValueError("--replace-pool vocab needs a target dictionary with ordinary symbols")
        self._micro = (-1, 0)  # (update_num, micro-batch index) for --update-freq > 1

    @classmethod
    def setup_task(cls, cfg: TranslationWithReplacementConfig, **kwargs):
        validate_replacement_config(cfg)  # fail before dictionaries/data are touched
        return super().setup_task(cfg, **kwargs)

    def _generator(self, device: torch.device, update_num: int) -> torch.Generator:
        last_update, micro = self._micro
        micro = micro + 1 if update_num == last_update else 0
        self._micro = (update_num, micro)
        rank = _data_parallel_rank()
        gen = torch.Generator(device=device)
        gen.manual_seed(replacement_seed(self.cfg.seed, update_num, rank, micro))
        return gen

    def corrupt_sample(self, sample: Dict[str, Any], update_num: int) -> Tuple[Dict[str, Any], Any]:
        """Return a shallow copy of ``sample`` with a corrupted decoder input, and the replaced count."""
        net_input = sample.get("net_input") if sample else None
        if net_input is None or "prev_output_tokens" not in net_input:
            return sample, 0
        p_s = warmup_sample_prob(self.cfg.replace_sample_prob, update_num, self.cfg.replace_warmup_updates)
        if p_s <= 0.0 or self.cfg.replace_token_prob <= 0.0:
            return sample, 0
        prev = net_input["prev_output_tokens"]
        corrupted, replaced = corrupt_decoder_input(
            prev,
            pad=self.tgt_dict.pad(),
            sample_prob=p_s,
            token_prob=self.cfg.replace_token_prob,
            pool=str(self.cfg.replace_pool),
            src_tokens=net_input.get("src_tokens"),
            vocab_range=self.vocab_range,
            generator=self._generator(prev.device, update_num),
        )
        new_sample = dict(sample)
        new_sample["net_input"] = dict(net_input, prev_output_tokens=corrupted)
        return new_sample, replaced.sum()

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        sample, n_replaced = self.corrupt_sample(sample, update_num)
        loss, sample_size, logging_output = super().train_step(
            sample, model, criterion, optimizer, update_num, ignore_grad
        )
        logging_output["eb_replaced"] = n_replaced
        return loss, sample_size, logging_output

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        if logging_outputs and "eb_replaced" in logging_outputs[0]:
            replaced = sum(log.get("eb_replaced", 0) for log in logging_outputs)
            ntokens = sum(log.get("ntokens", 0) for log in logging_outputs)
            if ntokens > 0:
                # share of decoder-input tokens replaced, in %: shows p_s*p_t (and the warm-up) at work
                metrics.log_scalar("replaced", 100.0 * float(replaced) / float(ntokens), ntokens, round=2)
