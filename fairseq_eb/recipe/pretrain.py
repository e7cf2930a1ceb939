"""The ``finetune`` regime's one pre-training: fairseq's own ``denoising`` task (the BART objective).

Why one: every method and seed of the regime fine-tunes from the same pre-trained checkpoint, so the
comparison isolates the methods. The text is the training split only (``python -m fairseq_eb.prep.finetune``
builds ``DATA/pretrain-bin``); the model has the regime's architecture and dictionary (which holds ``<mask>``).
Resumable like every recipe step: ``OUT/pretrain/settings.json``, ``train.log``, ``train.done``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

from fairseq_eb.recipe.configs import RecipeConfig
from fairseq_eb.user_dir import user_dir


@dataclass(frozen=True, eq=False)
class PretrainSpec:
    """The pre-training run; duck-types the parts of :class:`~fairseq_eb.recipe.run_steps.RunSpec` that
    :func:`~fairseq_eb.recipe.run_steps.train` and :func:`~fairseq_eb.recipe.run_steps.check_settings` use."""

    data_dir: Path
    run_dir: Path
    cfg: RecipeConfig
    device_args: Sequence[str]
    threads: int = 1
    seed: int = 1

    tag = "pretrain"

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "checkpoints" / "checkpoint_best.pt"

    def _options(self) -> List[str]:
        return ["--seed", str(self.seed), "--log-format", "simple", "--no-progress-bar", "--num-workers", "0",
                *self.cfg.pretrain_args, *self.device_args]

    def train_command(self) -> List[str]:
        return [sys.executable, "-m", "fairseq_cli.train", str(self.data_dir / "pretrain-bin"),
                "--user-dir", user_dir(), "--save-dir", str(self.run_dir / "checkpoints"), *self._options()]

    def settings(self) -> Dict[str, object]:
        from fairseq_eb.recipe.run_steps import data_fingerprint

        return {"pretrain": self._options(), "data": data_fingerprint(self.data_dir, "pretrain-bin")}


def check_pretrain_data(data_dir: Path) -> None:
    """Fail early when the regime's pre-training text has not been prepared."""
    if not (data_dir / "pretrain-bin" / "train.bin").exists():
        raise FileNotFoundError(
            f"--data {data_dir}: missing pretrain-bin/train.bin; this configuration pre-trains first: derive its "
            f"data with python -m fairseq_eb.prep.finetune --parent PREPARED_DIR --out {data_dir}")
