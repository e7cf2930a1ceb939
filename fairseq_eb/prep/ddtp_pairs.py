"""Pure functions that join Debian's English and translated package descriptions into document pairs.

Debian's Description Translation Project (DDTP) publishes, per language, ``Translation-<lang>`` indices whose
stanzas carry the ``Description-md5`` of the English original they translate. Joining on it gives whole
documents — every paragraph of a long description — in both languages, the long-output regime's data
(``python -m fairseq_eb.prep.ddtp``). Kept apart from the download so that the rules are testable on snippets.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, NamedTuple, Tuple

from fairseq_eb.prep.common import Pair
from fairseq_eb.prep.debian_parse import Entry, SplitRouter, is_transitional


class DocLimits(NamedTuple):
    """Document limits in whitespace words: documents outside them are dropped, never truncated."""

    min_tgt_words: int = 30
    max_tgt_words: int = 160
    max_src_words: int = 200
    # siblings (texlive-*, Qt modules, python3-foo/python-foo-doc) share their first paragraph; without a cap a
    # few families would fill the training set with near copies
    max_per_group: int = 10


def join_documents(english: Iterable[Entry], translated: Iterable[Entry]) -> Tuple[List[Tuple[Entry, Entry]], Dict]:
    """(English, translated) entries that describe the same original (``Description-md5``), in the translated
    index's order, each original once; returns the pairs and what was dropped before any length rule."""
    by_md5 = {e.md5: e for e in english if e.md5}
    stats = {"translated": 0, "no_english_original": 0, "duplicate_original": 0, "no_description": 0,
             "transitional": 0, "paragraph_mismatch": 0, "untranslated": 0}
    pairs, seen = [], set()
    for t in translated:
        stats["translated"] += 1
        e = by_md5.get(t.md5)
        if e is None:
            stats["no_english_original"] += 1
        elif t.md5 in seen:
            stats["duplicate_original"] += 1
        elif not e.paragraphs:
            stats["no_description"] += 1
        elif is_transitional(e):
            stats["transitional"] += 1
        elif len(e.paragraphs) != len(t.paragraphs):  # a translation that merged or split paragraphs
            stats["paragraph_mismatch"] += 1
        elif e.paragraphs == t.paragraphs:
            stats["untranslated"] += 1
        else:
            pairs.append((e, t))
        seen.add(t.md5)
    return pairs, stats


def build_doc_splits(pairs: Iterable[Tuple[Entry, Entry]], limits: DocLimits = DocLimits(),
                     valid_permille: int = 30, test_permille: int = 30) -> Tuple[Dict[str, List[Pair]], Dict]:
    """Filter, de-duplicate and split joined documents; return ``{split: [(english, translation)]}`` and stats.

    A document is the long description's paragraphs joined by spaces. The split is a hash of the normalised
    first English paragraph (:func:`~fairseq_eb.prep.debian_parse.group_key`), so sibling packages stay in one
    split and no English document is in two; an English text seen before is dropped (identical sources with
    different translations make the target ambiguous).
    """
    stats = {"too_short_or_long": 0, "duplicate_text": 0, "group_cap": 0, "kept": 0}
    router = SplitRouter(stats, limits.max_per_group, valid_permille, test_permille)
    for e, t in pairs:
        src, tgt = " ".join(e.paragraphs), " ".join(t.paragraphs)
        n_src, n_tgt = len(src.split()), len(tgt.split())
        if not (limits.min_tgt_words <= n_tgt <= limits.max_tgt_words and n_src <= limits.max_src_words):
            stats["too_short_or_long"] += 1
            continue
        router.route(src, tgt, e)
    return router.splits, stats


def shared_paragraph_share(splits: Dict[str, List[Pair]], split: str) -> float:
    """Share of ``split``'s English sentences that also occur in training documents.

    Why reported: the split rule keeps whole documents and sibling families apart, but a boilerplate sentence
    ("This package contains the development files.") may still occur in both; the manifest says how often.
    """
    train = {s.lower() for src, _ in splits["train"] for s in _sentences(src)}
    held = [s.lower() for src, _ in splits[split] for s in _sentences(src)]
    return sum(s in train for s in held) / len(held) if held else 0.0


def _sentences(text: str) -> List[str]:
    out, current = [], []
    for word in text.split():
        current.append(word)
        if word.endswith((".", "!", "?", ":")):
            out.append(" ".join(current))
            current = []
    return out + ([" ".join(current)] if current else [])
