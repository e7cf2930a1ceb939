"""fairseq criteria ``sequence_risk`` and ``sequence_ranking``: train on whole sequences the model generates.

Per training batch: K candidates per source from the model itself (beam search or sampling, eval mode, no
gradient; :mod:`fairseq_eb.sequence.candidates`), each with the cost ``1 - metric/100`` against the reference
(sentence ROUGE-L or smoothed sentence BLEU on token ids; :mod:`fairseq_eb.sequence.costs`), then one
teacher-forced forward with gradient over the gold target and all K candidates together (the encoder input
repeated; one ``model(...)`` call, so every data-parallel wrapper sees an ordinary forward). The objective is

    (1 - A) * label-smoothed CE of the gold target  +  A * sequence loss,

with A = ``--seq-combined-loss-alpha``; the sequence loss is the expected risk (Shen et al. 2016) or BRIO's
margin ranking (Liu et al. 2022), per sentence (:mod:`fairseq_eb.sequence.losses`; definitions in
docs/method.md §8). fairseq divides by the sample size (target tokens), so the sequence term is scaled by
tokens/sentences: the update then mixes the mean token CE and the mean per-sentence sequence loss by A.
Validation reports the plain loss. Log columns ``seq_loss`` (per sentence), ``seq_cost`` (mean candidate cost),
``cand_len`` (mean candidate length in tokens, EOS included).
"""

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

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
from omegaconf import II

from fairseq_eb.choices import one_of
from fairseq_eb.corruption import replacement_seed
from fairseq_eb.criterions.config_options import build_from_config, resolve_options
from fairseq_eb.criterions.update_number import follow_update_number
from fairseq_eb.option_errors import OptionError, check_at_setup, first_error
from fairseq_eb.sequence import candidates as cand
from fairseq_eb.sequence.costs import METRICS, sequence_cost
from fairseq_eb.sequence.losses import length_normalised, ranking_loss, risk_loss


@dataclass
class SequenceCriterionConfig(LabelSmoothedCrossEntropyCriterionConfig):
    seq_beam: int = field(default=4, metadata={"help": "K >= 1 candidates per source, decoded by the model itself "
                                                       "(beam size, or number of samples with --seq-sampling)"})
    seq_sampling: bool = field(default=False, metadata={"help": "sample the K candidates instead of beam search"})
    seq_sampling_topk: int = field(default=-1, metadata={
        "help": "with --seq-sampling: sample from the k most likely tokens only (-1 = all)"})
    seq_temperature: float = field(default=1.0, metadata={
        "help": "with --seq-sampling: temperature > 0 of the sampled distribution"})
    seq_max_len_a: float = field(default=0.0, metadata={
        "help": "candidates have at most a*source_length + b tokens (fairseq-generate's --max-len-a)"})
    seq_max_len_b: int = field(default=200, metadata={"help": "see --seq-max-len-a (fairseq-generate's --max-len-b)"})
    seq_metric: ChoiceEnum(list(METRICS)) = field(default="rouge_l", metadata={
        "help": "candidate cost = 1 - metric/100 against the reference, on token ids: sentence ROUGE-L F1 or "
                "smoothed sentence BLEU-4"})
    seq_combined_loss_alpha: float = field(default=0.5, metadata={
        "help": "A in [0, 1]: objective = (1-A) * token CE + A * sequence loss (Edunov et al. 2018's name)"})
    seq_include_reference: bool = field(default=False, metadata={
        "help": "add the reference as one more candidate (cost 0)"})
    seed: int = II("common.seed")


@dataclass
class SequenceRiskConfig(SequenceCriterionConfig):
    seq_risk_scale: float = field(default=1.0, metadata={
        "help": "sharpness alpha > 0 of the candidate distribution q ~ p(y|x)^alpha (Shen et al. 2016)"})


@dataclass
class SequenceRankingConfig(SequenceCriterionConfig):
    seq_rank_margin: float = field(default=0.001, metadata={
        "help": "margin >= 0 per rank of difference between two candidates' normalised scores (BRIO)"})
    seq_length_penalty: float = field(default=1.0, metadata={
        "help": "candidates are ranked on log p(y|x) / |y|^penalty (>= 0; BRIO used 1-2)"})


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def sequence_errors(cfg: Any) -> List[OptionError]:
    """The sequence criteria's refusal (the first found), naming the option, its value and the valid range.

    ``cfg``: anything with the fields of :class:`SequenceRiskConfig` or :class:`SequenceRankingConfig` (the
    criterion's options, a parsed fairseq namespace); each criterion's own options are checked where present.
    """
    return first_error(lambda: _check(cfg))


