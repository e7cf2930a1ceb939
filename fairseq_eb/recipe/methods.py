"""The methods of the table, each defined once: its fairseq task and criterion, options, sweep grid and pairing.

Why one record per method: the recipe's configurations, the sweep, the tables and ``--help`` all read
:data:`REGISTRY`, so adding a method is one :class:`Method` entry (plus an :data:`OPTION_SETS` entry when it
brings options no other method has). Definitions of the methods themselves: docs/method.md §2-§5 and §8.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, Tuple

if TYPE_CHECKING:  # the configurations import nothing from here; only the type is needed
    from fairseq_eb.recipe.configs import RecipeConfig

# variant name of a method run with the configuration's own settings (no sweep choice)
DEFAULT_VARIANT = "default"

# The article's replacement rates: p_s 0.5 of the sentences, p_t 0.3 of their target tokens.
REPLACE_SAMPLE_PROB = "0.5"
REPLACE_TOKEN_PROB = "0.3"


def replacement_options(token_prob: object = REPLACE_TOKEN_PROB, pool: Optional[str] = None) -> Tuple[str, ...]:
    """``[--replace-pool POOL] --replace-sample-prob 0.5 --replace-token-prob P``: the one spelling of the rates."""
    head = ("--replace-pool", pool) if pool else ()
    return (*head, "--replace-sample-prob", REPLACE_SAMPLE_PROB, "--replace-token-prob", str(token_prob))


# Named sets of fairseq options a method appends after ``--task`` or ``--criterion``, in order. Each set holds
# the method's fixed settings; a configuration may append its own to a set (``RecipeConfig.tuning``: RR's warm-up,
# SS's ramp over the budget, a cheaper penalty, the stage budget).
OPTION_SETS: Dict[str, Tuple[str, ...]] = {
    "replacement": replacement_options(),  # random tokens of the same target (the article)
    # the model's own argmax guesses (untuned: RR's rates, so the two differ in where replacements come from
    # and how p_s rises)
    "guesses": replacement_options(pool="model"),
    "penalty": ("--gp-epsilon", "1.0"),
    "lazy": ("--gp-interval", "4"),  # after "penalty": the same eps on every 4th update, weight 4*eps
    "stage": (),  # a stage's budget and learning rate: the configuration's alone
    "risk": (),  # sequence_risk's options: the criterion's defaults unless a configuration pins them
    "ranking": (),
}


def option_set(name: str, cfg: "RecipeConfig") -> Tuple[str, ...]:
    """An option set as configuration ``cfg`` trains it: the set's own options, then the configuration's."""
    return (*OPTION_SETS[name], *cfg.tuning.get(name, ()))


@dataclass(frozen=True)
class Method:
    """Everything the recipe knows about one method."""

    name: str  # --methods value and run directory
    label: str  # tables and plots
    summary: str  # one line for --help
    task: str = "translation"
    criterion: str = "label_smoothed_cross_entropy"
    task_options: Tuple[str, ...] = ()  # OPTION_SETS appended after --task, in order
    criterion_options: Tuple[str, ...] = ()  # OPTION_SETS appended after --criterion, in order
    # sweep variants (name -> options appended after the configuration's; HALF / QUARTER = that share of the
    # budget); None = the method is not swept (its configuration settings only)
    grid: Optional[Mapping[str, Tuple[str, ...]]] = None
    reference: str = "baseline"  # whose run of the same seed and budget its gains are measured against
    # a stage continues the same seed's baseline run (main-selection checkpoint) for the configuration's
    # stage budget (RecipeConfig.tuning["stage"])
    stage: bool = False
    cost: float = 1.0  # training cost per update relative to the baseline's, to start the costliest runs first
    cost_note: str = ""

    def options(self, cfg: "RecipeConfig") -> List[str]:
        """fairseq-train options that select the method's task and criterion under configuration ``cfg``."""
        def expand(sets: Sequence[str]) -> List[str]:
            return [a for name in sets for a in option_set(name, cfg)]

        return ["--task", self.task, *expand(self.task_options),
                "--criterion", self.criterion, *expand(self.criterion_options)]


def _grid_rr() -> Dict[str, Tuple[str, ...]]:
    return {f"{pool}-pt{pt}{'-warm' if warm else ''}": (
        *replacement_options(pt, pool), "--replace-warmup-updates", "HALF" if warm else "0")
        for pool in ("target", "vocab", "source_target") for pt in (0.1, 0.2, 0.3) for warm in (False, True)}


def _grid_ss() -> Dict[str, Tuple[str, ...]]:
    # p_s rises to 0.5 along an inverse sigmoid. Runs that stop early on the valid metric never reach the end of
    # a ramp as long as the whole budget, hence the shorter ramps.
    def ramp(token_prob: object, length: str = "HALF") -> Tuple[str, ...]:
        return (*replacement_options(token_prob, "model"), "--replace-schedule", "inverse_sigmoid",
                "--replace-schedule-updates", length)

    return {
        **{f"pt{pt}-ramp-{length.lower()}": ramp(pt, length) for pt in (0.1, 0.3) for length in ("QUARTER", "HALF")},
        # the variants of docs/method.md §2.5: confidence-aware (Liu et al. 2021a: guesses only where confident, a
        # random token where very confident), position-dependent rates (Liu et al. 2021b), the imitation KL
        **{f"conf{c}-rand{r}": (*ramp(1), "--replace-confidence-threshold", str(c), "--replace-random-above", str(r))
           for c, r in ((0.9, 0.95), (0.7, 0.9), (0.9, 0))},
        **{f"pos-{shape}": (*ramp(0.5), "--replace-position-schedule", shape) for shape in ("exponential", "sigmoid")},
        **{f"pt0.3-imit{w}": (*ramp(0.3), "--replace-imitation-weight", str(w)) for w in (0.5, 1.0)},
    }


