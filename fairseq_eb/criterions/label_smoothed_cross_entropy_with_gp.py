"""fairseq criterion ``label_smoothed_cross_entropy_with_gp``: label-smoothed CE + embedding gradient penalty.

Training minimises ``l + 0.5 * eps * ||dl/de||^2`` (``l`` = mean loss, ``e`` = the embedding lookups or
tables); returned in fairseq's summed units as ``L + N * 0.5 * eps * gp``. The derivation, the FGM
surrogate and why it agrees to ``O(eps^2)``, the fused output-layer gradient, the logged columns and the
data-parallel rules are in docs/method.md §3-§5. ``--gp-method auto`` takes ``exact`` for batches whose
padded source and target are at most 512 tokens long and ``fgm`` above, logging each choice once
(docs/gradient_penalty_attention.md).

Lazy penalty (``--gp-interval k``, Karras et al. 2020's lazy R1 regularisation): only updates whose number
is a multiple of ``k`` are penalised, with weight ``k * eps``; ``--gp-warmup-updates N`` ramps the weight
by ``min(1, u / N)``. Both depend only on the update number, so every micro-batch and rank agree
(docs/schedules.md). Data parallel: ``pytorch_ddp`` (fairseq's default), ``legacy_ddp`` and ``no_c10d`` give
the same gradients as one process (tested on 2 ranks; docs/ddp.md); ``fully_sharded`` and ``slowmo`` are
refused at setup with more than one worker.
"""
import math
from dataclasses import dataclass, field
from typing import Any, List, NamedTuple, Optional

import torch
from fairseq import utils
from fairseq.criterions import register_criterion
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
    label_smoothed_nll_loss,
)
from fairseq.dataclass import ChoiceEnum
from fairseq.logging import metrics
from fairseq.models.fairseq_decoder import FairseqDecoder
from fairseq.models.transformer.transformer_decoder import TransformerDecoderBase
from omegaconf import II

from fairseq_eb.choices import one_of
from fairseq_eb.criterions.config_options import build_from_config, resolve_options
from fairseq_eb.criterions.update_number import follow_update_number
from fairseq_eb.gradient_penalty import (
    GP_ATTENTIONS,
    GpMethodChoice,
    LookupCapture,
    SmoothedCEFeatureGrad,
    attention_for,
    embedding_modules,
    embedding_tables,
    exact_penalty,
    fgm_shifts,
    same_dropout_masks,
    substituted_parameters,
)
from fairseq_eb.option_errors import OptionError, check_at_setup, first_error

GP_OVER = ("lookups", "table")
GP_METHODS = ("exact", "fgm", "auto")
# fairseq's data-parallel backends under which the penalty's gradients equal one process's (docs/ddp.md):
# legacy_ddp/no_c10d all-reduce after the whole backward; PyTorch's DDP (pytorch_ddp/c10d) all-reduces from
# the parameters' gradient-accumulation hooks, which autograd.grad w.r.t. lookups/tables never fires, so
# they fire once, in the trainer's backward.
SAFE_DDP_BACKENDS = ("pytorch_ddp", "c10d", "legacy_ddp", "no_c10d")


@dataclass
class LabelSmoothedCrossEntropyWithGpCriterionConfig(LabelSmoothedCrossEntropyCriterionConfig):
    gp_epsilon: float = field(
        default=1.0,
        metadata={"help": "weight eps >= 0 of the gradient penalty: minimise mean loss + 0.5*eps*||d mean loss/de||^2 "
                  "(0 = plain label_smoothed_cross_entropy)"},
    )
    gp_over: ChoiceEnum(list(GP_OVER)) = field(
        default="lookups",
        metadata={"help": "penalise the gradient w.r.t. every embedding-lookup occurrence (encoder and decoder "
                  "input tokens; the reference) or w.r.t. the whole embedding weight table(s)"},
    )
    gp_method: ChoiceEnum(list(GP_METHODS)) = field(
        default="exact",
        metadata={"help": "'exact' = double backprop of the penalty; 'fgm' = its first-order adversarial surrogate: "
                  "loss at embeddings shifted by eps*gradient (gradient held constant), no double backward; "
                  "'auto' = exact for batches up to 512 tokens long, fgm above (docs/gradient_penalty_attention.md)"},
    )
    gp_attention: ChoiceEnum(list(GP_ATTENTIONS)) = field(
        default="auto",
        metadata={"help": "attention of the exact penalty's forward: 'blockwise' (memory linear in length, "
                  "fastest on CPUs), 'math' (PyTorch's plain attention, fastest on GPUs), 'auto' = math on CUDA, "
                  "blockwise elsewhere (docs/gradient_penalty_attention.md)"},
    )
    gp_interval: int = field(
        default=1,
        metadata={"help": "lazy penalty: penalise only updates whose number is a multiple of k >= 1, with weight "
                  "k*eps (1 = every update)"},
    )
    gp_warmup_updates: int = field(
        default=0,
        metadata={"help": "ramp the penalty weight linearly from 0 over this many updates (>= 0; 0 = no ramp)"},
    )
    ddp_backend: str = II("distributed_training.ddp_backend")
    distributed_world_size: int = II("distributed_training.distributed_world_size")
    fp16: bool = II("common.fp16")
    memory_efficient_fp16: bool = II("common.memory_efficient_fp16")


