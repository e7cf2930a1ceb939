"""The long-output regime's report: BLEU and chrF per beam with both intervals, length thirds, failure shares.

Why apart from the reference tables: a translation is judged by corpus BLEU and chrF (sacreBLEU), whose paired
intervals resample sentence *statistics* rather than average per-sentence scores
(:func:`fairseq_eb.scoring.translation.corpus_bootstrap`); and the question of that regime — do errors compound
along long outputs, out of domain, at large beams? — is read from the gain on the longest third of the references,
the drop from the best beam to the largest, and the shares of looping or detached outputs
(``docs/evaluating.md``, "Translation scores").
"""
from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from fairseq_eb.recipe import aggregate
from fairseq_eb.recipe.methods import reference_of
from fairseq_eb.scoring import intervals
from fairseq_eb.scoring.translation import CORPUS_METRICS, THIRDS, corpus_bootstrap, length_thirds, sentence_stats

METRICS = (("bleu-cased", "BLEU"), ("chrf", "chrF"))
FAILURES = (("len-ratio", "length ratio", 3), ("repeat-4", "repeated 4-gram %", 1), ("detached", "detached %", 1),
            ("overlong", "over-long %", 1), ("halluc", "hallucination proxy %", 1))
SUMMARY_KEYS = [k for k, _ in METRICS] + [f"{k}/{t}" for k, _ in METRICS for t in THIRDS] + [k for k, _, _ in FAILURES]

# (method, seed, beam) -> (hyps, refs) of one selection's decoding
Loader = Callable[[str, int, int], Tuple[List[str], List[str]]]


def _cell(s: Mapping[str, object], digits: int = 2) -> str:
    return aggregate.fmt(float(s["mean"]), s["std"], digits)


def score_table(summary, methods: Sequence[str], labels: Mapping[str, str], beams: Sequence[int], metric: str,
                copy_floor: Optional[float] = None) -> List[str]:
    """Rows: methods; columns: beams, then the best beam and the drop from it to the largest beam (mean over
    seeds of each seed's own drop)."""
    last = beams[-1]
    lines = ["| method | " + " | ".join(f"beam {b}" for b in beams) + f" | best beam | best → beam {last} |",
             "|---|" + "---:|" * (len(beams) + 2)]
    for m in methods:
        row = summary[m]
        means = {b: float(row[b][metric]["mean"]) for b in beams}
        best = max(beams, key=lambda b: means[b])
        per_seed = np.array([row[b][metric]["values"] for b in beams])  # (beams, seeds)
        drop = float((per_seed[-1] - per_seed.max(axis=0)).mean())
        lines.append(f"| {labels[m]} | " + " | ".join(_cell(row[b][metric]) for b in beams)
                     + f" | {best} | {drop:+.2f} |")
    if copy_floor is not None:
        lines.append("| source copied (floor) | " + " | ".join(f"{copy_floor:.2f}" for _ in beams) + " | | |")
    return lines


def thirds_table(summary, methods: Sequence[str], labels: Mapping[str, str], beams: Sequence[int], metric: str,
                 ranges: Mapping[str, Sequence[int]]) -> List[str]:
    """Rows: method × third of the reference lengths; columns: beams (mean over seeds)."""
    lines = ["| method | third (reference words) | " + " | ".join(f"beam {b}" for b in beams) + " |",
             "|---|---|" + "---:|" * len(beams)]
    for m in methods:
        for t in THIRDS:
            lo, hi = ranges[t]
            lines.append(f"| {labels[m]} | {t} ({lo}–{hi}) | "
                         + " | ".join(f"{float(summary[m][b][f'{metric}/{t}']['mean']):.2f}" for b in beams) + " |")
    return lines


def failures_table(summary, methods: Sequence[str], labels: Mapping[str, str], beams: Sequence[int]) -> List[str]:
    """Rows: (beam, method); columns: length ratio, repetition, detached, over-long, hallucination proxy."""
    lines = ["| beam | method | " + " | ".join(t for _, t, _ in FAILURES) + " |",
             "|---:|---|" + "---:|" * len(FAILURES)]
    for b in beams:
        for m in methods:
            lines.append(f"| {b} | {labels[m]} | "
                         + " | ".join(_cell(summary[m][b][k], d) for k, _, d in FAILURES) + " |")
    return lines


class SentenceStats:
    """Per-sentence corpus-metric statistics of every decoding, computed once from the generation files."""

    def __init__(self, load: Loader) -> None:
        self.load = load
        self._cache: Dict[Tuple[str, int, int], Tuple[np.ndarray, np.ndarray]] = {}
        self.refs: Optional[List[str]] = None

    def __call__(self, method: str, seed: int, beam: int, metric: str) -> np.ndarray:
        key = (method, seed, beam)
        if key not in self._cache:
            hyps, refs = self.load(method, seed, beam)
            self.refs = self.refs or refs
            self._cache[key] = sentence_stats(hyps, refs)
        return self._cache[key][CORPUS_METRICS[metric][0]]


