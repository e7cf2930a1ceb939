"""Sentence-level BLEU-4 with nltk's ``SmoothingFunction().method1`` semantics, without nltk.

The reference averages ``nltk.translate.bleu_score.sentence_bleu(..., smoothing_function=method1)``
over sentences. Reproduced exactly (nltk is only a test dependency): clipped n-gram precision
``m_n / max(1, c_n)`` with ``c_n`` the hypothesis' n-gram count; a zero ``m_n`` becomes
``epsilon / max(1, c_n)``; the score is 0 when no unigram matches (so an empty hypothesis gets
0); brevity penalty 1 if the hypothesis is longer than the reference, else ``exp(1 - r/h)``;
uniform weights, no re-weighting for short hypotheses (nltk's ``auto_reweigh=False``).
"""
import math
from collections import Counter
from typing import List, Sequence


def ngram_counts(tokens: Sequence[str], max_n: int = 4) -> List[Counter]:
    """``[Counter of 1-grams, ..., Counter of max_n-grams]`` (n-grams as tuples)."""
    return [Counter(zip(*(tokens[i:] for i in range(n)))) for n in range(1, max_n + 1)]


def overlap(hyp: Counter, ref: Counter) -> int:
    """Clipped matches: ``sum_g min(hyp[g], ref[g])``."""
    if len(hyp) > len(ref):
        hyp, ref = ref, hyp
    return sum(min(c, ref[g]) for g, c in hyp.items() if g in ref)


def bleu_from_counts(hyp_counts: Sequence[Counter], ref_counts: Sequence[Counter], hyp_len: int, ref_len: int,
                     epsilon: float = 0.1) -> float:
    """BLEU from precomputed :func:`ngram_counts` (shared with ROUGE-1/2 by the scorer), in [0, 1]."""
    log_sum = 0.0
    for n, (h, r) in enumerate(zip(hyp_counts, ref_counts), start=1):
        matches = overlap(h, r)
        total = max(1, sum(h.values()))
        if matches == 0:
            if n == 1:
                return 0.0
            log_sum += math.log(epsilon / total)
        else:
            log_sum += math.log(matches / total)
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return brevity * math.exp(log_sum / len(hyp_counts))


def sentence_bleu(hyp: Sequence[str], ref: Sequence[str], max_n: int = 4, epsilon: float = 0.1) -> float:
    """BLEU of one tokenised hypothesis against one tokenised reference, in [0, 1]."""
    return bleu_from_counts(ngram_counts(hyp, max_n), ngram_counts(ref, max_n), len(hyp), len(ref), epsilon)