def _check(cfg: Any) -> None:
    beam, alpha, metric = cfg.seq_beam, cfg.seq_combined_loss_alpha, str(cfg.seq_metric)
    topk, temperature, len_a, len_b = cfg.seq_sampling_topk, cfg.seq_temperature, cfg.seq_max_len_a, cfg.seq_max_len_b
    if not isinstance(beam, int) or isinstance(beam, bool) or beam < 1:
        raise OptionError("--seq-beam", beam, "an integer >= 1 (candidates per source)")
    if not _number(alpha) or not 0 <= alpha <= 1:
        raise OptionError("--seq-combined-loss-alpha", alpha, "in [0, 1]")
    if metric not in METRICS:
        raise OptionError("--seq-metric", metric, f"one of {one_of(METRICS)}")
    if not _number(temperature) or temperature <= 0:
        raise OptionError("--seq-temperature", temperature, "a number > 0")
    if not isinstance(topk, int) or topk == 0 or topk < -1:
        raise OptionError("--seq-sampling-topk", topk, "-1 (all tokens) or an integer >= 1")
    if not cfg.seq_sampling and (topk != -1 or temperature != 1.0):
        given, value = ("--seq-sampling-topk", topk) if topk != -1 else ("--seq-temperature", temperature)
        raise OptionError(given, value, "its default without --seq-sampling",
                          f"{given} applies to sampled candidates only; add --seq-sampling or leave it out")
    if not _number(len_a) or len_a < 0 or not isinstance(len_b, int) or len_b < 0 or (len_a == 0 and len_b < 1):
        raise OptionError("--seq-max-len-a/--seq-max-len-b", (len_a, len_b), ">= 0 and allow at least one token",
                          f"--seq-max-len-a/--seq-max-len-b must be >= 0 and allow at least one token, got "
                          f"{len_a!r} and {len_b!r}")
    for flag, name, valid, ok in (("--seq-risk-scale", "seq_risk_scale", "a number > 0", lambda v: v > 0),
                                  ("--seq-rank-margin", "seq_rank_margin", "a number >= 0", lambda v: v >= 0),
                                  ("--seq-length-penalty", "seq_length_penalty", "a number >= 0", lambda v: v >= 0)):
        if hasattr(cfg, name):  # the option of one criterion only
            value = getattr(cfg, name)
            if not _number(value) or not ok(value):
                raise OptionError(flag, value, valid)


