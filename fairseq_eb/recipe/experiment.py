"""One invocation of the table recipe or the sweep, checked: what to run, on which data, and where.

Why a typed record instead of argparse's namespace: the orchestration (:mod:`fairseq_eb.recipe.table`) and the
report (:mod:`fairseq_eb.recipe.report`) read the same fields, so they are declared once, with their types and
their normalised values (sorted beams, de-duplicated seeds, methods in table order, the ``--init-from``
checkpoint read once); nothing sets or guesses an attribute later.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from fairseq_eb.recipe.configs import RecipeConfig, get_config
from fairseq_eb.recipe.init_from import InitFrom


@dataclass(frozen=True, eq=False)
class Experiment:
    """The recipe's command line after :func:`fairseq_eb.recipe.table.validate`."""

    data: Path  # prepared data directory (DIR/bin, optional DIR/raw and DIR/spm.model)
    out: Path  # where table.md, results.json, plot.png (and by default runs/) go
    config: str  # name of the RecipeConfig
    methods: List[str]  # in table order (fairseq_eb.recipe.methods.REGISTRY)
    seeds: List[int]  # de-duplicated, in the given order
    beams: List[int]  # sorted
    tokenize: str  # scoring tokenisation: word or char
    jobs: int  # runs trained in parallel
    threads: int  # torch threads per run (0: CPU cores // jobs)
    device: str  # auto, cpu or cuda
    train_args: str  # extra fairseq-train options for every run, one string
    name: str  # data name in the table ("" = the data directory's name)
    no_floor: bool
    chosen: Optional[Path]  # a sweep's chosen.json
    test_subset: str  # the split decoded and scored
    runs: Optional[Path]  # where the runs live (None: OUT/runs)
    init: Optional[InitFrom]  # --init-from, read once: every run's model options come from it

    @property
    def cfg(self) -> RecipeConfig:
        return get_config(self.config)

    @property
    def runs_dir(self) -> Path:
        return self.runs or self.out / "runs"

    @property
    def title(self) -> str:
        """The data's name in tables and plots."""
        return self.name or self.data.resolve().name
