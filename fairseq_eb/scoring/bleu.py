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
from typing import Sequence


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def sentence_bleu(hyp: Sequence[str], ref: Sequence[str], max_n: int = 4, epsilon: float = 0.1) -> float:
    """BLEU of one tokenised hypothesis against one tokenised reference, in [0, 1]."""
    log_sum = 0.0
    for n in range(1, max_n + 1):
        hyp_counts, ref_counts = _ngrams(hyp, n), _ngrams(ref, n)
        matches = sum(min(c, ref_counts[g]) for g, c in hyp_counts.items())
        total = max(1, sum(hyp_counts.values()))
        if matches == 0:
            if n == 1:
                return 0.0
            log_sum += math.log(epsilon / total)
        else:
            log_sum += math.log(matches / total)
    h, r = len(hyp), len(ref)
    brevity = 1.0 if h > r else math.exp(1 - r / h)
    return brevity * math.exp(log_sum / max_n)
