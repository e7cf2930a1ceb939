"""ROUGE-1/2/L F1 of one sentence pair, with rouge-score's definitions but none of its start-up cost.

Why our own: importing rouge-score pulls in nltk and absl (about 2 s per process), more than scoring
10,000 sentences takes. Definitions (those of ``rouge_score.rouge_scorer``, checked against it in the
tests): ROUGE-N precision = clipped n-gram overlap / hypothesis n-grams (at least 1), recall = overlap /
reference n-grams (at least 1); ROUGE-L uses the longest common subsequence, precision = LCS /
hypothesis length, recall = LCS / reference length, 0 when either is empty; F1 = 2PR / (P + R), 0 when
P + R = 0.
"""
from collections import Counter
from typing import Sequence

from fairseq_eb.scoring.bleu import overlap


def f1(matches: int, hyp_total: int, ref_total: int) -> float:
    """rouge-score's F-measure from a match count and the two totals."""
    precision = matches / max(hyp_total, 1)
    recall = matches / max(ref_total, 1)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def rouge_n(hyp: Counter, ref: Counter) -> float:
    """ROUGE-N F1 from the two sentences' n-gram counts."""
    return f1(overlap(hyp, ref), sum(hyp.values()), sum(ref.values()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, bit-parallel (Hyyrö 2004): one big-int step per token of ``b``.

    Bit ``i`` of ``v`` is 0 where row ``i`` of the classic LCS table steps up; the LCS is the number of 0s.
    """
    if not a or not b:
        return 0
    masks: dict = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for token in b:
        u = v & masks.get(token, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - bin(v).count("1")


def rouge_l(hyp: Sequence[str], ref: Sequence[str]) -> float:
    """ROUGE-L F1 (sentence-level LCS)."""
    if not hyp or not ref:
        return 0.0
    return f1(lcs_length(hyp, ref), len(hyp), len(ref))
