"""sacreBLEU's ``13a`` tokenizer (mteval-v13a), same output, several times faster on Python 3.11.

Why: sacreBLEU's first 13a rule pads every punctuation character *and every space* with spaces through a
regular expression with a template replacement, which Python 3.11 expands in Python code once per
match: for 10,000 sentence pairs it was most of the scorer's run time. That rule replaces single
characters regardless of context, so ``str.translate`` does the same. The other rules (period, comma,
dash next to digits) keep their expressions and run only when the line holds such a character. The
output equals sacreBLEU's own tokenizer (checked in the tests), so the signature stays ``tok:13a``.
"""
import re
from typing import Dict, List, Tuple

# the character class [\{-\~\[-\` -\&\(-\+\:-\@\/] of sacreBLEU's first rule
_CODES: List[int] = [*range(0x20, 0x27), *range(0x28, 0x2C), 0x2F, *range(0x3A, 0x41), *range(0x5B, 0x61),
                     *range(0x7B, 0x7F)]
_PAD: Dict[int, str] = {c: f" {chr(c)} " for c in _CODES}
_CONTEXT_RULES: Tuple[Tuple[str, "re.Pattern[str]", str], ...] = (
    (".,", re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),  # period and comma unless preceded by a digit
    (".,", re.compile(r"([\.,])([^0-9])"), r" \1 \2"),  # ... unless followed by a digit
    ("-", re.compile(r"([0-9])(-)"), r"\1 \2 "),  # dash after a digit
)
_ENTITIES = (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"))


class Tokenizer13a:
    """Drop-in for ``sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a`` (a callable with ``signature()``)."""

    def signature(self) -> str:
        return "13a"

    def __call__(self, line: str) -> str:
        line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
        if "&" in line:
            for entity, char in _ENTITIES:
                line = line.replace(entity, char)
        line = f" {line} ".translate(_PAD)
        for trigger, pattern, replacement in _CONTEXT_RULES:
            if any(c in line for c in trigger):
                line = pattern.sub(replacement, line)
        return " ".join(line.split())
