"""fairseq criterion ``label_smoothed_cross_entropy_with_gp``: label-smoothed CE + embedding gradient penalty.

Training minimises ``l + 0.5 * eps * ||dl/de||^2`` (``l`` = mean loss, ``e`` = the embedding lookups or
tables); returned in fairseq's summed units as ``L + N * 0.5 * eps * gp``. The derivation, the FGM
surrogate and why it agrees to ``O(eps^2)``, the fused output-layer gradient, the logged columns and the
data-parallel rules are in docs/method.md §3-§5. ``--gp-method auto`` takes ``exact`` for batches whose
padded source and target are at most 512 tokens long and ``fgm`` above, logging each choice once
(docs/gradient_penalty_attention.md).
"""
import math
from dataclasses import dataclass, field
from typing import Any, Tuple

import torch
from omegaconf import II
from fairseq import utils
from fairseq.criterions import register_criterion
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
    label_smoothed_nll_loss,
)
from fairseq.models.fairseq_decoder import FairseqDecoder
from fairseq.models.transformer.transformer_decoder import TransformerDecoderBase
from fairseq.dataclass import ChoiceEnum
from fairseq.logging import metrics

from fairseq_eb.gradient_penalty import (
    GpMethodChoice,
    LookupCapture,
    SmoothedCEFeatureGrad,
    double_backward_safe_attention,
    embedding_modules,
    embedding_tables,
    exact_penalty,
    fgm_shifts,
    same_dropout_masks,
    substituted_parameters,
)

GP_OVER = ("lookups", "table")
GP_METHODS = ("exact", "fgm", "auto")
# fairseq's data-parallel wrappers that all-reduce gradients *after* the whole backward, so double
# backprop sees a plain module. PyTorch's DistributedDataParallel does not support create_graph.
SAFE_DDP_BACKENDS = ("legacy_ddp", "no_c10d")


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
    ddp_backend: str = II("distributed_training.ddp_backend")
    distributed_world_size: int = II("distributed_training.distributed_world_size")


def validate_gp_options(gp_epsilon: Any, gp_over: Any, gp_method: Any, ddp_backend: Any = None,
                        distributed_world_size: Any = 1) -> None:
    """Reject bad options at setup, naming the option and its valid range."""
    if isinstance(gp_epsilon, bool) or not isinstance(gp_epsilon, (int, float)) or not (
        math.isfinite(gp_epsilon) and gp_epsilon >= 0
    ):
        raise ValueError(f"--gp-epsilon must be a finite number >= 0, got {gp_epsilon!r}")
    if str(gp_over) not in GP_OVER:
        raise ValueError(f"--gp-over must be one of {{{', '.join(GP_OVER)}}}, got {str(gp_over)!r}")
    if str(gp_method) not in GP_METHODS:
        raise ValueError(f"--gp-method must be one of {{{', '.join(GP_METHODS)}}}, got {str(gp_method)!r}")
    world = int(distributed_world_size or 1)
    backend = None if ddp_backend is None else str(ddp_backend)
    if gp_epsilon > 0 and world > 1 and backend not in SAFE_DDP_BACKENDS:
        raise ValueError(
            f"--criterion label_smoothed_cross_entropy_with_gp with --gp-epsilon > 0 does not support "
            f"--ddp-backend {backend} with {world} workers (PyTorch DistributedDataParallel does not support "
            f"the penalty's extra backward passes); use --ddp-backend legacy_ddp"
        )


