"""Pure functions that turn Debian's ``Translation-en`` text into split (description, synopsis) pairs.

Kept apart from the apt download so that the data logic is testable on a hand-made snippet.
"""
import hashlib
import re
from typing import Dict, Iterable, List, NamedTuple, Tuple

from fairseq_eb.prep.common import Pair, one_line


class Entry(NamedTuple):
    package: str
    synopsis: str
    paragraphs: Tuple[str, ...]  # the long description, unfolded, one string per paragraph
    md5: str = ""  # Description-md5: the English original's identity, shared by every language's translation


class Limits(NamedTuple):
    """Length limits in whitespace words: examples outside them are dropped, not truncated."""

    min_src_words: int = 8
    max_src_words: int = 400
    min_tgt_words: int = 2
    max_tgt_words: int = 20
    # Siblings share most of their text (Qt alone has 500+ module packages with one first
    # paragraph); more than a few per group would dominate training and test alike.
    max_per_group: int = 5


def parse_translation(text: str, language: str = "en") -> List[Entry]:
    """Parse a ``Translation-<language>`` file (deb822 stanzas with ``Package`` and ``Description-<language>``).

    The first line of ``Description-en`` is the synopsis; continuation lines form the long
    description, where a line `` .`` separates paragraphs and lines indented by two or more
    spaces are verbatim (lists, code). Everything is unfolded into single-line paragraphs.
    """
    entries: List[Entry] = []
    for stanza in re.split(r"\n[ \t]*\n", text):
        package, synopsis, body, in_description, md5 = None, None, [], False, ""
        for line in stanza.split("\n"):
            if line.startswith((" ", "\t")):
                if in_description:
                    body.append(line)
                continue
            in_description = False
            key, sep, value = line.partition(":")
            if not sep:
                continue
            if key == "Package":
                package = value.strip()
            elif key == f"Description-{language}":
                synopsis, in_description = value.strip(), True
            elif key == "Description-md5":
                md5 = value.strip()
        if package and synopsis is not None:
            entries.append(Entry(package, one_line(synopsis), _paragraphs(body), md5))
    return entries


def _paragraphs(lines: Iterable[str]) -> Tuple[str, ...]:
    paragraphs: List[str] = []
    current: List[str] = []
    for line in lines:
        if line.strip() == ".":
            if current:
                paragraphs.append(one_line(" ".join(current)))
            current = []
        else:
            current.append(line.strip())
    if current:
        paragraphs.append(one_line(" ".join(current)))
    return tuple(p for p in paragraphs if p)


_TRANSITIONAL_SYNOPSIS = re.compile(r"\b(transitional|transition|dummy)\b", re.I)
_TRANSITIONAL_BODY = re.compile(r"\b(transitional|dummy|empty) (dummy )?package\b", re.I)


def is_transitional(entry: Entry) -> bool:
    """Transitional/dummy packages only point at their successor: no summarisation to learn."""
    return bool(_TRANSITIONAL_SYNOPSIS.search(entry.synopsis)
                or any(_TRANSITIONAL_BODY.search(p) for p in entry.paragraphs))


def group_key(entry: Entry) -> str:
    """The normalised first paragraph: siblings (``libfoo1``, ``libfoo-dev``, ``-doc``) share it.

    Lower-cased, digits and punctuation dropped, so ``python3-foo`` / ``python-foo`` style
    siblings whose first paragraph differs only by a version number also group together.
    """
    first = entry.paragraphs[0] if entry.paragraphs else entry.synopsis
    return " ".join(re.sub(r"[^a-z]+", " ", first.lower()).split())


def split_of(key: str, valid_permille: int, test_permille: int) -> str:
    """Deterministic split from a hash of ``key`` (stable across machines and Python versions)."""
    bucket = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % 1000
    if bucket < test_permille:
        return "test"
    if bucket < test_permille + valid_permille:
        return "valid"
    return "train"


class SplitRouter:
    """The de-duplication, sibling cap and hash split that both Debian builders apply after their own filters.

    Why one place: the synopsis and the document datasets must agree on what a duplicate is and which split a
    sibling family lands in. ``route`` counts into the caller's ``stats`` (keys ``duplicate_text``,
    ``group_cap``, ``kept``), so each builder keeps its manifest's key order.
    """

    def __init__(self, stats: Dict[str, int], max_per_group: int, valid_permille: int, test_permille: int):
        self.stats, self.max_per_group = stats, max_per_group
        self.valid_permille, self.test_permille = valid_permille, test_permille
        self.splits: Dict[str, List[Pair]] = {"train": [], "valid": [], "test": []}
        self.seen_sources: set = set()
        self.group_sizes: Dict[str, int] = {}

    def route(self, src: str, tgt: str, entry: Entry) -> None:
        """Keep ``(src, tgt)`` unless its source text was seen or its family is full (first ones kept)."""
        if src.lower() in self.seen_sources:
            self.stats["duplicate_text"] += 1
            return
        self.seen_sources.add(src.lower())
        key = group_key(entry)
        self.group_sizes[key] = self.group_sizes.get(key, 0) + 1
        if self.group_sizes[key] > self.max_per_group:
            self.stats["group_cap"] += 1
            return
        self.splits[split_of(key, self.valid_permille, self.test_permille)].append((src, tgt))
        self.stats["kept"] += 1


def build_splits(entries: Iterable[Entry], limits: Limits = Limits(), valid_permille: int = 50,
                 test_permille: int = 50) -> Tuple[Dict[str, List[Pair]], Dict[str, int]]:
    """Filter, de-duplicate and split; return ``{split: [(src, tgt), ...]}`` and drop statistics.

    Kept: the first stanza per package; not transitional/dummy; a long description exists;
    lengths within ``limits``; the source text not seen before (identical descriptions with
    different synopses would make the target ambiguous, and identical pairs are pure repetition);
    at most ``limits.max_per_group`` examples per sibling group (first ones in input order).
    Output order is the input order (Translation-en is sorted by package name).
    """
    stats = {"entries": 0, "duplicate_package": 0, "transitional": 0, "no_description": 0,
             "too_short_or_long": 0, "duplicate_text": 0, "group_cap": 0, "kept": 0}
    router = SplitRouter(stats, limits.max_per_group, valid_permille, test_permille)
    seen_packages = set()
    for entry in entries:
        stats["entries"] += 1
        if entry.package in seen_packages:
            stats["duplicate_package"] += 1
            continue
        seen_packages.add(entry.package)
        if is_transitional(entry):
            stats["transitional"] += 1
            continue
        if not entry.paragraphs:
            stats["no_description"] += 1
            continue
        src, tgt = " ".join(entry.paragraphs), entry.synopsis
        n_src, n_tgt = len(src.split()), len(tgt.split())
        if not (limits.min_src_words <= n_src <= limits.max_src_words
                and limits.min_tgt_words <= n_tgt <= limits.max_tgt_words):
            stats["too_short_or_long"] += 1
            continue
        router.route(src, tgt, entry)
    return router.splits, stats
