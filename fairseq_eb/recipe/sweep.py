"""``python -m fairseq_eb.recipe.sweep``: tune each method's own settings on the validation split only.

For every method × variant of its grid × seed: train (as the table recipe does, sharing its run
directories), decode the *valid* split at each beam with the main checkpoint selection, score. The
variant with the highest valid ROUGE-L (mean over beams and seeds) is chosen per method and written to
``OUT/sweep/chosen.json``; ``python -m fairseq_eb.recipe.table --out OUT --chosen OUT/sweep/chosen.json``
then decodes the test split with the chosen settings only (the test split is never looked at here).
Trainings are shared: the table reuses a sweep run of the chosen variant for the same seed.
"""
from __future__ import annotations

import sys
import time
from typing import Dict, List, Optional, Sequence

from fairseq_eb import atomic
from fairseq_eb.atomic import DiskWriteError
from fairseq_eb.recipe import aggregate
from fairseq_eb.recipe.configs import get_config
from fairseq_eb.recipe.experiment import Experiment
from fairseq_eb.recipe.input_checks import check_run_options
from fairseq_eb.recipe.logged_command import echo, resume_children
from fairseq_eb.recipe.methods import DEFAULT_VARIANT, METHODS, REGISTRY
from fairseq_eb.recipe.run_steps import SettingsMismatch, check_settings
from fairseq_eb.recipe.table import (
    build_parser,
    init_fields,
    make_specs,
    pretrain_spec,
    run_all,
    train,
    validate,
)
from fairseq_eb.runlock import RunLock, RunLocked

# method -> variant name -> fairseq options appended after the configuration's (the last occurrence wins);
# HALF / QUARTER stand for that fraction of the configuration's --max-update. The grids are the methods' own
# (fairseq_eb.recipe.methods.REGISTRY); a method without one runs its configuration settings only.
GRIDS: Dict[str, Dict[str, List[str]]] = {name: {v: list(a) for v, a in m.grid.items()}
                                          for name, m in REGISTRY.items() if m.grid is not None}

_FRACTIONS = {"HALF": 2, "QUARTER": 4}


