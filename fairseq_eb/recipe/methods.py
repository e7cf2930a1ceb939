"""The methods of the table and the fairseq options that make each one (docs/method.md §2-§5)."""
from __future__ import annotations

from typing import Dict, List, Sequence

from fairseq_eb.recipe.configs import RecipeConfig

# name -> label used in tables and plots (order = table order)
# ss = the model's own guesses as replacements on a rising schedule (parallel scheduled sampling);
# gp_lazy = the penalty on every k-th update only, weight k*eps (see docs/schedules.md, README)
METHODS: Dict[str, str] = {"baseline": "baseline", "rr": "RR", "gp": "GP", "rr_gp": "RR+GP", "ss": "SS",
                           "gp_lazy": "GP-lazy", "mle_more": "baseline+stage", "mrt": "MRT", "rank": "Rank"}
# Stage methods continue the same seed's baseline run (its main-selection checkpoint) for the configuration's
# stage budget: mrt = sequence_risk, rank = sequence_ranking (docs/method.md §8), mle_more = the same extra
# updates with the plain token loss. mrt and rank are compared with mle_more, so that a gain is the method's and
# not the extra training's; every other method with the baseline.
STAGE_METHODS = ("mle_more", "mrt", "rank")
_SEQUENCE_CRITERIA = {"mrt": "sequence_risk", "rank": "sequence_ranking"}


def reference_of(method: str) -> str:
    """The method a method's gains are measured against (same seed, same training budget)."""
    return "mle_more" if method in _SEQUENCE_CRITERIA else "baseline"


def check_methods(names: Sequence[str]) -> List[str]:
    """Validate and de-duplicate method names, keeping the table order."""
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"--methods: unknown {unknown}; valid values are {', '.join(METHODS)}")
    if not names:
        raise ValueError(f"--methods needs at least one of {', '.join(METHODS)}")
    return [n for n in METHODS if n in names]


def check_stage_methods(methods: Sequence[str], cfg: RecipeConfig) -> None:
    """Stage methods need the baseline they continue and a configuration with a stage budget."""
    stages = [m for m in methods if m in STAGE_METHODS]
    if stages and "baseline" not in methods:
        raise ValueError(f"--methods {' '.join(stages)} continue the same seed's baseline run: add baseline")
    if stages and not cfg.stage_args:
        raise ValueError(f"--methods {' '.join(stages)}: config {cfg.name} has no stage budget (stage_args); use a "
                         "configuration that defines one, e.g. finetune")
    refs = sorted({reference_of(m) for m in stages} - set(methods))
    if refs:
        raise ValueError(f"--methods {' '.join(stages)} are compared with {', '.join(refs)} (the same extra updates "
                         f"with the token loss alone): add {' '.join(refs)}")


def method_args(method: str, cfg: RecipeConfig) -> List[str]:
    """fairseq-train options that select the method's task and criterion."""
    check_methods([method])
    if method in STAGE_METHODS:
        criterion = _SEQUENCE_CRITERIA.get(method, "label_smoothed_cross_entropy")
        extra = {"mrt": cfg.mrt_args, "rank": cfg.rank_args}.get(method, ())
        return ["--task", "translation", *cfg.stage_args, "--criterion", criterion, *extra]
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