class SequenceCriterionBase(LabelSmoothedCrossEntropyCriterion):
    """The candidate machinery shared by both criteria; subclasses define :meth:`sequence_loss`.

    Built from the criterion's dataclass (``config_class``): options not given take its defaults.
    """

    config_class: Any = SequenceCriterionConfig
    build_criterion = classmethod(build_from_config)

    def __init__(self, task, sentence_avg, label_smoothing, ignore_prefix_size=0, report_accuracy=False, **options):
        super().__init__(task, sentence_avg, label_smoothing, ignore_prefix_size=ignore_prefix_size,
                         report_accuracy=report_accuracy)
        cfg = resolve_options(self.config_class, options)
        check_at_setup(sequence_errors(cfg), "criterion")  # fairseq-hydra-train: one line, exit 2
        self.options = cand.CandidateOptions(int(cfg.seq_beam), bool(cfg.seq_sampling), int(cfg.seq_sampling_topk),
                                             float(cfg.seq_temperature), float(cfg.seq_max_len_a),
                                             int(cfg.seq_max_len_b))
        self.metric = str(cfg.seq_metric)
        self.alpha = float(cfg.seq_combined_loss_alpha)
        self.include_reference = bool(cfg.seq_include_reference)
        self.seed = int(cfg.seed)
        self.tgt_dict = task.target_dictionary
        self._generator: Optional[Any] = None
        self._generator_model: Optional[int] = None
        self.num_updates = 0
        self._micro = (-1, -1)  # (update, index within it)
        follow_update_number(task, self, self.set_num_updates)
        self.setup_sequence_loss(cfg)

    def setup_sequence_loss(self, cfg: Any) -> None:
        """Read the subclass's own options from the resolved ``cfg``."""

    def set_num_updates(self, num_updates: int) -> None:
        """The number of the update being computed (seeds of sampled candidates)."""
        self.num_updates = int(num_updates)


    def _draw_seed(self) -> Optional[int]:
        """(--seed, update, rank, micro-batch) for a sampling search; beam search draws nothing."""
        if not self.options.sampling:
            return None
        update, index = self._micro
        self._micro = (self.num_updates, index + 1 if update == self.num_updates else 0)
        from fairseq.distributed import utils as distributed_utils

        try:
            rank = distributed_utils.get_data_parallel_rank()
        except Exception:  # no process group: one process
            rank = 0
        return replacement_seed(self.seed, self.num_updates, rank, self._micro[1])

    # ---- forward

    def _generator_for(self, model) -> Any:
        if self._generator is None or self._generator_model != id(model):
            self._generator = cand.build_generator(model, self.tgt_dict, self.options, self.task)
            self._generator_model = id(model)
        return self._generator

    def _protected(self) -> torch.Tensor:
        """Structure symbols, compared by no cost: BOS/EOS/PAD and what the task protects (language tags,
        ``<mask>``: fairseq_eb.tasks.protected_symbols)."""
        own = getattr(self.task, "protected", None)
        base = torch.tensor([self.tgt_dict.bos(), self.tgt_dict.eos(), self.padding_idx])
        return base if own is None else torch.unique(torch.cat([base, own.cpu()]))

    def sequence_loss(self, scores: torch.Tensor, lengths: torch.Tensor, costs: torch.Tensor,
                      mask: torch.Tensor) -> torch.Tensor:
        """(B,) sequence loss from candidate log-probabilities (B, K), lengths, costs and validity."""
        raise NotImplementedError

    def forward(self, model, sample, reduce=True):
        if not (model.training and torch.is_grad_enabled() and reduce):
            return super().forward(model, sample, reduce=reduce)  # validation: the plain loss
        pad, eos = self.padding_idx, self.tgt_dict.eos()
        target = sample["target"]
        protected = self._protected()
        found = cand.decode(model, self._generator_for(model), sample, self.options.beam, pad, eos, self._draw_seed(),
                            cand.forced_prefix(target, protected))
        b, k = found.mask.shape
        tokens, lengths, mask = found.tokens, found.lengths, found.mask
        ref_len = target.ne(pad).sum(1)
        if self.include_reference:
            tokens, lengths, mask, k = self._with_reference(found, target, ref_len, pad)
        net_input = sample["net_input"]
        prev_gold = net_input["prev_output_tokens"]
        prev_cand = cand.shifted(tokens, lengths, prev_gold[:, 0].repeat_interleave(k), pad)
        width = max(prev_gold.size(1), prev_cand.size(1))
        prev = torch.cat([_pad_to(prev_gold, width, pad), _pad_to(prev_cand, width, pad)])
        sources = torch.arange(b, device=prev.device)
        rows = torch.cat([sources, sources.repeat_interleave(k)])  # gold rows, then K candidate rows per source
        net_output = _teacher_forced(model, net_input, prev, rows)
        lprobs = model.get_normalized_probs(net_output, log_probs=True)
        gold_lprobs = lprobs[:b, :prev_gold.size(1)]
        gold_out = (net_output[0][:b, :prev_gold.size(1)], net_output[1])
        token_loss, nll_loss = label_smoothed_nll_loss(
            gold_lprobs.reshape(-1, gold_lprobs.size(-1)), target.reshape(-1), self.eps, ignore_index=pad, reduce=True)
        cand_lprobs = lprobs[b:, :tokens.size(1)]
        token_lp = cand_lprobs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).masked_fill(tokens.eq(pad), 0.0)
        scores = token_lp.float().sum(1).view(b, k)
        with torch.no_grad():
            hyp, hyp_len = cand.content(tokens, lengths, protected)
            ref, ref_content = cand.content(target, ref_len, protected)
            costs = sequence_cost(self.metric, hyp, ref.repeat_interleave(k, 0), hyp_len,
                                  ref_content.repeat_interleave(k)).view(b, k).to(scores.dtype)
        per_sentence = self.sequence_loss(scores, lengths.view(b, k), costs, mask)
        seq_sum = per_sentence.sum()
        ntokens = sample["ntokens"]
        sample_size = target.size(0) if self.sentence_avg else ntokens
        scale = sample_size / max(b, 1)
        objective = (1.0 - self.alpha) * token_loss + self.alpha * scale * seq_sum.to(token_loss.dtype)
        with torch.no_grad():
            m = mask.to(costs.dtype)
            valid = m.sum(1).clamp(min=1)
            mean_cost = ((costs * m).sum(1) / valid).sum()
            mean_len = ((lengths.view(b, k).to(costs.dtype) * m).sum(1) / valid).sum()
        logging_output = {
            "loss": objective.data, "nll_loss": nll_loss.data, "ntokens": ntokens, "nsentences": b,
            "sample_size": sample_size, "seq_loss": seq_sum.data, "seq_cost": mean_cost, "cand_len": mean_len,
            "seq_sentences": b,
        }
        if self.report_accuracy:
            n_correct, total = self.compute_accuracy(model, gold_out, sample)
            logging_output["n_correct"] = utils.item(n_correct.data)
            logging_output["total"] = utils.item(total.data)
        return objective, sample_size, logging_output

    def _with_reference(self, found: cand.Candidates, target: torch.Tensor, ref_len: torch.Tensor, pad: int):
        """The K candidates plus the reference (target ends with EOS, as candidates do) as candidate K + 1."""
        b, k = found.mask.shape
        width = max(found.tokens.size(1), target.size(1))
        tokens = torch.cat([_pad_to(found.tokens, width, pad).view(b, k, width),
                            _pad_to(target, width, pad).unsqueeze(1)], 1).view(b * (k + 1), width)
        lengths = torch.cat([found.lengths.view(b, k), ref_len.unsqueeze(1)], 1).view(-1)
        mask = torch.cat([found.mask, torch.ones(b, 1, dtype=torch.bool, device=found.mask.device)], 1)
        return tokens, lengths, mask, k + 1

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)
        sentences = sum(log.get("seq_sentences", 0) for log in logging_outputs)
        if sentences:
            for key, digits in (("seq_loss", 4), ("seq_cost", 4), ("cand_len", 2)):
                total = sum(float(log.get(key, 0)) for log in logging_outputs)
                metrics.log_scalar(key, total / sentences, sentences, round=digits)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True