@register_criterion("label_smoothed_cross_entropy_with_gp", dataclass=LabelSmoothedCrossEntropyWithGpCriterionConfig)
class LabelSmoothedCrossEntropyWithGpCriterion(LabelSmoothedCrossEntropyCriterion):
    """Label-smoothed cross-entropy plus the embedding gradient penalty; formulas in docs/method.md §3-§5."""

    # exact/lookups on fairseq's transformer head: differentiate the loss at the output layer with the
    # fused SmoothedCEFeatureGrad instead of autograd (less memory; same values). Tests switch it off.
    fuse_output_layer: bool = True

    def __init__(self, task, sentence_avg, label_smoothing, ignore_prefix_size=0, report_accuracy=False,
                 gp_epsilon=1.0, gp_over="lookups", gp_method="exact", ddp_backend=None, distributed_world_size=1):
        super().__init__(task, sentence_avg, label_smoothing, ignore_prefix_size=ignore_prefix_size,
                         report_accuracy=report_accuracy)
        validate_gp_options(gp_epsilon, gp_over, gp_method, ddp_backend, distributed_world_size)
        self.gp_epsilon = float(gp_epsilon)
        self.gp_over = str(gp_over)
        self.gp_method = str(gp_method)
        self._choose_method = GpMethodChoice(self.gp_method)

    def penalty_applies(self, model, reduce: bool = True) -> bool:
        """Training-time only: needs gradients, a train-mode model, a summed loss and eps > 0."""
        return self.gp_epsilon > 0 and reduce and model.training and torch.is_grad_enabled()

    def forward(self, model, sample, reduce=True):
        sample_size = sample["target"].size(0) if self.sentence_avg else sample["ntokens"]
        if not self.penalty_applies(model, reduce) or sample_size == 0:  # no mean to penalise
            return super().forward(model, sample, reduce=reduce)
        if self._choose_method(sample) == "exact":
            loss, nll_loss, penalty, gp, net_output = self._exact(model, sample, sample_size)
            objective = loss + penalty
            logged_objective = objective.data
        else:
            objective, loss, nll_loss, gp, net_output = self._fgm(model, sample, sample_size)
            logged_objective = loss.data + 0.5 * self.gp_epsilon * sample_size * gp
        logging_output = {
            "loss": logged_objective,
            "nll_loss": nll_loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["target"].size(0),
            "sample_size": sample_size,
            # gp times sample_size, so that summing over workers/micro-batches gives a weighted mean.
            "gp": gp * sample_size,
        }
        if self.report_accuracy:
            n_correct, total = self.compute_accuracy(model, net_output, sample)
            logging_output["n_correct"] = utils.item(n_correct.data)
            logging_output["total"] = utils.item(total.data)
        return objective, sample_size, logging_output

    def _penalised(self, modules, capture: LookupCapture):
        return capture.outputs if self.gp_over == "lookups" else embedding_tables(modules)

    def _exact(self, model, sample, sample_size) -> Tuple[torch.Tensor, ...]:
        modules = embedding_modules(model)
        fused = self.fuse_output_layer and self.gp_over == "lookups" and self._plain_output_layer(model)
        with LookupCapture(modules) as capture, double_backward_safe_attention():
            if fused:
                features, extra = model(**sample["net_input"], features_only=True)
            else:
                net_output = model(**sample["net_input"])
        if not fused:
            loss, nll_loss = self.compute_loss(model, net_output, sample, reduce=True)
            penalty, gp = exact_penalty(loss, sample_size, self._penalised(modules, capture), self.gp_epsilon)
            return loss, nll_loss, penalty, gp, net_output
        # Same loss as compute_loss, keeping lprobs for the fused first-order gradient at the output layer.
        net_output = (model.decoder.output_layer(features), extra)
        lprobs, target = self.get_lprobs_and_target(model, net_output, sample)
        loss, nll_loss = label_smoothed_nll_loss(lprobs, target, self.eps, ignore_index=self.padding_idx, reduce=True)
        flat = features.reshape(-1, features.size(-1))
        logits = net_output[0]
        grad_features = SmoothedCEFeatureGrad.apply(logits.reshape(-1, logits.size(-1)),
                                                    model.decoder.output_projection.weight, lprobs.detach(),
                                                    target, target.ne(self.padding_idx).to(lprobs.dtype), self.eps)
        penalty, gp = exact_penalty(flat, sample_size, capture.outputs, self.gp_epsilon,
                                    grad_outputs=grad_features.to(flat.dtype))  # autocast may differ
        return loss, nll_loss, penalty, gp, net_output

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

    def _fgm(self, model, sample, sample_size) -> Tuple[torch.Tensor, ...]:
        modules = embedding_modules(model)
        with same_dropout_masks(model), LookupCapture(modules) as capture:
            net_output = model(**sample["net_input"])
            loss, nll_loss = self.compute_loss(model, net_output, sample, reduce=True)
        wrt = self._penalised(modules, capture)
        shifts, gp = fgm_shifts(loss, sample_size, wrt, self.gp_epsilon)
        if self.gp_over == "lookups":
            with LookupCapture(modules, shifts=shifts):
                perturbed_output = model(**sample["net_input"])
        else:
            with substituted_parameters(model, wrt, [t + r for t, r in zip(wrt, shifts)]):
                perturbed_output = model(**sample["net_input"])
        perturbed_loss, _ = self.compute_loss(model, perturbed_output, sample, reduce=True)
        return perturbed_loss, loss.detach(), nll_loss.detach(), gp, net_output

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)
        if not any("gp" in log for log in logging_outputs):
            return
        gp_sum = utils.item(sum(log.get("gp", 0) for log in logging_outputs))
        sample_size = utils.item(sum(log.get("sample_size", 0) for log in logging_outputs))
        if sample_size > 0:
            metrics.log_scalar("gp", gp_sum / sample_size, sample_size, round=5)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
