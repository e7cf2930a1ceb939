"""Scores that fit translation of long documents: sacreBLEU's BLEU and chrF, length, repetition, detachment.

Why beside :func:`fairseq_eb.scoring.score`: the reference experiment's metrics (ROUGE, mean sentence BLEU,
lower-cased) suit one-line titles; a translation is judged by corpus BLEU and chrF with sacreBLEU's standard
settings (cased, ``13a``; signatures reported), and a long output fails in ways a short one cannot: it loops
(repetition, over-long outputs) or drifts away from the source (a fluent text that is not its translation).
Corpus metrics are computed from per-sentence sufficient statistics so that paired bootstrap resampling of
the test set (:func:`corpus_bootstrap`) recomputes them exactly without re-tokenising. Definitions:
``docs/evaluating.md`` ("Translation scores").
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from fairseq_eb.diagnose.repetition import repeated_ngram_share

# An output counts as *detached* when its sentence chrF is below this: on the long regime's valid split an
# unrelated Italian description scores chrF 25 against a reference at the median, 29 at the 75th percentile (a
# copied English source 37): below 30, the output shares no more with its reference than another document does.
DETACHED_CHRF = 30.0
# An output counts as *over-long* when it has more than this many times its reference's words (a decoder looping).
OVERLONG_RATIO = 2.0
THIRDS = ("short", "medium", "long")


def _metrics():
    from sacrebleu.metrics import BLEU, CHRF

    return BLEU(), CHRF()


def sentence_stats(hyps: Sequence[str], refs: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """Per-sentence sufficient statistics of sacreBLEU's default BLEU ``(n, 10)`` and chrF ``(n, 18)``."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    bleu, chrf = _metrics()
    hyps, refs = list(hyps), [list(refs)]
    return (np.asarray(bleu._extract_corpus_statistics(hyps, refs), dtype=np.float64),
            np.asarray(chrf._extract_corpus_statistics(hyps, refs), dtype=np.float64))


def bleu_from_stats(sums: np.ndarray) -> np.ndarray:
    """Corpus BLEU × 100 of summed statistics ``(..., 10)`` = [hyp len, ref len, correct 1-4, total 1-4],
    vectorised over leading axes; sacreBLEU's default (``exp`` smoothing, which only matters at a zero count)."""
    s = np.asarray(sums, dtype=np.float64)
    sys_len, ref_len, correct, total = s[..., 0], s[..., 1], s[..., 2:6], s[..., 6:10]
    # exp smoothing: the k-th zero precision (k = 1, 2, ...) becomes 1 / (2^k * total)
    zero = (correct == 0) & (total > 0)
    k = np.cumsum(zero, axis=-1)
    safe_total = np.where(total > 0, total, 1.0)
    prec = np.where(zero, 1.0 / (np.power(2.0, k) * safe_total), correct / safe_total)
    log_prec = np.log(np.maximum(prec, 1e-300))
    bp = np.where(sys_len < ref_len, np.exp(1.0 - ref_len / np.maximum(sys_len, 1e-300)), 1.0)
    score = 100.0 * bp * np.exp(log_prec.sum(axis=-1) / 4.0)
    # sacreBLEU: 0 without any match, and 0 when an order has no n-gram at all (its precision stays 0)
    return np.where((sys_len > 0) & (total > 0).all(axis=-1) & (correct.sum(axis=-1) > 0), score, 0.0)


def chrf_from_stats(sums: np.ndarray, beta: float = 2.0, order: int = 6) -> np.ndarray:
    """Corpus chrF × 100 of summed statistics ``(..., 3 * order)`` = [hyp, ref, match] per character n-gram
    order, vectorised; sacreBLEU's default chrF (averaged precision and recall over the orders both sides have)."""
    s = np.asarray(sums, dtype=np.float64).reshape(*np.shape(sums)[:-1], order, 3)
    n_hyp, n_ref, n_match = s[..., 0], s[..., 1], s[..., 2]
    both = (n_hyp > 0) & (n_ref > 0)
    prec = np.where(both, n_match / np.where(n_hyp > 0, n_hyp, 1.0), 0.0)
    rec = np.where(both, n_match / np.where(n_ref > 0, n_ref, 1.0), 0.0)
    effective = both.sum(axis=-1)
    avg_p = np.where(effective > 0, prec.sum(axis=-1) / np.maximum(effective, 1), 0.0)
    avg_r = np.where(effective > 0, rec.sum(axis=-1) / np.maximum(effective, 1), 0.0)
    f = beta ** 2
    denom = f * avg_p + avg_r
    return np.where(denom > 0, 100.0 * (1 + f) * avg_p * avg_r / np.where(denom > 0, denom, 1.0), 0.0)


def signatures() -> Dict[str, str]:
    """sacreBLEU's signatures of the two corpus metrics, as it prints them (one reference)."""
    bleu, chrf = _metrics()
    bleu.corpus_score(["a"], [["a"]])  # the signature records the number of references it has seen
    chrf.corpus_score(["a"], [["a"]])
    return {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature())}


