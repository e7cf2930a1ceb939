"""The trivial floor: output the first K source tokens as the 'summary'.

Why: on abstract->title data a copy of the opening words already scores well; a trained model that does
not clearly beat it has learned nothing worth comparing. K is chosen on the validation split only (best
ROUGE-L among candidates around the median reference length), then scored once on test.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

from fairseq_eb.scoring.tokenize import TOKENIZE_MODES
from fairseq_eb.scoring.tokenize import tokenize as scorer_tokens

TOKENIZE_CHOICES = TOKENIZE_MODES


def tokens(text: str, tokenize: str) -> List[str]:
    """The scorer's tokens (lower-cased words or non-space characters), so K counts what is scored."""
    return scorer_tokens(text, tokenize)


def first_k(sources: Sequence[str], k: int, tokenize: str) -> List[str]:
    """Each source cut to its first ``k`` scorer tokens (joined by spaces for words, nothing for characters)."""
    sep = " " if tokenize == "word" else ""
    return [sep.join(tokens(s, tokenize)[:k]) for s in sources]


def candidate_ks(references: Sequence[str], tokenize: str) -> List[int]:
    """K values worth trying: from half to twice the median reference length (at least 1..3)."""
    lengths = [len(tokens(r, tokenize)) for r in references] or [1]
    median = max(1, int(round(statistics.median(lengths))))
    return list(range(max(1, median // 2), max(3, 2 * median) + 1))


def read_lines(path: Path) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def choose_and_score(raw_dir: Path, tokenize: str, score_fn: Callable[..., Dict[str, float]], test: str = "test"
                     ) -> Tuple[int, Dict[str, float], Dict[int, float]]:
    """Pick K by validation ROUGE-L, then score the ``test`` split. Returns (K, its scores, {K: valid ROUGE-L})."""
    valid_src, valid_ref = read_lines(raw_dir / "valid.src"), read_lines(raw_dir / "valid.tgt")
    test_src, test_ref = read_lines(raw_dir / f"{test}.src"), read_lines(raw_dir / f"{test}.tgt")
    for name, src, ref in (("valid", valid_src, valid_ref), (test, test_src, test_ref)):
        if len(src) != len(ref):
            raise ValueError(f"{raw_dir}/{name}.src has {len(src)} lines but {name}.tgt has {len(ref)}")
    by_k = {k: float(score_fn(first_k(valid_src, k, tokenize), valid_ref, tokenize=tokenize)["rouge-l"])
            for k in candidate_ks(valid_ref, tokenize)}
    best = max(by_k, key=lambda k: (by_k[k], -k))
    test_scores = dict(score_fn(first_k(test_src, best, tokenize), test_ref, tokenize=tokenize))
    return best, test_scores, by_k
