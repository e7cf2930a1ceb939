"""Metric vs beam size, one line per method (error bars = std over seeds), floor as a dashed line; plus the
share of outputs repeating a bigram (degenerate repetition) when the summary has it."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

from fairseq_eb import atomic
from fairseq_eb.recipe.aggregate import TABLE_METRICS


def plot_summary(summary, methods: Sequence[str], labels: Mapping[str, str], beams: Sequence[int],
                 out: Path, title: str, floor: Optional[Mapping[str, float]] = None) -> Path:
    """Write a PNG with one panel per metric (ROUGE-L, ROUGE-1, ROUGE-2, BLEU, and repeated 2-grams %)."""
    import logging

    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its font search logs at DEBUG otherwise
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(TABLE_METRICS)
    if all("repeat-2" in summary[m][b] for m in methods for b in beams):
        panels.append(("repeat-2", "outputs repeating a bigram (%)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    for ax, (key, name) in zip(axes, panels):
        for m in methods:
            means = [summary[m][b][key]["mean"] for b in beams]
            stds = [summary[m][b][key]["std"] or 0.0 for b in beams]
            ax.errorbar(beams, means, yerr=stds, marker="o", capsize=3, label=labels[m])
        if floor is not None and key in floor:
            ax.axhline(float(floor[key]), color="grey", linestyle="--", linewidth=1, label="first-K floor")
        ax.set_title(name)
        ax.set_xlabel("beam size")
        ax.set_xticks(list(beams))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score × 100")
    axes[-1].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.save_with(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out