def grid(method: str, max_update: int, only: Optional[Sequence[str]] = None) -> List[Dict[str, object]]:
    """The variants of ``method`` (``HALF`` / ``QUARTER`` = that share of ``max_update``), optionally filtered;
    ``default`` in ``only`` adds the configuration's own settings (the run a table without ``--chosen`` trains)."""
    variants = {DEFAULT_VARIANT: [], **GRIDS.get(method, {})} if only and DEFAULT_VARIANT in only else \
        GRIDS.get(method, {DEFAULT_VARIANT: []})
    names = [n for n in variants if only is None or n in only or method == "baseline"]
    return [{"variant": n, "args": [str(max_update // _FRACTIONS[a]) if a in _FRACTIONS else a for a in variants[n]]}
            for n in names]


def _max_update(train_args: Sequence[str]) -> int:
    args = list(train_args)
    return int(args[args.index("--max-update") + 1]) if "--max-update" in args else 0


def selection_metric(config: str) -> str:
    """What a sweep maximises: valid ROUGE-L (the reference experiment's), BLEU for a translation configuration."""
    return "bleu-cased" if get_config(config).scores == "translation" else "rouge-l"


def choose(results, beams: Sequence[int], metric: str = "rouge-l") -> Dict[str, Dict[str, object]]:
    """Per method, the variant with the highest mean valid ``metric`` over beams and seeds (grid order breaks ties)."""
    table: Dict[str, Dict[str, List[float]]] = {}
    args_of: Dict[tuple, List[str]] = {}
    for sp, res in results.items():
        variant = sp.run_dir.parent.name
        for beam in beams:
            table.setdefault(sp.method, {}).setdefault(variant, []).append(float(res["scores"][beam][metric]))
        args_of[(sp.method, variant)] = list(sp.variant_args)
    chosen = {}
    for method, by_variant in table.items():
        means = {v: sum(x) / len(x) for v, x in by_variant.items()}
        best = max(means, key=lambda v: means[v])  # dicts keep grid order: max keeps the first of equals
        chosen[method] = {"variant": best, "args": args_of[(method, best)],
                          ("valid_rouge_l" if metric == "rouge-l" else f"valid_{metric}"): means[best], "all": means}
    return chosen


def sweep_table(results, methods: Sequence[str], beams: Sequence[int], chosen, metric: str = "rouge-l") -> str:
    """Markdown: one row per method × variant, the valid ``metric`` per beam (mean ± std over seeds)."""
    title = {"rouge-l": "ROUGE-L", "bleu-cased": "BLEU"}.get(metric, metric)
    head = "| method | variant | " + " | ".join(f"valid {title} beam {b}" for b in beams) + " | mean | chosen |"
    lines = [head, "|" + "---|" * (4 + len(beams))]
    rows: Dict[tuple, Dict[int, List[float]]] = {}
    for sp, res in results.items():
        key = (sp.method, sp.run_dir.parent.name)
        for b in beams:
            rows.setdefault(key, {}).setdefault(b, []).append(float(res["scores"][b][metric]))
    for method in methods:
        for (m, variant), by_beam in rows.items():
            if m != method:
                continue
            cells = [aggregate.fmt(*aggregate.mean_std(by_beam[b])) for b in beams]
            mean = sum(sum(v) / len(v) for v in by_beam.values()) / len(by_beam)
            mark = "**yes**" if chosen.get(m, {}).get("variant") == variant else ""
            lines.append(f"| {METHODS[m]} | `{variant}` | " + " | ".join(cells) + f" | {mean:.2f} | {mark} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    parser.prog = "python -m fairseq_eb.recipe.sweep"
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--variants", nargs="+", default=None,
                        help="run only these variant names of the grids (default: every variant); "
                        f"names: {DEFAULT_VARIANT} (the configuration's own settings), "
                        f"{', '.join(n for g in GRIDS.values() for n in g if n != DEFAULT_VARIANT)}")
    parser.set_defaults(seeds=[1])
    args = parser.parse_args(argv)
    try:
        exp = validate(args)
        if exp.chosen is not None:
            raise ValueError("--chosen belongs to the table recipe, not to the sweep")
        unknown = [v for v in args.variants or [] if v != DEFAULT_VARIANT and not any(v in g for g in GRIDS.values())]
        if unknown:
            raise ValueError(f"--variants: unknown {unknown}")
        variants = {m: grid(m, _max_update(exp.cfg.train_args), args.variants) for m in exp.methods}
        empty = [m for m, v in variants.items() if not v]
        if empty:
            raise ValueError(f"--variants selects no variant of {empty}")
        pre = pretrain_spec(exp)
        specs = make_specs(exp, variants, subset="valid", selections=("bleu",), init=init_fields(pre),
                           diagnose=False)
        check_run_options(specs, exp.train_args)  # before any settings.json is written
    except (ValueError, FileNotFoundError, SettingsMismatch) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        with RunLock(exp.out, "--out", say=lambda m: echo(m, sys.stderr)):
            return _locked_sweep(exp, pre, specs, variants)
    except (ValueError, SettingsMismatch, RunLocked, DiskWriteError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _locked_sweep(exp: Experiment, pre, specs, variants) -> int:
    resume_children()  # an earlier recipe in this process may have stopped its children
    for sp in [pre, *specs] if pre else specs:
        check_settings(sp)
    start = time.time()
    if pre:
        train(pre)
    echo(f"[sweep] {len(specs)} runs on valid ({', '.join(f'{m}: {len(v)}' for m, v in variants.items())} variants "
         f"× seeds {exp.seeds}), config {exp.config}")
    results = run_all(specs, exp.jobs)
    metric = selection_metric(exp.config)
    title = {"rouge-l": "ROUGE-L", "bleu-cased": "BLEU"}[metric]
    chosen = choose(results, exp.beams, metric)
    text = (f"# Sweep on the validation split (config `{exp.config}`, seeds {', '.join(map(str, exp.seeds))}, "
            f"main checkpoint selection, {title} × 100)\n\n"
            + sweep_table(results, exp.methods, exp.beams, chosen, metric)
            + f"\n\nChosen per method: highest mean valid {title} over beams {exp.beams} and seeds. "
            f"Wall time this invocation: {(time.time() - start) / 60:.1f} min.\n")
    out = exp.out / "sweep"
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / "sweep.md", text)
    atomic.write_json(out / "chosen.json", {"config": exp.config, "seeds": exp.seeds, "beams": exp.beams,
                                            "chosen": chosen})
    echo("\n" + text)
    echo(f"[sweep] wrote {out / 'sweep.md'} and {out / 'chosen.json'}; next: python -m fairseq_eb.recipe.table "
         f"--out {exp.out} --chosen {out / 'chosen.json'} ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
