"""How noisy is the selection signal? A paired bootstrap of the valid BLEU of two consecutive checkpoints.

Why: the main selection keeps the checkpoint with the highest valid BLEU (fairseq ``--eval-bleu``: corpus
sacreBLEU, 13a, case-sensitive, of beam-1 decoding). When two checkpoints' valid BLEU differ by less than the
difference's sampling noise, which one is "best" is a coin toss, and a comparison of methods inherits it. The
recipe decodes the valid split with the selected checkpoint and its neighbouring validation's, resamples the
valid sentences (the same ones for both, Koehn 2004) and reports the standard error of the difference; it then
counts the validations within 1.96 of those standard errors of the best one. Pure functions, unit-tested.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import numpy as np

from fairseq_eb.recipe.selection import Validation

# per-sentence statistics: hypothesis length, reference length, matches of 1..4-grams, hypothesis 1..4-grams
_ORDER = 4
NOISE_SAMPLES = 1000


def sentence_stats(hyps: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    """(N, 2 + 2·4) sacreBLEU sufficient statistics of each sentence pair (13a tokens, case kept: what fairseq's
    ``--eval-bleu`` scores), so that corpus BLEU of any resample is a sum of rows."""
    from fairseq_eb.scoring.bleu import ngram_counts, overlap
    from fairseq_eb.scoring.sacrebleu_13a import Tokenizer13a

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    tok = Tokenizer13a()
    rows = []
    for hyp, ref in zip(hyps, refs):
        h, r = tok(hyp.rstrip()).split(), tok(ref.rstrip()).split()
        hc, rc = ngram_counts(h, _ORDER), ngram_counts(r, _ORDER)
        rows.append([len(h), len(r), *(overlap(hc[n], rc[n]) for n in range(_ORDER)),
                     *(sum(hc[n].values()) for n in range(_ORDER))])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), 2 + 2 * _ORDER)


def corpus_bleu(totals: np.ndarray) -> np.ndarray:
    """sacreBLEU's corpus BLEU (× 100, its default 'exp' smoothing of zero n-gram matches, 0 without any match)
    of summed statistics, row-wise."""
    t = np.atleast_2d(np.asarray(totals, dtype=np.float64))
    sys_len, ref_len = t[:, 0], t[:, 1]
    correct, total = t[:, 2:2 + _ORDER], t[:, 2 + _ORDER:]
    log_p = np.zeros(len(t))
    for row in range(len(t)):
        if sys_len[row] == 0 or not correct[row].any():  # sacreBLEU: no match at all scores 0
            log_p[row] = -math.inf
            continue
        smooth = 1.0
        acc = 0.0
        for n in range(_ORDER):
            if total[row, n] == 0:
                acc = -math.inf
                break
            if correct[row, n] == 0:
                smooth *= 2
                acc += math.log(100.0 / (smooth * total[row, n]))
            else:
                acc += math.log(100.0 * correct[row, n] / total[row, n])
        log_p[row] = acc / _ORDER
    with np.errstate(divide="ignore", over="ignore"):
        bp = np.where(sys_len < ref_len, np.exp(1 - ref_len / np.maximum(sys_len, 1)), 1.0)
    return np.where(np.isinf(log_p), 0.0, bp * np.exp(log_p))


def paired_bootstrap(stats_a: np.ndarray, stats_b: np.ndarray, samples: int = NOISE_SAMPLES,
                     seed: int = 0) -> Dict[str, float]:
    """BLEU(a) − BLEU(b) on the same resampled sentences: its observed value, standard error and 95% interval,
    and the standard error of BLEU(a) alone. Deterministic for a given ``seed``."""
    if stats_a.shape != stats_b.shape or len(stats_a) == 0:
        raise ValueError(f"the two decodings must score the same non-empty sentences, got {stats_a.shape} and "
                         f"{stats_b.shape}")
    n = len(stats_a)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=samples).astype(np.float64)  # (samples, n)
    bleu_a, bleu_b = corpus_bleu(counts @ stats_a), corpus_bleu(counts @ stats_b)
    diff = bleu_a - bleu_b
    lo, hi = np.percentile(diff, [2.5, 97.5])
    observed = float(corpus_bleu(stats_a.sum(0))[0] - corpus_bleu(stats_b.sum(0))[0])
    return {"diff": observed, "se_diff": float(diff.std(ddof=1)), "lo": float(lo), "hi": float(hi),
            "se_a": float(bleu_a.std(ddof=1)), "bleu_a": float(corpus_bleu(stats_a.sum(0))[0]),
            "bleu_b": float(corpus_bleu(stats_b.sum(0))[0]), "sentences": n, "samples": samples}


def neighbour(validations: Sequence[Validation], selected: int) -> Optional[int]:
    """The update of the validation right after the selected one (right before it when that is the last)."""
    updates = [v.num_updates for v in validations if v.bleu is not None]
    if selected not in updates or len(updates) < 2:
        return None
    i = updates.index(selected)
    return updates[i + 1] if i + 1 < len(updates) else updates[i - 1]


def close_to_best(validations: Sequence[Validation], selected: int, se_diff: float) -> List[int]:
    """The other validations whose BLEU is within 1.96 standard errors of the difference below the selected
    one's: checkpoints the noise could as well have picked."""
    best = next(v.bleu for v in validations if v.num_updates == selected)
    return [v.num_updates for v in validations
            if v.bleu is not None and v.num_updates != selected and v.bleu >= best - 1.96 * se_diff]


def still_improving(validations: Sequence[Validation], selected: int) -> bool:
    """Best at the last validation: the budget ended while the metric was still rising."""
    scored = [v.num_updates for v in validations if v.bleu is not None]
    return bool(scored) and selected == scored[-1]


def warnings_for(label: str, validations: Sequence[Validation], selected: int, noise: Optional[Dict[str, float]],
                 baseline: bool) -> List[str]:
    """The recipe's warnings for one run (empty when the selection is clear): several checkpoints within the
    noise of the selected one, and (for the baseline) a metric still rising at the end of the budget."""
    out = []
    if noise is not None:
        close = close_to_best(validations, selected, noise["se_diff"])
        if len(close) >= 2:
            out.append(f"{label}: the selected checkpoint (update {selected:,}) is within the valid metric's noise "
                       f"(1.96 × {noise['se_diff']:.2f} BLEU) of {len(close)} others (updates "
                       f"{', '.join(f'{u:,}' for u in close)}): which one is selected is a coin toss")
    if baseline and still_improving(validations, selected):
        out.append(f"{label}: the baseline was still improving at the end of the budget (best at its last "
                   f"validation, update {selected:,}); a longer budget may change the comparison")
    return out
