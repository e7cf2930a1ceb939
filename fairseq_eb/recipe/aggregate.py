"""Mean ± standard deviation over seeds and the Markdown tables (pure functions, unit-tested).

Why sample std (ddof=1): the seeds are a small sample of training randomness; the spread they show is
what a difference between methods must be compared with. With one seed there is no spread (None).
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Sequence, Tuple

from fairseq_eb.recipe.methods import reference_of
from fairseq_eb.scoring.metrics import REFERENCE_METRICS

# metric key (as returned by fairseq_eb.scoring.score) -> column title, in the reference table's order
TABLE_METRICS = REFERENCE_METRICS

# scores[method][beam][seed] = {"rouge-l": ..., ...}
Scores = Mapping[str, Mapping[int, Mapping[int, Mapping[str, float]]]]


def mean_std(values: Sequence[float]) -> Tuple[float, Optional[float]]:
    """Mean and sample standard deviation (None for fewer than two values)."""
    if not values:
        raise ValueError("mean_std needs at least one value")
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var)


def summarise(scores: Scores, metrics: Sequence[str]) -> Dict[str, Dict[int, Dict[str, Dict[str, object]]]]:
    """summary[method][beam][metric] = {"mean", "std", "n", "values"} over the seeds present."""
    out: Dict[str, Dict[int, Dict[str, Dict[str, object]]]] = {}
    for method, by_beam in scores.items():
        for beam, by_seed in by_beam.items():
            seeds = sorted(by_seed)
            for metric in metrics:
                values = [float(by_seed[s][metric]) for s in seeds]
                mean, std = mean_std(values)
                out.setdefault(method, {}).setdefault(beam, {})[metric] = {
                    "mean": mean, "std": std, "n": len(values), "values": values, "seeds": seeds,
                }
    return out


def fmt(mean: float, std: Optional[float], digits: int = 2) -> str:
    """``12.34 ± 0.56``, or just ``12.34`` when there is no spread to report."""
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def reference_table(summary, methods: Sequence[str], labels: Mapping[str, str], beams: Sequence[int],
                    data_name: str) -> str:
    """The reference layout (docs/method.md §6): one row per beam, each cell 'baseline / RR / GP' (mean ± std)."""
    head = "| data | beam | method | " + " | ".join(t for _, t in TABLE_METRICS) + " |"
    lines = [head, "|" + "---|" * (3 + len(TABLE_METRICS))]
    method_cell = " / ".join(labels[m] for m in methods)
    for beam in beams:
        cells = []
        for key, _ in TABLE_METRICS:
            parts = []
            for m in methods:
                s = summary[m][beam][key]
                parts.append(fmt(s["mean"], s["std"]))
            cells.append(" / ".join(parts))
        lines.append(f"| {data_name} | {beam} | {method_cell} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def long_table(summary, methods: Sequence[str], labels: Mapping[str, str], beams: Sequence[int],
               floor: Optional[Mapping[str, float]] = None, floor_label: str = "trivial floor") -> str:
    """One row per (beam, method), plus the difference to the baseline at the same beam in ROUGE-L."""
    refs = "vs baseline" + ("" if all(reference_of(m) == "baseline" for m in methods) else
                            " (MRT, Rank: vs baseline+stage)")
    head = "| beam | method | " + " | ".join(t for _, t in TABLE_METRICS) + f" | Δ ROUGE-L {refs} | seeds |"
    lines = [head, "|" + "---|" * (4 + len(TABLE_METRICS))]
    for beam in beams:
        for m in methods:
            base = summary.get(reference_of(m), {}).get(beam, {}).get("rouge-l")
            row = summary[m][beam]
            cells = [fmt(row[k]["mean"], row[k]["std"]) for k, _ in TABLE_METRICS]
            delta = "" if base is None or m == "baseline" else f"{row['rouge-l']['mean'] - base['mean']:+.2f}"
            lines.append(f"| {beam} | {labels[m]} | " + " | ".join(cells) + f" | {delta} | {row['rouge-l']['n']} |")
    if floor is not None:
        cells = [f"{float(floor[k]):.2f}" for k, _ in TABLE_METRICS]
        lines.append(f"| – | {floor_label} | " + " | ".join(cells) + " | | |")
    return "\n".join(lines)


def diagnostics_table(summary, diagnostics: Mapping[str, Mapping[str, Tuple[float, Optional[float]]]],
                      methods: Sequence[str], labels: Mapping[str, str], beams: Sequence[int]) -> str:
    """Per method: repeated-2-gram share of the test outputs at each beam, ΔNLL after own errors, model errors."""
    head = ("| method | " + " | ".join(f"repeated 2-gram % beam {b}" for b in beams)
            + " | ΔNLL after own error (r=0.3, valid) | model err. beam 1 (valid) |")
    lines = [head, "|" + "---|" * (3 + len(beams))]
    for m in methods:
        reps = [fmt(summary[m][b]["repeat-2"]["mean"], summary[m][b]["repeat-2"]["std"], 1)
                if "repeat-2" in summary[m][b] else "–" for b in beams]
        d = diagnostics.get(m, {})
        nll = fmt(*d["delta_nll_own"], digits=3) if "delta_nll_own" in d else "–"
        err = fmt(*d["model_error"], digits=2) if "model_error" in d else "–"
        lines.append(f"| {labels[m]} | " + " | ".join(reps) + f" | {nll} | {err} |")
    return "\n".join(lines)


def paired_delta(summary, method: str, beam: int, metric: str = "rouge-l") -> Optional[Dict[str, object]]:
    """``method`` minus its reference (the baseline; for MRT and Rank the baseline+stage run,
    :func:`fairseq_eb.recipe.methods.reference_of`) on the seeds both have (paired by seed: the training
    randomness the two runs share cancels): mean, sample std, how many seeds improved, and a plain verdict. None when no
    seed is shared or the method is the baseline."""
    ref = reference_of(method)
    if method == "baseline" or ref not in summary:
        return None
    row, base = summary[method][beam][metric], summary[ref][beam][metric]
    by_seed = dict(zip(base["seeds"], base["values"]))
    deltas = [v - by_seed[s] for s, v in zip(row["seeds"], row["values"]) if s in by_seed]
    if not deltas:
        return None
    mean, std = mean_std(deltas)
    up = sum(d > 0 for d in deltas)
    n = len(deltas)
    if n < 2:
        verdict = "one seed: no verdict"
    elif up == n:
        verdict = "better in every seed"
    elif up == 0:
        verdict = "worse in every seed"
    else:
        verdict = "mixed: within seed noise"
    return {"mean": mean, "std": std, "up": up, "n": n, "deltas": deltas, "verdict": verdict}


def paired_table(summary, methods: Sequence[str], labels: Mapping[str, str], beams: Sequence[int],
                 metric: str = "rouge-l") -> str:
    """One row per method: the paired difference to the baseline at each beam, seeds improved, verdict."""
    lines = ["| method | " + " | ".join(f"beam {b}" for b in beams) + " |", "|" + "---|" * (1 + len(beams))]
    for m in methods:
        cells = []
        for b in beams:
            d = paired_delta(summary, m, b, metric)
            if d is None:
                cells.append("–")
                continue
            spread = "" if d["std"] is None else f" ± {d['std']:.2f}"
            cells.append(f"{d['mean']:+.2f}{spread} ({d['up']}/{d['n']} seeds up: {d['verdict']})")
        if m != "baseline":
            lines.append(f"| {labels[m]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
