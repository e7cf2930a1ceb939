"""fairseq task ``translation_with_replacement``: ``translation`` + decoder-input replacement.

A thin adapter: it corrupts a *copy* of the batch's ``prev_output_tokens`` and hands it to fairseq's own
``train_step`` (autocast for ``--amp``, ``ignore_grad``, ``set_num_updates`` stay fairseq's). Targets,
validation, ``fairseq-generate`` and ``fairseq-interactive`` are untouched. Replacements are random
tokens (``--replace-pool target/source_target/vocab``) or the model's own guesses (``model``: parallel
scheduled sampling); p_s may follow a schedule over updates (``fairseq_eb.schedules``).

The machinery is :class:`ReplacementTaskMixin`, which the tasks for pretrained models apply to their own base
tasks (``translation_from_pretrained_bart_with_replacement``, ``translation_multi_simple_epoch_with_replacement``;
docs/pretrained.md). It stays in this module, the replacement's historical home, next to its helpers.
"""

import logging
import math
from dataclasses import dataclass
from typing import Any, Dict, NamedTuple, Optional, Tuple, Union

import torch
from fairseq.distributed import utils as distributed_utils
from fairseq.logging import metrics
from fairseq.optim.amp_optimizer import AMPOptimizer
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from fairseq_eb.corruption import changed_positions, corrupt_decoder_input, replacement_seed
from fairseq_eb.model_guesses import guess_pass, imitation_kl, imitation_positions
from fairseq_eb.option_errors import check_at_setup
from fairseq_eb.tasks.protected_symbols import remember_file_symbols
from fairseq_eb.tasks.replacement_config import (  # noqa: F401  (re-exported: the options' historical home)
    REPLACE_POOL_CHOICES,
    REPLACE_POSITION_SCHEDULE_CHOICES,
    REPLACE_RANDOM_POOL_CHOICES,
    REPLACE_SCHEDULE_CHOICES,
    ReplacementConfig,
    complete_replacement_config,
    replacement_errors,
    scheduled_sample_prob,
    validate_replacement_config,
)

logger = logging.getLogger(__name__)


@dataclass
class TranslationWithReplacementConfig(ReplacementConfig, TranslationConfig):
    """``translation``'s options followed by the replacement's."""


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
    # --replace-imitation-weight: the guess pass's logits (no graph) and the positions of the KL term; None
    # when the pass did not run (nothing selected) or the option is off
    teacher_logits: Optional[torch.Tensor] = None
    imitation_mask: Optional[torch.Tensor] = None


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