def length_thirds(refs: Sequence[str]) -> Tuple[np.ndarray, List[Tuple[int, int]]]:
    """Each sentence's third of the reference lengths in words (0 short, 1 medium, 2 long; cut at the 1/3 and
    2/3 quantiles of the split's own references, so every system decoding that split gets the same thirds) and
    the word range of each third."""
    words = np.array([len(r.split()) for r in refs])
    order = np.argsort(words, kind="stable")
    third = np.empty(len(refs), dtype=np.int64)
    for k, chunk in enumerate(np.array_split(order, 3)):
        third[chunk] = k
    ranges = [(int(words[third == k].min()), int(words[third == k].max())) if (third == k).any() else (0, 0)
              for k in range(3)]
    return third, ranges


def translation_scores(hyps: Sequence[str], refs: Sequence[str]) -> Dict[str, object]:
    """BLEU and chrF (sacreBLEU, cased), the length ratio, the repeated-4-gram share, the detached, over-long and
    hallucination shares (%), and BLEU/chrF per reference-length third, for one decoding of a split."""
    if not hyps:
        raise ValueError("nothing to score: no hypotheses")
    bleu_stats, chrf_stats = sentence_stats(hyps, refs)
    sentence_chrf = chrf_from_stats(chrf_stats)
    hyp_words = np.array([len(h.split()) for h in hyps])
    ref_words = np.array([len(r.split()) for r in refs])
    detached = sentence_chrf < DETACHED_CHRF
    overlong = hyp_words > OVERLONG_RATIO * ref_words
    third, ranges = length_thirds(refs)
    out: Dict[str, object] = {
        "bleu-cased": float(bleu_from_stats(bleu_stats.sum(axis=0))),
        "chrf": float(chrf_from_stats(chrf_stats.sum(axis=0))),
        "len-ratio": float(bleu_stats[:, 0].sum() / max(bleu_stats[:, 1].sum(), 1.0)),
        "repeat-4": 100.0 * repeated_ngram_share(list(hyps), 4, "word"),
        "detached": 100.0 * float(detached.mean()), "overlong": 100.0 * float(overlong.mean()),
        "halluc": 100.0 * float((detached | overlong).mean()),
        "signatures": signatures(),
    }
    for k, name in enumerate(THIRDS):
        rows = third == k
        out[f"bleu-cased/{name}"] = float(bleu_from_stats(bleu_stats[rows].sum(axis=0)))
        out[f"chrf/{name}"] = float(chrf_from_stats(chrf_stats[rows].sum(axis=0)))
        out[f"ref-words/{name}"] = list(ranges[k])
    return out


# metric -> (index in sentence_stats' pair, statistics per sentence, corpus score from summed statistics)
CORPUS_METRICS: Dict[str, Tuple[int, int, Callable[[np.ndarray], np.ndarray]]] = {
    "bleu-cased": (0, 10, bleu_from_stats), "chrf": (1, 18, chrf_from_stats)}


def corpus_bootstrap(method: Sequence[np.ndarray], reference: Sequence[np.ndarray], metric: str,
                     rows: Optional[np.ndarray] = None, samples: int = 1000, seed: int = 0) -> Dict[str, float]:
    """Paired bootstrap over test sentences of a corpus metric's seed-averaged difference (method − reference).

    ``method[s]`` / ``reference[s]``: seed ``s``'s per-sentence statistics (:func:`sentence_stats`, the array of
    ``metric``). Each resample draws sentence indices with replacement (the same for every seed and both systems),
    recomputes the corpus metric of each system on them and averages the per-seed differences (Koehn 2004).
    ``rows`` restricts to a subset of sentences (e.g. one length third). Same result keys as
    :func:`fairseq_eb.scoring.intervals.sentence_bootstrap`.
    """
    _, width, from_stats = CORPUS_METRICS[metric]
    m = np.stack([np.asarray(x) for x in method])
    r = np.stack([np.asarray(x) for x in reference])
    if m.shape != r.shape or m.ndim != 3:
        raise ValueError(f"method and reference need equal (seeds, sentences, stats) shapes, got {m.shape}, {r.shape}")
    if m.shape[2] != width:
        raise ValueError(f"{metric} needs {width} statistics per sentence, got {m.shape[2]}")
    if rows is not None:
        m, r = m[:, rows], r[:, rows]
    n = m.shape[1]
    observed = float((from_stats(m.sum(axis=1)) - from_stats(r.sum(axis=1))).mean())
    rng = np.random.default_rng(seed)
    diffs = np.empty(samples)
    for start in range(0, samples, 100):  # bounded memory: 100 resamples at a time
        stop = min(samples, start + 100)
        weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(stop - start)])
        sm = np.einsum("bn,snk->bsk", weights, m)  # (resamples, seeds, stats)
        sr = np.einsum("bn,snk->bsk", weights, r)
        diffs[start:stop] = (from_stats(sm) - from_stats(sr)).mean(axis=1)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"mean": observed, "lo": float(lo), "hi": float(hi), "not_better": float((diffs <= 0).mean()),
            "samples": samples, "sentences": n, "seeds": m.shape[0]}
