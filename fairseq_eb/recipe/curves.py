"""Every run's validation curve, as one Markdown table: did training stop because it stopped improving?

Why: a regime called "converged" is that only if the selection metric stopped improving before the budget
ran out. A run whose best checkpoint is its last validation was still improving when it ended, and a
comparison of methods at that point is a comparison at a fixed budget, not at convergence. The recipe
writes this table next to ``table.md`` (``curves.md``) from the validations it already parsed for
checkpoint selection (:mod:`fairseq_eb.recipe.selection`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

from fairseq_eb.recipe.selection import Validation

EARLY_STOP = "early stop"
BUDGET_END = "budget end"


@dataclass(frozen=True)
class Curve:
    """One run: its validations, the update of its selected checkpoint, and how its training ended."""

    label: str
    seed: int
    validations: Sequence[Validation]
    selected: Optional[int]
    ended_by: str


def ended_by(log_text: str, validations: Sequence[Validation], max_update: int) -> str:
    """``early stop`` (fairseq's patience ran out), ``budget end`` (``--max-update`` reached) or ``other``."""
    if "early stop since valid performance hasn't improved" in log_text:
        return EARLY_STOP
    if validations and validations[-1].num_updates >= max_update:
        return BUDGET_END
    return "other"


def _value(v: Validation, metric: str) -> Optional[float]:
    return v.bleu if metric == "bleu" else v.loss


def curves_markdown(curves: Sequence[Curve], metric: str = "bleu") -> str:
    """A table with one row per run and one column per validated update; the selected checkpoint in bold,
    then how many runs ended by early stopping and how many were best at their last validation."""
    updates = sorted({v.num_updates for c in curves for v in c.validations})
    title = "valid BLEU (beam 1)" if metric == "bleu" else "valid loss"
    lines = [f"| method | seed | {' | '.join(f'{u:,}' for u in updates)} | best at | ended by |",
             "|---|---|" + "---|" * len(updates) + "---|---|"]
    still_rising = 0
    for c in curves:
        by_update = {v.num_updates: _value(v, metric) for v in c.validations}
        cells = []
        for u in updates:
            value = by_update.get(u)
            text = "–" if value is None else f"{value:.2f}"
            cells.append(f"**{text}**" if u == c.selected and value is not None else text)
        if c.validations and c.selected == c.validations[-1].num_updates:
            still_rising += 1
        best_at = "–" if c.selected is None else f"{c.selected:,}"
        lines.append(f"| {c.label} | {c.seed} | {' | '.join(cells)} | {best_at} | {c.ended_by} |")
    early = sum(c.ended_by == EARLY_STOP for c in curves)
    summary = (f"{title} at each validation; bold = the selected checkpoint. {early} of {len(curves)} runs ended by "
               f"early stopping; {still_rising} of {len(curves)} were best at their last validation (still "
               "improving when training ended).")
    return "\n".join([summary, "", *lines]) + "\n"


def max_update_of(train_args: Sequence[str]) -> int:
    """The ``--max-update`` of a fairseq-train command line (the last one wins, as in argparse); 0 if none."""
    args: List[str] = list(train_args)
    found = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--max-update"]
    return int(found[-1]) if found else 0
