"""How sure is a method's gain over the baseline? Two 95% intervals of the paired ROUGE-L difference.

Why two: the difference measured on one test set with a few seeds has two sources of chance. The seeds'
spread (a Student-t interval over the per-seed differences) says how much it depends on training
randomness, on this test set. The paired bootstrap over test sentences (Koehn, 2004: resample the test set
with replacement, the same sentences for both systems) says how much it depends on which sentences the test
set happens to hold, for these trainings. A gain (or loss) counts as established only when both intervals
lie on the same side of 0; either one alone overstates the certainty. Pure functions, unit-tested.
"""
from __future__ import annotations

import math
import statistics
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

# two-sided 95% quantiles t_{0.975, df} of Student's t, df = 1..30 (standard tables)
_T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
          2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
          2.045, 2.042)
BOOTSTRAP_SAMPLES = 1000


def t_quantile_975(df: int) -> float:
    """t_{0.975, df}: the table up to 30, beyond it the normal quantile with a 1/df correction (error < 0.002)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return _T_975[df - 1] if df <= len(_T_975) else 1.96 + 2.4 / df


def seed_interval(deltas: Sequence[float]) -> Optional[Tuple[float, float]]:
    """95% Student-t interval of the mean per-seed difference; None for fewer than two seeds (no spread)."""
    n = len(deltas)
    if n < 2:
        return None
    mean = statistics.fmean(deltas)
    half = t_quantile_975(n - 1) * statistics.stdev(deltas) / math.sqrt(n)
    return mean - half, mean + half


def sentence_bootstrap(deltas: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> Dict[str, float]:
    """Paired bootstrap over test sentences of the seed-averaged difference.

    ``deltas[s, i]``: method minus baseline on sentence ``i`` for seed ``s`` (one row per seed both have).
    Each resample draws sentence indices with replacement, the same for every seed, and takes the mean
    over the drawn sentences of the seed-averaged difference. Returns the mean, the 2.5/97.5 percentiles
    and ``not_better``: the share of resamples in which the method is not ahead (≤ 0), a one-sided p-value.
    Deterministic for a given ``seed``.
    """
    d = np.asarray(deltas, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] < 1 or d.shape[1] < 1:
        raise ValueError(f"deltas must be a non-empty (seeds, sentences) array, got shape {d.shape}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    per_sentence = d.mean(axis=0)
    rng = np.random.default_rng(seed)
    n = per_sentence.shape[0]
    means = np.empty(samples)
    for start in range(0, samples, 100):  # bounded memory: 100 resamples × n indices at a time
        stop = min(samples, start + 100)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = per_sentence[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": float(per_sentence.mean()), "lo": float(lo), "hi": float(hi),
            "not_better": float((means <= 0).mean()), "samples": samples, "sentences": n, "seeds": d.shape[0]}


def verdict(seeds: Optional[Tuple[float, float]], sentences: Tuple[float, float]) -> str:
    """``gain`` / ``loss`` when both intervals lie above / below 0, else ``not established``."""
    if seeds is None:
        return "one seed: not established"
    both = (seeds, sentences)
    if all(lo > 0 for lo, _ in both):
        return "gain"
    if all(hi < 0 for _, hi in both):
        return "loss"
    return "not established"


def interval_cell(seeds: Optional[Tuple[float, float]], boot: Dict[str, float]) -> str:
    """One Markdown cell: mean, the seeds' and the sentences' intervals, the verdict."""
    seed_txt = "–" if seeds is None else f"[{seeds[0]:+.2f}, {seeds[1]:+.2f}]"
    return (f"{boot['mean']:+.2f}; seeds {seed_txt}; sentences [{boot['lo']:+.2f}, {boot['hi']:+.2f}]: "
            f"**{verdict(seeds, (boot['lo'], boot['hi']))}**")
