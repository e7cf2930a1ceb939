"""Scoring as in the reference experiment (docs/method.md §6): ROUGE-1/2/L, mean sentence BLEU-4, corpus sacreBLEU.

``score(hyps, refs, tokenize)`` computes the metrics; ``read_generate_output`` reads
``fairseq-generate`` output; ``fairseq-eb-score`` (:mod:`fairseq_eb.scoring.cli`) is the command.
"""
from fairseq_eb.scoring.bleu import sentence_bleu
from fairseq_eb.scoring.generate_output import read_generate_hypotheses, read_generate_output
from fairseq_eb.scoring.metrics import METRIC_TITLES, REFERENCE_METRICS, rouge_l_per_sentence, score
from fairseq_eb.scoring.tokenize import TOKENIZE_MODES, tokenize

__all__ = ["score", "rouge_l_per_sentence", "read_generate_output", "read_generate_hypotheses", "sentence_bleu",
           "tokenize", "TOKENIZE_MODES", "METRIC_TITLES", "REFERENCE_METRICS"]
