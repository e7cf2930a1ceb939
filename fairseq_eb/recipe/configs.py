"""Named model/training configurations for the table recipe, all defined here in one place.

Why named configs: the demo, a longer reproduction and the tests must differ only in size and budget,
never in how a method is trained, so every method of one table shares the same ``train_args`` and only
the method's record (:mod:`fairseq_eb.recipe.methods`) adds its own options. What each configuration measured
lives in examples/results/, not here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Tuple

from fairseq_eb.choices import check_choice


@dataclass(frozen=True)
class RecipeConfig:
    """Everything that fixes a run apart from data, method and seed."""

    name: str
    description: str
    # fairseq-train options shared by every method (model, optimiser, budget, checkpointing)
    train_args: Tuple[str, ...]
    # options this configuration appends to a method option set (recipe.methods.OPTION_SETS, e.g. "replacement":
    # RR's warm-up; "stage": the stage methods' budget, without which they are refused)
    tuning: Mapping[str, Tuple[str, ...]] = field(default_factory=dict)
    # fairseq-generate options (beam size, subset and checkpoint are added by the recipe)
    generate_args: Tuple[str, ...] = ("--batch-size", "128", "--max-len-a", "0", "--max-len-b", "48")
    # fairseq-train options of a one-off denoising pre-training that every run fine-tunes from (empty = none);
    # see fairseq_eb.recipe.pretrain
    pretrain_args: Tuple[str, ...] = ()
    # k > 0: a third checkpoint selection, the average of the run's last k interval checkpoints
    # (fairseq_eb.recipe.averaging); needs --keep-interval-updates -1 (the _budget helper's)
    average_last: int = 0
    # checkpoint selections decoded on the test split (fairseq_eb.recipe.selection.SELECTIONS), the main one first
    selections: Tuple[str, ...] = ("bleu", "loss", "avg")
    # "reference": the reference experiment's scores (ROUGE, sentence BLEU); "translation": also sacreBLEU's
    # cased BLEU and chrF, length, repetition, detachment and length thirds (fairseq_eb.scoring.translation)
    scores: str = "reference"

    @property
    def stage_args(self) -> Tuple[str, ...]:
        """fairseq-train options of a stage that continues the same seed's baseline (its own budget, learning
        rate, validation interval); empty = the configuration has no stage methods."""
        return tuple(self.tuning.get("stage", ()))


def _transformer(layers: int, dim: int, ffn: int, heads: int) -> List[str]:
    # pre-norm: trains stably at the high learning rates that short CPU budgets need
    return [
        "--arch", "transformer", "--share-all-embeddings",
        "--encoder-layers", str(layers), "--decoder-layers", str(layers),
        "--encoder-embed-dim", str(dim), "--decoder-embed-dim", str(dim),
        "--encoder-ffn-embed-dim", str(ffn), "--decoder-ffn-embed-dim", str(ffn),
        "--encoder-attention-heads", str(heads), "--decoder-attention-heads", str(heads),
        "--encoder-normalize-before", "--decoder-normalize-before",
    ]


def _adam(lr: float, warmup: int, total: int) -> List[str]:
    # linear warm-up, then linear decay to 0 at the last update: a fixed, short budget ends at a low rate
    # (on valid it beat inverse-sqrt for the same budget; examples/results/)
    return [
        "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", str(lr),
        "--lr-scheduler", "polynomial_decay", "--warmup-updates", str(warmup),
        "--total-num-update", str(total), "--end-learning-rate", "0", "--clip-norm", "1.0",
    ]


def _budget(max_update: int, validate_every: int, max_epoch: int = 1000) -> List[str]:
    # Validate and save every `validate_every` updates (not at epoch ends), so the selected checkpoint is
    # meaningful even for runs shorter than a few epochs. Every interval checkpoint is kept until training
    # ends: the recipe then picks the lowest-valid-loss one as well (fairseq_eb.recipe.selection) and
    # deletes the rest.
    return [
        "--max-update", str(max_update), "--max-epoch", str(max_epoch),
        "--validate-interval-updates", str(validate_every), "--save-interval-updates", str(validate_every),
        "--validate-interval", "100000", "--save-interval", "100000",
        "--keep-interval-updates", "-1", "--no-epoch-checkpoints",
    ]


def _budget_by_loss(max_update: int, validate_every: int) -> List[str]:
    # The demo's original budget: validate every `validate_every` updates and at epoch ends, keep one interval
    # checkpoint; checkpoint_best.pt = lowest validation loss (both selections are then the same checkpoint).
    # Kept unchanged so that the demo reproduces the numbers measured with it (examples/results/).
    return [
        "--max-update", str(max_update), "--max-epoch", "1000",
        "--validate-interval-updates", str(validate_every), "--save-interval-updates", str(validate_every),
        "--keep-interval-updates", "1", "--no-epoch-checkpoints",
    ]


# beam and length limit of the validation decoding that selects checkpoints
SELECT_BEAM = 1


def _select_by_generation(max_len_b: int, patience: int = -1, max_len_a: float = 0) -> List[str]:
    # checkpoint_best.pt = highest sacreBLEU of beam-1 decoding of the validation split (fairseq's own
    # --eval-bleu machinery, available to every method incl. the baseline): valid loss is a teacher-forced
    # quantity and selecting by it is biased against methods that do not optimise teacher forcing alone.
    return [
        "--eval-bleu", "--eval-bleu-args",
        f'{{"beam": {SELECT_BEAM}, "max_len_a": {max_len_a}, "max_len_b": {max_len_b}}}',
        "--eval-bleu-remove-bpe", "sentencepiece", "--best-checkpoint-metric", "bleu",
        "--maximize-best-checkpoint-metric", "--patience", str(patience),
    ]


def _ss_ramp(total_updates: int) -> Tuple[str, ...]:
    # scheduled sampling's rising rate (inverse sigmoid, as in Bengio et al. 2015) over the whole run
    return ("--replace-schedule", "inverse_sigmoid", "--replace-schedule-updates", str(total_updates))


def _rr_warmup(updates: int) -> Tuple[str, ...]:
    # RR's replacement rate ramps up linearly over the first `updates` (from the first update it slows
    # learning in the short regimes)
    return ("--replace-warmup-updates", str(updates))


def _stage(updates: int, validate_every: int, lr: float) -> Tuple[str, ...]:
    # overrides of the configuration's schedule for a stage: linear decay from lr to 0 over the stage
    return ("--lr", str(lr), "--warmup-updates", "0", "--total-num-update", str(updates), "--max-update",
            str(updates), "--validate-interval-updates", str(validate_every), "--save-interval-updates",
            str(validate_every))


def _sequence(metric: str, max_len: Tuple[str, ...], last: Tuple[str, ...]) -> Tuple[str, ...]:
    # The sequence-level stages' settings written out in full (the sweep varies K, A, alpha / margin): a run's
    # command records them, so a change of the criterion's defaults cannot silently change a regime.
    return ("--seq-beam", "4", *max_len, "--seq-metric", metric, "--seq-combined-loss-alpha", "0.5", *last)


_RISK = ("--seq-risk-scale", "1.0")
_RANKING = ("--seq-rank-margin", "0.001", "--seq-length-penalty", "1.0")
_SHORT_TARGETS = ("--seq-max-len-b", "48")


def _stages(updates: int, metric: str = "rouge_l",
            max_len: Tuple[str, ...] = _SHORT_TARGETS) -> Dict[str, Tuple[str, ...]]:
    # a stage continues the baseline's selected checkpoint at a lower learning rate (sequence-level losses are
    # fine-tuning objectives: Edunov et al. 2018 start them from a converged token-level model), validated every
    # 50 updates
    return {"stage": _stage(updates, 50, 1e-4), "risk": _sequence(metric, max_len, _RISK),
            "ranking": _sequence(metric, max_len, _RANKING)}


CONFIGS: Dict[str, RecipeConfig] = {}


def _register(cfg: RecipeConfig) -> None:
    CONFIGS[cfg.name] = cfg


_register(RecipeConfig(
    name="tiny",
    description="tests only: a 1+1-layer d=32 model and a handful of updates (seconds)",
    train_args=tuple(_transformer(1, 32, 64, 2) + _adam(1e-3, 2, 8) + _budget(8, 4) + _select_by_generation(12) + [
        "--max-tokens", "500", "--dropout", "0.1", "--label-smoothing", "0.1", "--log-interval", "2",
    ]),
    tuning={"replacement": _rr_warmup(2), "guesses": _ss_ramp(4),
            "stage": ("--max-update", "4", "--total-num-update", "4", "--warmup-updates", "1",
                      "--validate-interval-updates", "2", "--save-interval-updates", "2"),
            "risk": ("--seq-beam", "2", "--seq-max-len-b", "12"),
            "ranking": ("--seq-beam", "2", "--seq-max-len-b", "12")},
    generate_args=("--batch-size", "64", "--max-len-a", "0", "--max-len-b", "12"),
    average_last=2,
))

_register(dataclasses.replace(
    CONFIGS["tiny"], name="tiny_long",
    description="tests only: `tiny` scored and selected as the long regime is (translation scores, valid-BLEU and "
    "averaged selections)", selections=("bleu", "avg"), scores="translation"))


# The Debian synopses demo: 2+2 layers d=128, no dropout (a budget of ~2.5 epochs does not overfit), sized and
# tuned on the *valid* split to finish three methods on 2 CPU cores in about 15 min.
def _demo(name: str, description: str, updates: int, tokens: int, lr: float, warmup: int, validate_every: int,
          log_interval: int) -> RecipeConfig:
    return RecipeConfig(
        name=name, description=description,
        train_args=tuple(_transformer(2, 128, 512, 4) + _adam(lr, warmup, updates)
                         + _budget_by_loss(updates, validate_every) + [
            "--max-tokens", str(tokens), "--dropout", "0.0", "--label-smoothing", "0.1",
            "--log-interval", str(log_interval),
        ]),
        tuning={"replacement": _rr_warmup(updates // 2), "guesses": _ss_ramp(updates)},
    )


_DEMO_UPDATES = 2000
_register(_demo("demo", f"README demo: 2+2-layer d=128 pre-norm transformer, {_DEMO_UPDATES:,} updates of 2,048 "
                "tokens; three methods on 2 CPU cores in about 15 min",
                _DEMO_UPDATES, tokens=2048, lr=3e-3, warmup=300, validate_every=500, log_interval=100))

# The demo as it was until 2026-12, kept unchanged to reproduce the demo tables committed before then.
_DEMO_V1_UPDATES = 1000
_register(_demo("demo_v1", f"the README demo before 2026-12: {_DEMO_V1_UPDATES:,} updates of 4,096 tokens (its "
                "committed tables)",
                _DEMO_V1_UPDATES, tokens=4096, lr=4e-3, warmup=150, validate_every=250, log_interval=50))

# Equal budgets (docs/evaluating.md): the comparison configurations below train every method and seed to the same
# --max-update without early stopping and select among all validations. Tables committed before that rule used
# early stopping: reproduce them with --train-args '--patience 4' (converged) or '--patience 3' (converged_cpu,
# converged_cpu_long).
# `converged`: all Debian data and a larger model (3+3 d=256, past the floor where the demo's model is barely so),
# selected by valid BLEU, within a budget one lent GPU finishes for 3 methods x 3 seeds at once
# (scripts/converged_gpu.sh). On 2 CPU cores a run takes hours.
_CONVERGED_MAX = 4000
_register(RecipeConfig(
    name="converged",
    description=f"all Debian pairs, 3+3-layer d=256 pre-norm transformer, dropout 0.1, up to {_CONVERGED_MAX:,} "
    "updates of 8,192 tokens, checkpoint selected by the valid BLEU of beam-1 decoding (every 500 updates, no early "
    "stop); minutes per run on a GPU, hours on a CPU",
    train_args=tuple(_transformer(3, 256, 1024, 4) + _adam(1e-3, 500, _CONVERGED_MAX) + _budget(_CONVERGED_MAX, 500)
                     + _select_by_generation(48) + [
        "--max-tokens", "8192", "--dropout", "0.1", "--label-smoothing", "0.1", "--log-interval", "100",
    ]),
    tuning={"replacement": _rr_warmup(500), "guesses": _ss_ramp(_CONVERGED_MAX)},
    generate_args=("--batch-size", "256", "--max-len-a", "0", "--max-len-b", "48"),
))

# `converged` sized for 2 CPU cores: all Debian pairs, the demo's 2+2 d=128 model (3+3 d=256 is out of reach without
# a GPU), about 6 epochs with dropout 0.1 (longer training over-fits without it) and a lower peak rate than
# demo_v1's (this schedule stays high for longer).
_CONVERGED_CPU_MAX = 2400
# Stage methods continue the baseline's selected checkpoint for 1/8 of its budget (a sequence-level update costs
# several token-level ones on 2 cores) at finetune's stage rate.
CONVERGED_CPU_STAGE_UPDATES = 300


def _converged_cpu(name: str, max_update: int, validate_every: int, description: str) -> RecipeConfig:
    return RecipeConfig(
        name=name,
        description=description,
        train_args=tuple(_transformer(2, 128, 512, 4) + _adam(3e-3, 300, max_update)
                         + _budget(max_update, validate_every) + _select_by_generation(48) + [
            "--max-tokens", "4096", "--dropout", "0.1", "--label-smoothing", "0.1", "--log-interval", "100",
        ]),
        tuning={"replacement": _rr_warmup(max_update // 2), "guesses": _ss_ramp(max_update),
                **_stages(CONVERGED_CPU_STAGE_UPDATES)},
        generate_args=("--batch-size", "256", "--max-len-a", "0", "--max-len-b", "48"),
    )


_register(_converged_cpu(
    "converged_cpu", _CONVERGED_CPU_MAX, 300,
    f"all Debian pairs, the demo's 2+2-layer d=128 model with dropout 0.1, up to {_CONVERGED_CPU_MAX:,} "
    "updates of 4,096 tokens (≈6 epochs), checkpoint selected by the valid BLEU of beam-1 decoding every 300 "
    "updates (no early stop); the `converged` regime at a size 2 CPU cores can train (about 1 h per seed of "
    "baseline/RR/GP)"))

# `converged_cpu` trained twice as long (≈12 epochs): does the ranking hold once the valid BLEU stops rising?
# Everything but the budget and the validation interval (400 updates) is `converged_cpu`'s.
_CONVERGED_CPU_LONG_MAX = 2 * _CONVERGED_CPU_MAX
_register(_converged_cpu(
    "converged_cpu_long", _CONVERGED_CPU_LONG_MAX, 400,
    f"`converged_cpu` with twice the budget: up to {_CONVERGED_CPU_LONG_MAX:,} updates of 4,096 tokens "
    "(≈12 epochs), validation every 400 updates, checkpoint selected by the valid BLEU of beam-1 decoding (no early "
    "stop)"))

# The article's setting in miniature: one denoising pre-training on the training-split text, then
# fine-tuning on a few thousand pairs (python -m fairseq_eb.prep.finetune). The same 2+2 d=128 model as the
# demo, with dropout (small data over-fits).
_FT_MODEL = _transformer(2, 128, 512, 4)
_FT_PRETRAIN = tuple(_FT_MODEL + _adam(3e-3, 120, 1200) + _budget(1200, 400) + [
    "--task", "denoising", "--mask", "0.3", "--mask-random", "0.1", "--mask-length", "span-poisson",
    "--poisson-lambda", "3.5", "--replace-length", "1", "--rotate", "0", "--permute-sentences", "0",
    "--insert", "0", "--tokens-per-sample", "64", "--sample-break-mode", "eos",
    "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
    "--max-tokens", "4096", "--dropout", "0.1", "--log-interval", "50",
])
_FT_TRAIN = ("--max-tokens", "2048", "--dropout", "0.1", "--label-smoothing", "0.1", "--log-interval", "40")

# Equal budgets (docs/evaluating.md, "Equal budgets"): every method and seed trains exactly FT_UPDATES updates,
# no early stopping, and the checkpoint is selected among all its validations. FT_UPDATES is where the valid metric
# of `finetune_es`'s early-stopped runs had plateaued; the learning-rate trajectory is `finetune_es`'s (linear decay
# towards 0 at 2,400), so the stopping rule is the one thing that changed. Validation every 100 updates, on a valid
# split as large as the data has (prep.finetune --valid-subset 2722 for Debian): a small valid split makes the
# selection noisy.
FT_UPDATES = 1200
# Stage methods (mrt, rank, mle_more) continue the baseline's selected checkpoint for 1/3 of its budget.
FT_STAGE_UPDATES = 400


_register(RecipeConfig(
    name="finetune",
    description=f"denoising pre-training (1,200 updates on the training-split text) then fine-tuning a 2+2-layer "
    f"d=128 model on a 5k-pair subset for exactly {FT_UPDATES:,} updates (every method and seed, no early "
    "stopping), checkpoint selected among all validations (every 100 updates)",
    pretrain_args=_FT_PRETRAIN,
    train_args=tuple(_FT_MODEL + _adam(5e-4, 100, 2400) + _budget(FT_UPDATES, 100, max_epoch=60)
                     + _select_by_generation(48) + list(_FT_TRAIN)),
    tuning={"guesses": _ss_ramp(FT_UPDATES), **_stages(FT_STAGE_UPDATES)},
    average_last=5,
))

# `finetune` as the committed tables before equal budgets ran it (examples/results/finetune/): early stopping by
# the valid BLEU of 500 pairs. Kept to reproduce those tables.
_register(RecipeConfig(
    name="finetune_es",
    description="`finetune` with early stopping, as the tables before equal budgets: until the valid BLEU stops "
    "improving (patience 5 x 80 updates, at most 2,400)",
    pretrain_args=_FT_PRETRAIN,
    train_args=tuple(_FT_MODEL + _adam(5e-4, 100, 2400) + _budget(2400, 80, max_epoch=60)
                     + _select_by_generation(48, patience=5) + list(_FT_TRAIN)),
    tuning={"guesses": _ss_ramp(2400)},
))


# Where exposure bias has room (issue "Where exposure bias bites"): English -> Italian translation of whole Debian
# package descriptions (python -m fairseq_eb.prep.ddtp; targets 30-160 words, 10x the synopses), tested in domain
# and on LibreOffice help pages (the `ood` subset). A 3+3-layer d=256 model from scratch, every method and seed
# exactly LONG_UPDATES updates (no early stopping), the checkpoint selected by the valid BLEU of beam-1 decoding
# among validations every 300 updates, plus the average of the last 3 checkpoints. Sized for one CPU core per run;
# decoding lengths follow the source (1.5 x source + 10 pieces).
LONG_UPDATES = 1800
LONG_STAGE_UPDATES = 300
_LONG_MAX_LEN = ("--max-len-a", "1.5", "--max-len-b", "10")
_register(RecipeConfig(
    name="long",
    description=f"English -> Italian translation of whole Debian package descriptions (prep.ddtp), a 3+3-layer "
    f"d=256 pre-norm transformer from scratch, dropout 0.1, exactly {LONG_UPDATES:,} updates of 4,096 tokens (no "
    "early stopping), checkpoint selected by the valid BLEU of beam-1 decoding every 300 updates, and the average of "
    "the last 3 checkpoints; about 1 h per run on one CPU core",
    train_args=tuple(_transformer(3, 256, 1024, 4) + _adam(2e-3, 300, LONG_UPDATES) + _budget(LONG_UPDATES, 300)
                     + _select_by_generation(10, max_len_a=1.5) + [
        "--max-tokens", "4096", "--dropout", "0.1", "--label-smoothing", "0.1", "--log-interval", "100",
    ]),
    # RR: the article's setting, from the first update (the sweep varies p_t, the pool and a warm-up). GP: the
    # first-order penalty, as the exact one's double backward is the regime's largest cost on CPU.
    tuning={"guesses": _ss_ramp(LONG_UPDATES), "penalty": ("--gp-method", "fgm"),
            **_stages(LONG_STAGE_UPDATES, "bleu", ("--seq-max-len-a", "1.5", "--seq-max-len-b", "10"))},
    generate_args=("--batch-size", "64", *_LONG_MAX_LEN),
    average_last=3,
    # the teacher-forced valid-loss selection is left out: decoding 5 beams x 2 test sets per selection is the
    # regime's largest cost after training
    selections=("bleu", "avg"),
    scores="translation",
))


def get_config(name: str) -> RecipeConfig:
    """Look a configuration up by name; unknown names fail naming the valid ones."""
    check_choice("--config", name, CONFIGS)
    return CONFIGS[name]
