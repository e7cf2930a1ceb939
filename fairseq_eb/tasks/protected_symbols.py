"""Symbols that carry structure, which the replacement never replaces and never draws.

Why: a pretrained multilingual model reads the language tag in its decoder input (``[en_XX]`` in mBART, ``__zh__``
with ``--decoder-langtok``) to know what to write, and mBART's decoder input carries EOS before its padding.
Replacing a tag, or feeding one mid-sentence, teaches nothing about exposure bias and breaks the convention the
pretrained model relies on. The protected set is BOS/EOS/PAD, every symbol the task appended to the dictionary
after reading it from its file (language tags, ``<mask>``, whatever a base task adds), the tags the task names
(found even when the dictionary file already lists them) and fairseq's ``madeupword`` fillers.
"""
from typing import Iterable, List

import torch
from fairseq.data import Dictionary

FILE_SYMBOLS = "_fairseq_eb_file_symbols"  # attribute: number of symbols the dictionary file gave


def remember_file_symbols(dictionary: Dictionary) -> Dictionary:
    """Record how many symbols ``dictionary`` had when loaded, so later additions are known (returns it)."""
    setattr(dictionary, FILE_SYMBOLS, len(dictionary))
    return dictionary


def added_symbols(dictionary: Dictionary) -> List[int]:
    """Ids appended after :func:`remember_file_symbols` (none when it was not called)."""
    return list(range(getattr(dictionary, FILE_SYMBOLS, len(dictionary)), len(dictionary)))


def protected_ids(dictionary: Dictionary, named: Iterable[str] = ()) -> torch.Tensor:
    """Sorted 1-D tensor of the ids never replaced nor drawn (see the module docstring).

    ``named``: symbols the base task puts in its data (language tags, ``<mask>``); those missing from the
    dictionary are ignored.
    """
    ids = {dictionary.bos(), dictionary.eos(), dictionary.pad()}
    ids.update(added_symbols(dictionary))
    ids.update(dictionary.indices[symbol] for symbol in named if symbol in dictionary.indices)
    ids.update(i for i in range(dictionary.nspecial, len(dictionary)) if dictionary[i].startswith("madeupword"))
    return torch.tensor(sorted(ids), dtype=torch.long)