def output_projection_of(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder's output layer (``decoder.output_projection``) under any wrappers (DDP, ModuleProxyWrapper)."""
    inner = model
    while not hasattr(inner, "decoder") and hasattr(inner, "module"):
        inner = inner.module
    projection = getattr(getattr(inner, "decoder", None), "output_projection", None)
    if not isinstance(projection, torch.nn.Module):
        raise ValueError("--replace-imitation-weight needs a decoder with an output_projection layer (fairseq's "
                         f"transformer head without adaptive softmax); {type(inner).__name__} has none")
    return projection


class ImitationLoss:
    """A criterion plus ``w * KL(teacher || student)`` (docs/method.md §2.5), called like a criterion.

    The student logits are captured by a forward hook on the decoder's output layer during the criterion's own
    forward (no extra pass; the *last* call counts, i.e. the forward whose loss is trained when a criterion runs
    more than one, as ``--gp-method fgm`` does). The teacher is the guess pass's logits. ``imitation`` (summed
    KL, nats) is added to the logging output and ``w * imitation`` to its ``loss``; it is 0 when the guess
    pass did not run, with the same keys on every micro-batch and rank.
    """

    def __init__(self, criterion, weight: float, teacher_logits: Optional[torch.Tensor],
                 mask: Optional[torch.Tensor]) -> None:
        self.criterion, self.weight, self.teacher_logits, self.mask = criterion, weight, teacher_logits, mask

    def __call__(self, model, sample):
        if self.teacher_logits is None:
            loss, sample_size, logging_output = self.criterion(model, sample)
            logging_output["imitation"] = loss.new_zeros(()).detach()
            return loss, sample_size, logging_output
        captured = []
        handle = output_projection_of(model).register_forward_hook(lambda module, args, out: captured.append(out))
        try:
            loss, sample_size, logging_output = self.criterion(model, sample)
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError("--replace-imitation-weight: the criterion did not run the decoder's output layer")
        kl = imitation_kl(captured[-1], self.teacher_logits, self.mask)
        logging_output["imitation"] = kl.detach()
        if "loss" in logging_output:
            logging_output["loss"] = logging_output["loss"] + self.weight * kl.detach()
        return loss + self.weight * kl.to(loss.dtype), sample_size, logging_output


class ReplacementTaskMixin:
    """The decoder-input replacement for any fairseq seq2seq task: put it before the base task class.

    One implementation for every ``*_with_replacement`` task: the concrete task calls
    :meth:`check_replacement_options` first in its ``__init__`` (every way of building it is checked, once) and
    :meth:`setup_replacement` at its end (once the base task has finished its dictionary), and the base task's
    dataset, validation and generation stay its own. ``protected`` (1-D ids, or None for
    the plain translation task, whose draws stay exactly as they were) lists the symbols never replaced nor
    drawn (:mod:`fairseq_eb.tasks.protected_symbols`).
    """

    replacement_cfg: Any
    protected: Optional[torch.Tensor]

    @staticmethod
    def check_replacement_options(cfg: Any) -> None:
        """The setup-time check of the options (fairseq-hydra-train: one line, exit 2; else an OptionError)."""
        check_at_setup(replacement_errors(complete_replacement_config(cfg)), "task")

    def setup_replacement(self, cfg: Any, protected: Optional[torch.Tensor] = None) -> None:
        """Check the options against the final target dictionary and start the micro-batch counter."""
        self.replacement_cfg = cfg
        self.protected = protected
        self.vocab_range = ordinary_symbol_range(self.target_dictionary)
        if str(cfg.replace_pool) in ("vocab", "model") and self.vocab_range[1] <= self.vocab_range[0]:
            raise ValueError(f"--replace-pool {cfg.replace_pool} needs a target dictionary with ordinary symbols")
        self.micro_batches = MicroBatchCounter()

    @classmethod
    def load_dictionary(cls, filename):
        # remembers the file's size: whatever the base task appends afterwards is protected
        return remember_file_symbols(super().load_dictionary(filename))

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
        p_s = scheduled_sample_prob(self.replacement_cfg, update_num)
        if p_s <= 0.0 or self.replacement_cfg.replace_token_prob <= 0.0:
            none = prev.new_zeros(())
            return CorruptedSample(sample, none, none, None)
        cfg = self.replacement_cfg
        pool = str(cfg.replace_pool)
        guesses, passes = None, []
        threshold = cfg.replace_confidence_threshold
        above = cfg.replace_random_above
        need_confidence = threshold > 0 or above > 0
        keep_logits = self.imitation_weight > 0
        if pool == "model":
            if model is None:
                raise ValueError("--replace-pool model needs the model in corrupt_sample")

            def guesses(generator):
                out = guess_pass(model, net_input, temperature=cfg.replace_model_temperature, generator=generator,
                                 autocast=autocast, confidence=need_confidence, keep_logits=keep_logits)
                passes.append(out)
                return (out.guesses, out.confidence) if need_confidence else out.guesses
        seed = replacement_seed(cfg.seed, update_num, _data_parallel_rank(), micro)
        generator = torch.Generator(device=prev.device)
        generator.manual_seed(seed)
        corruption = corrupt_decoder_input(
            prev,
            pad=self.target_dictionary.pad(),
            sample_prob=p_s,
            token_prob=cfg.replace_token_prob,
            pool=pool,
            src_tokens=net_input.get("src_tokens"),
            vocab_range=self.vocab_range,
            generator=generator,
            model_guesses=guesses,
            position_schedule=str(cfg.replace_position_schedule),
            position_constant=cfg.replace_position_constant,
            confidence_threshold=threshold if pool == "model" else 0.0,
            random_above=above if pool == "model" else 0.0,
            random_pool=str(cfg.replace_random_pool),
            protected=self.protected,
        )
        new_sample = dict(sample)
        new_sample["net_input"] = dict(net_input, prev_output_tokens=corruption.tokens)
        changed = changed_positions(prev, corruption).sum()
        teacher, mask = None, None
        if passes and passes[0].logits is not None:
            teacher = passes[0].logits
            mask = imitation_positions(prev, corruption.tokens, sample["target"], self.target_dictionary.pad())
        return CorruptedSample(new_sample, corruption.selected.sum(), changed, seed, teacher, mask)

    @property
    def imitation_weight(self) -> float:
        """The KL term's weight (``--replace-imitation-weight``; 0 unless the pool is ``model``)."""
        if str(self.replacement_cfg.replace_pool) != "model":
            return 0.0
        return float(self.replacement_cfg.replace_imitation_weight)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        # same autocast decision as fairseq's FairseqTask.train_step, for the model pool's guess pass
        corrupted = self.corrupt_sample(sample, update_num, model=model,
                                        autocast=isinstance(optimizer, AMPOptimizer))
        if self.imitation_weight > 0:
            # fairseq's train_step runs the criterion and the backward; the KL term joins the criterion's loss
            # inside it, so --amp autocast, ignore_grad and the backward apply to the sum
            criterion = ImitationLoss(criterion, self.imitation_weight, corrupted.teacher_logits,
                                      corrupted.imitation_mask)
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
        if logging_outputs and "imitation" in logging_outputs[0]:
            sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
            if sample_size > 0:  # in the loss column's units: bits per target token (ntokens) or per sentence
                total = sum(log.get("imitation", 0) for log in logging_outputs)
                metrics.log_scalar("imitation", float(total) / float(sample_size) / math.log(2), sample_size,
                                   round=3)


@register_task("translation_with_replacement", dataclass=TranslationWithReplacementConfig)
class TranslationWithReplacementTask(ReplacementTaskMixin, TranslationTask):
    """Translation whose training decoder input is corrupted (random tokens or the model's own guesses;
    docs/method.md §2, docs/schedules.md)."""

    cfg: TranslationWithReplacementConfig

    def __init__(self, cfg: TranslationWithReplacementConfig, src_dict, tgt_dict):
        self.check_replacement_options(cfg)
        super().__init__(cfg, src_dict, tgt_dict)
        self.setup_replacement(cfg)  # no protected ids: the draws of the original task, unchanged
