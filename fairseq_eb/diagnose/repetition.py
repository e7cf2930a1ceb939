"""Share of outputs with a repeated n-gram: degenerate repetition as one number (pure, text only).

Why a share of sentences rather than a count of n-grams: one looping output ("the the the the") is
one failure whatever its length, and the share compares directly with the same share in the
references, which natural text also has (a title may repeat a word).
"""
from __future__ import annotations

from typing import Hashable, Sequence

from fairseq_eb.scoring.tokenize import tokenize as tokenize_text


def has_repeated_ngram(tokens: Sequence[Hashable], n: int = 2) -> bool:
    """True when some n-gram occurs at least twice in ``tokens`` (overlapping occurrences count)."""
    if n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n}")
    seen = set()
    for i in range(len(tokens) - n + 1):
        gram = tuple(tokens[i:i + n])
        if gram in seen:
            return True
        seen.add(gram)
    return False


def repeated_ngram_share(texts: Sequence[str], n: int = 2, tokenize: str = "word") -> float:
    """Fraction of ``texts`` (plain strings) that contain a repeated n-gram, in [0, 1].

    Texts are split like the scorer splits them (``word``: lower-cased whitespace tokens, ``char``:
    every non-space character), so the share is comparable with the scores next to it.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string")
    if len(texts) == 0:
        raise ValueError("repeated_ngram_share needs at least one text")
    hits = sum(has_repeated_ngram(tokenize_text(t, tokenize), n) for t in texts)
    return hits / len(texts)