def paired_corpus_intervals(stats: SentenceStats, runs: Sequence[Tuple[str, int]], methods: Sequence[str],
                            beams: Sequence[int], metric: str, rows: Optional[np.ndarray] = None
                            ) -> Dict[str, Dict[int, Dict[str, object]]]:
    """method -> beam -> both 95% intervals of its corpus-metric difference to its reference (seeds: Student t
    over per-seed differences; sentences: paired bootstrap of the statistics), on the seeds both have."""
    have = set(runs)
    _, _, from_stats = CORPUS_METRICS[metric]
    out: Dict[str, Dict[int, Dict[str, object]]] = {}
    for m in methods:
        ref = reference_of(m)
        seeds = sorted(s for mm, s in have if mm == m and (ref, s) in have)
        if m == "baseline" or not seeds:
            continue
        for b in beams:
            mine = [stats(m, s, b, metric) for s in seeds]
            theirs = [stats(ref, s, b, metric) for s in seeds]
            sel = (lambda a: a) if rows is None else (lambda a: a[rows])
            per_seed = [float(from_stats(sel(x).sum(0)) - from_stats(sel(y).sum(0))) for x, y in zip(mine, theirs)]
            boot = corpus_bootstrap(mine, theirs, metric, rows=rows)
            seed_ci = intervals.seed_interval(per_seed)
            out.setdefault(m, {})[b] = {"seeds": seeds, "per_seed": per_seed, "seed_interval": seed_ci,
                                        "bootstrap": boot,
                                        "verdict": intervals.verdict(seed_ci, (boot["lo"], boot["hi"]))}
    return out


def intervals_table(found: Dict[str, Dict[int, Dict[str, object]]], methods: Sequence[str],
                    labels: Mapping[str, str], beams: Sequence[int]) -> List[str]:
    lines = ["| method (vs) | " + " | ".join(f"beam {b}" for b in beams) + " |", "|---|" + "---|" * len(beams)]
    for m in methods:
        if m in found:
            cells = [intervals.interval_cell(found[m][b]["seed_interval"], found[m][b]["bootstrap"]) for b in beams]
            lines.append(f"| {labels[m]} (vs {labels[reference_of(m)]}) | " + " | ".join(cells) + " |")
    return lines


def report(summary, stats: SentenceStats, runs: Sequence[Tuple[str, int]], methods: Sequence[str],
           labels: Mapping[str, str], beams: Sequence[int], title: str,
           copy_floor: Optional[Mapping[str, object]] = None) -> Tuple[List[str], Dict[str, object]]:
    """Markdown lines and a JSON-ready record of one checkpoint selection's translation results."""
    md = [f"### {title}", ""]
    record: Dict[str, object] = {"intervals": {}, "intervals_long_third": {}}
    for metric, name in METRICS:
        floor = float(copy_floor[metric]) if copy_floor else None
        md += [f"{name} (sacreBLEU, mean ± std over seeds; *best → beam {beams[-1]}*: mean of each seed's change from "
               "its best beam to the largest):", "", *score_table(summary, methods, labels, beams, metric, floor), ""]
        found = paired_corpus_intervals(stats, runs, methods, beams, metric)
        record["intervals"][metric] = found
        if found:
            md += [f"{name} difference to the reference method, both 95% intervals (*seeds*: Student t over the "
                   "per-seed differences; *sentences*: paired bootstrap of the corpus statistics over the test "
                   "documents, 1,000 resamples); a gain or loss only when both exclude 0:", "",
                   *intervals_table(found, methods, labels, beams), ""]
    if stats.refs is not None:
        third, ranges = length_thirds(stats.refs)
        named = {t: ranges[k] for k, t in enumerate(THIRDS)}
        for metric, name in METRICS:
            md += [f"{name} by third of the reference lengths:", "",
                   *thirds_table(summary, methods, labels, beams, metric, named), ""]
            found = paired_corpus_intervals(stats, runs, methods, beams, metric, rows=third == 2)
            record["intervals_long_third"][metric] = found
            if found:
                md += [f"{name} difference on the **long third** ({named['long'][0]}–{named['long'][1]} reference "
                       "words), both 95% intervals:", "", *intervals_table(found, methods, labels, beams), ""]
        record["thirds"] = named
    md += ["Failures (mean ± std over seeds): *length ratio* = output / reference tokens (sacreBLEU's); *repeated "
           "4-gram* = outputs repeating a word 4-gram; *detached* = sentence chrF below 30 (no closer to the reference "
           "than another document); *over-long* = more than twice the reference's words; *hallucination proxy* = "
           "detached or over-long.", "", *failures_table(summary, methods, labels, beams), ""]
    return md, record
