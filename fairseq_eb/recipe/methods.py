"""The methods of the table and the fairseq options that make each one (docs/method.md §2-§5)."""
from __future__ import annotations

from typing import Dict, List, Sequence

from fairseq_eb.recipe.configs import RecipeConfig

# name -> label used in tables and plots (order = table order)
# ss = the model's own guesses as replacements on a rising schedule (parallel scheduled sampling);
# gp_lazy = the penalty on every k-th update only, weight k*eps (see docs/schedules.md, README)
METHODS: Dict[str, str] = {"baseline": "baseline", "rr": "RR", "gp": "GP", "rr_gp": "RR+GP", "ss": "SS",
                           "gp_lazy": "GP-lazy"}


def check_methods(names: Sequence[str]) -> List[str]:
    """Validate and de-duplicate method names, keeping the table order."""
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"--methods: unknown {unknown}; valid values are {', '.join(METHODS)}")
    if not names:
        raise ValueError(f"--methods needs at least one of {', '.join(METHODS)}")
    return [n for n in METHODS if n in names]


def method_args(method: str, cfg: RecipeConfig) -> List[str]:
    """fairseq-train options that select the method's task and criterion."""
    check_methods([method])
    replacement = method in ("rr", "rr_gp", "ss")
    penalty = method in ("gp", "rr_gp", "gp_lazy")
    args = ["--task", "translation_with_replacement" if replacement else "translation"]
    if replacement:
        args += list(cfg.ss_args if method == "ss" else cfg.rr_args)
    args += ["--criterion", "label_smoothed_cross_entropy_with_gp" if penalty else "label_smoothed_cross_entropy"]
    if penalty:
        args += list(cfg.gp_args)
    if method == "gp_lazy":
        args += list(cfg.gp_lazy_args)  # after gp_args: the same eps, applied lazily
    return args
