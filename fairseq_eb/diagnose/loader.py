"""Thin fairseq adapter: a checkpoint, its task and one data split, loaded the way fairseq-generate does.

Going through ``checkpoint_utils.load_model_ensemble_and_task`` keeps everything fairseq applies:
``--user-dir`` models and tasks, shared dictionaries, the checkpoint's own task settings and the safe
loader. Only the data path is overridden, so the training data is never needed.
"""
from __future__ import annotations

import os
from argparse import Namespace
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Tuple

import torch

from fairseq_eb.diagnose.errors import DiagnoseError


@dataclass
class Loaded:
    model: Any
    task: Any
    cfg: Any
    subset: str
    device: torch.device


def load(checkpoint: str, data_bin: str, subset: str = "valid", user_dir: Optional[str] = None,
         cpu: bool = False) -> Loaded:
    """Load model, task and ``subset``; every failure is a :class:`DiagnoseError` naming the option."""
    from fairseq import checkpoint_utils, utils
    from fairseq.models import FairseqEncoderDecoderModel

    import fairseq_eb
    from fairseq_eb.user_dir import user_dir as own_user_dir

    # this process imported fairseq_eb before fairseq, so fairseq's --user-dir import finds it loaded and
    # would not run it: register explicitly (the safe checkpoint loader and our task/criterion)
    fairseq_eb.register()

    if not os.path.isfile(checkpoint):
        raise DiagnoseError(f"--path {checkpoint}: no such checkpoint file")
    if not os.path.isdir(data_bin):
        raise DiagnoseError(f"DATA_BIN {data_bin}: no such directory (the binarised data of fairseq-preprocess)")
    try:
        utils.import_user_module(Namespace(user_dir=user_dir or own_user_dir()))
    except Exception as e:  # noqa: BLE001 - any import failure is the user's --user-dir
        raise DiagnoseError(f"--user-dir {user_dir}: cannot import it ({type(e).__name__}: {e})") from e
    try:
        models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
            [checkpoint], arg_overrides={"data": data_bin})
    except Exception as e:  # noqa: BLE001 - fairseq raises many kinds; say what failed, once
        raise DiagnoseError(f"--path {checkpoint}: cannot load it as a fairseq checkpoint with data {data_bin} "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    model = models[0]
    if not isinstance(model, FairseqEncoderDecoderModel):
        raise DiagnoseError(f"--path {checkpoint}: its model ({type(model).__name__}) is not an encoder-decoder "
                            "(seq2seq) model; fairseq-eb-diagnose needs a translation-style checkpoint")
    try:
        task.load_dataset(subset)
    except (FileNotFoundError, KeyError) as e:
        raise DiagnoseError(f"--subset {subset}: no such split in {data_bin} ({e})") from e
    if not _has_target(task.dataset(subset)):
        raise DiagnoseError(f"--subset {subset}: split has no target side in {data_bin}; references are needed")
    use_cuda = torch.cuda.is_available() and not cpu
    device = torch.device("cuda" if use_cuda else "cpu")
    model.to(device).eval()
    return Loaded(model=model, task=task, cfg=cfg, subset=subset, device=device)


def _has_target(dataset) -> bool:
    """Whether every sentence of ``dataset`` has a target: a language-pair dataset with one, or a concatenation of
    such datasets (a multilingual task's split holds one per language pair)."""
    if getattr(dataset, "tgt", None) is not None:
        return True
    parts = getattr(dataset, "datasets", None)
    return bool(parts) and all(_has_target(part) for part in parts)


def batches(loaded: Loaded, max_sentences: Optional[int] = None, max_tokens: int = 4096,
            batch_size: Optional[int] = None) -> Tuple[int, Iterator[dict]]:
    """``(number of batches, batches)`` of the split in fairseq's order (by length, not shuffled).

    Only ids < ``max_sentences`` when given (the first N sentences, whatever the batching). Sentences
    longer than the model's positions are skipped, as fairseq-generate does with
    ``--skip-invalid-size-inputs-valid-test``; the result reports how many sentences were used.
    """
    from fairseq import utils

    task, model = loaded.task, loaded.model
    dataset = task.dataset(loaded.subset)
    if getattr(dataset, "datasets", None):  # a multilingual split: one dataset per pair, each numbering from 0
        dataset = _GlobalIds(dataset)
    if max_sentences is not None:
        dataset = _FirstN(dataset, max_sentences)
    itr = task.get_batch_iterator(
        dataset=dataset, max_tokens=max_tokens, max_sentences=batch_size,
        max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions()),
        ignore_invalid_inputs=True, required_batch_size_multiple=1, seed=1, num_shards=1, shard_id=0,
        num_workers=0,
    ).next_epoch_itr(shuffle=False)
    return len(itr), itr


def _GlobalIds(dataset):
    """Wrap a concatenation of datasets so that every sentence's ``id`` is its index in the concatenation (the
    parts number their sentences from 0 each, and sentences are told apart by id)."""
    from fairseq.data import BaseWrapperDataset  # lazily: this package imports without fairseq

    class GlobalIds(BaseWrapperDataset):
        def __getitem__(self, index):
            return {**self.dataset[index], "id": index}

    return GlobalIds(dataset)


def _FirstN(dataset, n: int):
    """Wrap ``dataset`` so that only its first ``n`` sentences (by id) are batched; ids are unchanged."""
    from fairseq.data import BaseWrapperDataset  # lazily: this package imports without fairseq

    class FirstN(BaseWrapperDataset):
        """The first ``n`` sentences (by id) of a dataset; ids are unchanged."""

        def __init__(self, dataset, n: int):
            super().__init__(dataset)
            self.n = min(int(n), len(dataset))

        def __len__(self):
            return self.n

        def ordered_indices(self):
            order = self.dataset.ordered_indices()
            return order[order < self.n]

        @property
        def sizes(self):
            return self.dataset.sizes[: self.n]

    return FirstN(dataset, n)
