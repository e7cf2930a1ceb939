"""The two tokenisations every metric (and the recipe's first-K floor) is computed on, lower-cased.

``char``: every non-space character is a token (the reference splits the raw Chinese string into
characters, Latin letters included; docs/method.md §6). ``word``: whitespace-separated tokens.
"""
from typing import List

from fairseq_eb.choices import check_choice

TOKENIZE_MODES = ("char", "word")


def tokenize(text: str, mode: str = "word") -> List[str]:
    """Lower-cased tokens of ``text``: words (``word``) or non-space characters (``char``)."""
    if mode == "char":
        return [c for c in text.lower() if not c.isspace()]
    if mode == "word":
        return text.lower().split()
    check_choice("--tokenize", mode, TOKENIZE_MODES)
    raise AssertionError("unreachable")


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds a CJK ideograph, kana or hangul (scripts written without spaces)."""
    return any("\u3040" <= c <= "\u30ff" or "\u3400" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af"
               or "\uf900" <= c <= "\ufaff" for c in text)