class PenalisedLoss(NamedTuple):
    """What one penalised forward returns (both methods)."""

    objective: torch.Tensor  # what the trainer's backward differentiates (summed scale)
    logged: torch.Tensor  # L + N * 0.5 * eps * gp, detached, for the `loss` column
    nll_loss: torch.Tensor  # the clean summed NLL
    gp: torch.Tensor  # ||dl/de||^2 of the batch mean, fp32
    net_output: Any  # the clean forward's output (for accuracy reporting)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def penalty_weight(gp_epsilon: float, update_num: int, interval: int = 1, warmup_updates: int = 0) -> float:
    """The penalty weight at ``update_num``: ``interval * eps`` (ramped) on every ``interval``-th update, else 0."""
    if update_num % interval != 0:
        return 0.0
    ramp = 1.0 if warmup_updates <= 0 else min(1.0, max(0, update_num) / warmup_updates)
    return interval * gp_epsilon * ramp


def gp_errors(cfg: Any) -> List[OptionError]:
    """The penalty options' refusal (the first found), naming the option, its value and the valid range.

    ``cfg``: anything with the fields of :class:`LabelSmoothedCrossEntropyWithGpCriterionConfig` (the criterion's
    options, a parsed fairseq namespace). Under ``--fp16`` or ``--memory-efficient-fp16`` (the whole model in
    float16, unlike ``--amp``) the exact penalty is refused: on an H200 it overflowed on about one update in ten
    whatever the loss scale, until fairseq stopped at its minimum loss scale (bench/RESULTS.md §7).
    """
    return first_error(lambda: _check(cfg))


def _check(cfg: Any) -> None:
    interval, warmup, eps = cfg.gp_interval, cfg.gp_warmup_updates, cfg.gp_epsilon
    if not _is_int(interval) or interval < 1:
        raise OptionError("--gp-interval", interval, "an integer >= 1")
    if not _is_int(warmup) or warmup < 0:
        raise OptionError("--gp-warmup-updates", warmup, "an integer >= 0")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (math.isfinite(eps) and eps >= 0):
        raise OptionError("--gp-epsilon", eps, "a finite number >= 0")
    for flag, value, choices in (("--gp-over", cfg.gp_over, GP_OVER), ("--gp-method", cfg.gp_method, GP_METHODS),
                                 ("--gp-attention", cfg.gp_attention, GP_ATTENTIONS)):
        if str(value) not in choices:
            raise OptionError(flag, str(value), f"one of {one_of(choices)}")
    method = str(cfg.gp_method)
    if (cfg.fp16 or cfg.memory_efficient_fp16) and eps > 0 and method != "fgm":
        raise OptionError(
            "--gp-method", method, "fgm under --fp16/--memory-efficient-fp16",
            f"--gp-method {method} (double backprop) does not train under --fp16/--memory-efficient-fp16: its "
            "second-order gradients overflow float16 whatever the loss scale; use --amp (mixed precision, checked) "
            "or --gp-method fgm (checked under --fp16)")
    world = int(cfg.distributed_world_size or 1)
    backend = None if cfg.ddp_backend is None else str(cfg.ddp_backend)
    if eps > 0 and world > 1 and backend not in SAFE_DDP_BACKENDS:
        raise OptionError(
            "--ddp-backend", backend, f"one of {one_of(SAFE_DDP_BACKENDS)} with --gp-epsilon > 0 on {world} workers",
            f"--criterion label_smoothed_cross_entropy_with_gp with --gp-epsilon > 0 does not support "
            f"--ddp-backend {backend} with {world} workers (tested: {', '.join(SAFE_DDP_BACKENDS)}); "
            f"use --ddp-backend pytorch_ddp or legacy_ddp")