# sequence-level stages (docs/method.md §8): candidates per source, the sequence loss's weight A, and the sharpness
# (risk) or the margin (ranking); Edunov et al. 2018 used A 0.4-0.5, BRIO weighted ranking ~100x MLE
def _grid_sequence(last: str, prefix: str, values: Tuple[float, ...]) -> Dict[str, Tuple[str, ...]]:
    return {f"k{k}-a{a}-{prefix}{v}": ("--seq-beam", str(k), "--seq-combined-loss-alpha", str(a), last, str(v))
            for k in (4, 8) for a in (0.5, 0.9) for v in values}


_EXACT_GP_COST = "an exact-GP update ≈ 2.5× a baseline one on CPU (its double backward; bench/RESULTS.md)"

REGISTRY: Dict[str, Method] = {m.name: m for m in (
    Method("baseline", "baseline", "label-smoothed cross-entropy, teacher forcing",
           grid={DEFAULT_VARIANT: ()}),
    Method("rr", "RR", "random replacement of decoder-input tokens (the article)",
           task="translation_with_replacement", task_options=("replacement",), grid=_grid_rr()),
    Method("gp", "GP", "embedding gradient penalty",
           criterion="label_smoothed_cross_entropy_with_gp", criterion_options=("penalty",),
           grid={**{f"eps{eps}": ("--gp-method", "exact", "--gp-epsilon", str(eps)) for eps in (0.1, 0.3, 1.0)},
                 "fgm-eps1.0": ("--gp-method", "fgm", "--gp-epsilon", "1.0")},
           cost=2.5, cost_note=_EXACT_GP_COST),
    Method("rr_gp", "RR+GP", "RR and GP together",
           task="translation_with_replacement", task_options=("replacement",),
           criterion="label_smoothed_cross_entropy_with_gp", criterion_options=("penalty",),
           cost=2.5, cost_note=_EXACT_GP_COST),
    Method("ss", "SS", "the model's own guesses as replacements on a rising schedule (parallel scheduled sampling)",
           task="translation_with_replacement", task_options=("guesses",), grid=_grid_ss(),
           cost=1.3, cost_note="one extra no-grad forward per update (bench/RESULTS.md)"),
    Method("gp_lazy", "GP-lazy", "GP on every k-th update only, weight k*eps (docs/schedules.md)",
           criterion="label_smoothed_cross_entropy_with_gp", criterion_options=("penalty", "lazy"),
           grid={f"every{k}": ("--gp-interval", str(k)) for k in (2, 4, 8)},  # the configuration's eps, lazily
           cost=1.35, cost_note="the exact penalty's cost on one update in four (bench/RESULTS.md)"),
    # mle_more: the stage's extra updates with the plain token loss, so that a stage method's gain is the method's
    # and not the extra training's
    Method("mle_more", "baseline+stage", "the baseline trained for the stage budget more (token loss)",
           task_options=("stage",), stage=True),
    Method("mrt", "MRT", "minimum risk training stage (sequence_risk)",
           task_options=("stage",), criterion="sequence_risk", criterion_options=("risk",),
           grid=_grid_sequence("--seq-risk-scale", "s", (1.0, 5.0)), reference="mle_more", stage=True),
    Method("rank", "Rank", "BRIO-style ranking stage (sequence_ranking)",
           task_options=("stage",), criterion="sequence_ranking", criterion_options=("ranking",),
           grid=_grid_sequence("--seq-rank-margin", "m", (0.001, 0.01)), reference="mle_more", stage=True),
)}

# derived views, in table order
METHODS: Dict[str, str] = {name: m.label for name, m in REGISTRY.items()}  # name -> label
STAGE_METHODS: Tuple[str, ...] = tuple(name for name, m in REGISTRY.items() if m.stage)


def reference_of(method: str) -> str:
    """The method a method's gains are measured against (same seed, same training budget)."""
    return REGISTRY[method].reference


def methods_help() -> str:
    """The methods as ``--methods``' help lists them."""
    return "; ".join(f"{name}: {m.summary}" for name, m in REGISTRY.items())


def check_methods(names: Sequence[str]) -> List[str]:
    """Validate and de-duplicate method names, keeping the table order."""
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(f"--methods: unknown {unknown}; valid values are {', '.join(REGISTRY)}")
    if not names:
        raise ValueError(f"--methods needs at least one of {', '.join(REGISTRY)}")
    return [n for n in REGISTRY if n in names]


def check_stage_methods(methods: Sequence[str], cfg: "RecipeConfig") -> None:
    """Stage methods need the baseline they continue and a configuration with a stage budget."""
    stages = [m for m in methods if REGISTRY[m].stage]
    if stages and "baseline" not in methods:
        raise ValueError(f"--methods {' '.join(stages)} continue the same seed's baseline run: add baseline")
    if stages and not cfg.stage_args:
        raise ValueError(f"--methods {' '.join(stages)}: config {cfg.name} has no stage budget (stage_args); use a "
                         "configuration that defines one, e.g. finetune")
    refs = sorted({reference_of(m) for m in stages} - set(methods))
    if refs:
        raise ValueError(f"--methods {' '.join(stages)} are compared with {', '.join(refs)} (the same extra updates "
                         f"with the token loss alone): add {' '.join(refs)}")


def method_args(method: str, cfg: "RecipeConfig") -> List[str]:
    """fairseq-train options that select the method's task and criterion."""
    check_methods([method])
    return REGISTRY[method].options(cfg)
