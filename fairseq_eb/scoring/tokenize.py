"""The two tokenisations every metric is computed on (always lower-cased).

``char``: every non-space character is a token (SPEC §4; the reference splits the raw Chinese
string into characters, Latin letters included). ``word``: whitespace-separated tokens.
"""
from typing import List

TOKENIZE_MODES = ("char", "word")


def tokenize(text: str, mode: str = "word") -> List[str]:
    if mode == "char":
        return [c for c in text.lower() if not c.isspace()]
    if mode == "word":
        return text.lower().split()
    raise ValueError(f"unknown tokenize mode {mode!r}; choose one of {TOKENIZE_MODES}")


class RougeTokenizer:
    """Adapter for rouge-score, whose default tokenizer deletes every non-ASCII character."""

    def __init__(self, mode: str) -> None:
        tokenize("", mode)  # validate early
        self.mode = mode

    def tokenize(self, text: str) -> List[str]:
        return tokenize(text, self.mode)