@register_criterion("label_smoothed_cross_entropy_with_gp", dataclass=LabelSmoothedCrossEntropyWithGpCriterionConfig)
class LabelSmoothedCrossEntropyWithGpCriterion(LabelSmoothedCrossEntropyCriterion):
    """Label-smoothed cross-entropy plus the embedding gradient penalty; formulas in docs/method.md §3-§5."""

    # exact/lookups on fairseq's transformer head: differentiate the loss at the output layer with the
    # fused SmoothedCEFeatureGrad instead of autograd (less memory; same values). Tests switch it off.
    fuse_output_layer: bool = True

    config_class = LabelSmoothedCrossEntropyWithGpCriterionConfig
    build_criterion = classmethod(build_from_config)

    def __init__(self, task, sentence_avg, label_smoothing, ignore_prefix_size=0, report_accuracy=False, **options):
        super().__init__(task, sentence_avg, label_smoothing, ignore_prefix_size=ignore_prefix_size,
                         report_accuracy=report_accuracy)
        cfg = resolve_options(self.config_class, options)  # the dataclass's defaults for what is not given
        check_at_setup(gp_errors(cfg), "criterion")  # fairseq-hydra-train: one line, exit 2
        self.gp_attention = str(cfg.gp_attention)
        self.gp_epsilon = float(cfg.gp_epsilon)
        self.gp_over = str(cfg.gp_over)
        self.gp_method = str(cfg.gp_method)
        self._choose_method = GpMethodChoice(self.gp_method)
        self.gp_interval = int(cfg.gp_interval)
        self.gp_warmup_updates = int(cfg.gp_warmup_updates)
        self.num_updates: Optional[int] = None
        if self.gp_interval > 1 or self.gp_warmup_updates > 0:  # the lazy penalty decides per update
            follow_update_number(task, self, self.set_num_updates)

    # ---- the update number (lazy penalty, warm-up)

    def set_num_updates(self, num_updates: int) -> None:
        """The number of the update being computed (fairseq's ``update_num``)."""
        self.num_updates = int(num_updates)

    def current_weight(self) -> float:
        """The penalty weight of the current update (``eps`` when neither interval nor warm-up is set)."""
        if self.gp_interval == 1 and self.gp_warmup_updates == 0:
            return self.gp_epsilon
        if self.num_updates is None:
            raise RuntimeError("--gp-interval/--gp-warmup-updates need the update number: train through "
                               "task.train_step or call criterion.set_num_updates(update_num) first")
        return penalty_weight(self.gp_epsilon, self.num_updates, self.gp_interval, self.gp_warmup_updates)

    # ---- forward

    def penalty_applies(self, model, reduce: bool = True) -> bool:
        """Training-time only: needs gradients, a train-mode model, a summed loss and eps > 0."""
        return self.gp_epsilon > 0 and reduce and model.training and torch.is_grad_enabled()

    def forward(self, model, sample, reduce=True):
        sample_size = sample["target"].size(0) if self.sentence_avg else sample["ntokens"]
        if not self.penalty_applies(model, reduce):
            return super().forward(model, sample, reduce=reduce)
        weight = self.current_weight()
        if weight == 0 or sample_size == 0:  # not a penalised update, or no mean to penalise
            loss, sample_size, logging_output = super().forward(model, sample, reduce=reduce)
            # same keys on every micro-batch and rank (fairseq sums logging outputs key by key)
            logging_output.update(gp=0.0, gp_sample_size=0)
            return loss, sample_size, logging_output
        if self._choose_method(sample) == "exact":
            result = self._exact(model, sample, sample_size, weight)
        else:
            result = self._fgm(model, sample, sample_size, weight)
        logging_output = {
            "loss": result.logged,
            "nll_loss": result.nll_loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["target"].size(0),
            "sample_size": sample_size,
            # gp times sample_size, so that summing over workers/micro-batches gives a weighted mean.
            "gp": result.gp * sample_size,
            "gp_sample_size": sample_size,
        }
        if self.report_accuracy:
            n_correct, total = self.compute_accuracy(model, result.net_output, sample)
            logging_output["n_correct"] = utils.item(n_correct.data)
            logging_output["total"] = utils.item(total.data)
        return result.objective, sample_size, logging_output

    def _penalised(self, modules, capture: LookupCapture):
        return capture.outputs if self.gp_over == "lookups" else embedding_tables(modules)

    def _exact(self, model, sample, sample_size, eps: float) -> PenalisedLoss:
        modules = embedding_modules(model)
        fused = self.fuse_output_layer and self.gp_over == "lookups" and self._plain_output_layer(model)
        device = sample["net_input"]["src_tokens"].device
        with LookupCapture(modules) as capture, attention_for(self.gp_attention, device):
            if fused:
                features, extra = model(**sample["net_input"], features_only=True)
            else:
                net_output = model(**sample["net_input"])
        if not fused:
            loss, nll_loss = self.compute_loss(model, net_output, sample, reduce=True)
            penalty, gp = exact_penalty(loss, sample_size, self._penalised(modules, capture), eps)
            objective = loss + penalty
            return PenalisedLoss(objective, objective.detach(), nll_loss, gp, net_output)
        # Same loss as compute_loss, keeping lprobs for the fused first-order gradient at the output layer.
        net_output = (model.decoder.output_layer(features), extra)
        lprobs, target = self.get_lprobs_and_target(model, net_output, sample)
        loss, nll_loss = label_smoothed_nll_loss(lprobs, target, self.eps, ignore_index=self.padding_idx, reduce=True)
        flat = features.reshape(-1, features.size(-1))
        logits = net_output[0]
        grad_features = SmoothedCEFeatureGrad.apply(logits.reshape(-1, logits.size(-1)),
                                                    model.decoder.output_projection.weight, lprobs.detach(),
                                                    target, target.ne(self.padding_idx).to(lprobs.dtype), self.eps)
        penalty, gp = exact_penalty(flat, sample_size, capture.outputs, eps,
                                    grad_outputs=grad_features.to(flat.dtype))  # autocast may differ
        objective = loss + penalty
        return PenalisedLoss(objective, objective.detach(), nll_loss, gp, net_output)

    def _plain_output_layer(self, model) -> bool:
        """Whether the loss is fairseq's transformer head: log_softmax(features @ W^T), no bias/prefix."""
        decoder = getattr(model, "decoder", None)
        projection = getattr(decoder, "output_projection", None)
        return (
            isinstance(decoder, TransformerDecoderBase)
            and type(decoder).output_layer is TransformerDecoderBase.output_layer
            and type(decoder).get_normalized_probs_scriptable is FairseqDecoder.get_normalized_probs_scriptable
            and getattr(decoder, "adaptive_softmax", None) is None
            and type(projection) is torch.nn.Linear
            and projection.bias is None
            and self.ignore_prefix_size == 0
        )

    def _fgm(self, model, sample, sample_size, eps: float) -> PenalisedLoss:
        modules = embedding_modules(model)
        with same_dropout_masks(model), LookupCapture(modules) as capture:
            net_output = model(**sample["net_input"])
            loss, nll_loss = self.compute_loss(model, net_output, sample, reduce=True)
        wrt = self._penalised(modules, capture)
        shifts, gp = fgm_shifts(loss, sample_size, wrt, eps)
        if self.gp_over == "lookups":
            with LookupCapture(modules, shifts=shifts):
                perturbed_output = model(**sample["net_input"])
        else:
            with substituted_parameters(model, wrt, [t + r for t, r in zip(wrt, shifts)]):
                perturbed_output = model(**sample["net_input"])
        perturbed_loss, _ = self.compute_loss(model, perturbed_output, sample, reduce=True)
        logged = loss.detach() + 0.5 * eps * sample_size * gp
        return PenalisedLoss(perturbed_loss, logged, nll_loss.detach(), gp, net_output)

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)
        if not any("gp" in log for log in logging_outputs):
            return
        gp_sum = utils.item(sum(log.get("gp", 0) for log in logging_outputs))
        # penalised batches only (lazy penalty); older logging outputs lack the key: all were penalised
        sample_size = utils.item(sum(log.get("gp_sample_size", log.get("sample_size", 0)) for log in logging_outputs))
        if sample_size > 0:
            metrics.log_scalar("gp", gp_sum / sample_size, sample_size, round=5)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