def _encoder_reusable(model) -> bool:
    """A bare fairseq transformer (BART included): its encoder can run once per source and its output be
    repeated for the K + 1 decoder rows. A data-parallel wrapper needs its own ``forward`` to be called (PyTorch
    DDP prepares its gradient all-reduce there), so a wrapped model takes the joint path."""
    from fairseq.models.transformer import TransformerModelBase

    return isinstance(model, TransformerModelBase)


def _teacher_forced(model, net_input: Dict[str, Any], prev: torch.Tensor, rows: torch.Tensor):
    """The decoder output for ``prev`` (gold rows, then candidate rows), row ``i`` decoding source ``rows[i]``.

    Same values either way (up to dropout masks): the encoder once with its output repeated (bare transformers:
    the encoder then costs one pass instead of K + 1), or one ``model(...)`` call on the repeated source."""
    b = net_input["src_tokens"].size(0)
    if _encoder_reusable(model):
        encoder_out = model.encoder(net_input["src_tokens"], src_lengths=net_input["src_lengths"])
        expanded = model.encoder.reorder_encoder_out(encoder_out, rows)
        return model.decoder(prev, encoder_out=expanded, src_lengths=net_input["src_lengths"].index_select(0, rows))
    joint = {key: (v.index_select(0, rows) if torch.is_tensor(v) and v.dim() > 0 and v.size(0) == b else v)
             for key, v in net_input.items() if key != "prev_output_tokens"}
    return model(**joint, prev_output_tokens=prev)


def _pad_to(tokens: torch.Tensor, width: int, pad: int) -> torch.Tensor:
    if tokens.size(1) >= width:
        return tokens
    return torch.cat([tokens, tokens.new_full((tokens.size(0), width - tokens.size(1)), pad)], 1)


@register_criterion("sequence_risk", dataclass=SequenceRiskConfig)
class SequenceRiskCriterion(SequenceCriterionBase):
    """Minimum risk training: the expected cost under the model's distribution renormalised over the candidates."""

    config_class = SequenceRiskConfig

    def setup_sequence_loss(self, cfg: Any) -> None:
        self.risk_scale = float(cfg.seq_risk_scale)

    def sequence_loss(self, scores, lengths, costs, mask):
        return risk_loss(scores, costs, mask, self.risk_scale)


@register_criterion("sequence_ranking", dataclass=SequenceRankingConfig)
class SequenceRankingCriterion(SequenceCriterionBase):
    """BRIO: candidates ordered by their metric must be ordered by length-normalised log-probability too."""

    config_class = SequenceRankingConfig

    def setup_sequence_loss(self, cfg: Any) -> None:
        self.margin = float(cfg.seq_rank_margin)
        self.length_penalty = float(cfg.seq_length_penalty)

    def sequence_loss(self, scores, lengths, costs, mask):
        normalised = length_normalised(scores, lengths.clamp(min=1).to(scores.dtype), self.length_penalty)
        return ranking_loss(normalised, costs, mask, self.margin)
