"""Pure functions that turn LibreOffice's English and translated help pages into document pairs.

The out-of-domain test of the long-output regime: LibreOffice's offline help (Debian's ``libreoffice-help-en-us``
and ``libreoffice-help-<lang>``) is the same set of HTML pages in every language, and each paragraph carries an
``id`` shared across languages (``<p id="par_id3149355" class="paragraph">``). Aligned prose paragraphs of a page,
joined in page order into documents of about the training documents' length, give long translations from another
domain (office-suite instructions instead of package descriptions) that training never saw.
"""
from __future__ import annotations

import hashlib
from html.parser import HTMLParser
from typing import Dict, List, NamedTuple, Optional, Tuple

from fairseq_eb.prep.common import Pair, one_line

# prose paragraphs; table cells, code and image captions are left out (not sentences to translate)
PROSE_CLASSES = ("paragraph", "listitem")


class DocShape(NamedTuple):
    """How aligned paragraphs become documents (target-side words)."""

    min_words: int = 30  # a page's remainder shorter than this is dropped
    target_words: int = 50  # a document is closed as soon as its translation reaches this many words
    max_words: int = 160  # a paragraph that would push a document past this starts a new one
    min_paragraph_words: int = 5  # English words; shorter ones are headings, menu paths or labels


class _Paragraphs(HTMLParser):
    """Collect ``{id: text}`` of the prose paragraphs of one page, in page order; paragraphs holding
    platform-dependent text (``switch``/``switchinline`` spans: macOS vs other keys) are marked ``None``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: Dict[str, Optional[str]] = {}
        self._id: Optional[str] = None
        self._text: List[str] = []
        self._switch = False

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        a = dict(attrs)
        if tag == "p" and a.get("id") and (a.get("class") or "") in PROSE_CLASSES:
            self._id, self._text, self._switch = a["id"], [], False
        elif self._id is not None and "switch" in (a.get("class") or ""):
            self._switch = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "p" and self._id is not None:
            self.found[self._id] = None if self._switch else one_line("".join(self._text))
            self._id = None

    def handle_data(self, data: str) -> None:
        if self._id is not None:
            self._text.append(data)


def page_paragraphs(html: str) -> Dict[str, Optional[str]]:
    """``{paragraph id: text}`` of a help page's prose paragraphs in page order (``None``: platform-dependent)."""
    parser = _Paragraphs()
    parser.feed(html)
    parser.close()
    return parser.found


def is_sentence(text: Optional[str], min_words: int) -> bool:
    """Prose worth translating: at least ``min_words`` words and ending like a sentence."""
    return text is not None and len(text.split()) >= min_words and text.rstrip().endswith((".", "!", "?", ":"))


def aligned_paragraphs(english: Dict[str, Optional[str]], translated: Dict[str, Optional[str]],
                       shape: DocShape = DocShape()) -> List[Pair]:
    """The page's (English, translation) paragraph pairs in English page order, where both are prose and the
    translation is not a copy of the English (an untranslated string)."""
    out = []
    for pid, en in english.items():
        tr = translated.get(pid)
        if is_sentence(en, shape.min_paragraph_words) and is_sentence(tr, 2) and tr != en:
            out.append((en, tr))
    return out


def documents(paragraphs: List[Pair], shape: DocShape = DocShape()) -> List[Pair]:
    """Join consecutive aligned paragraphs of one page into documents of ``min_words``..``max_words`` target
    words, each closed once it reaches ``target_words``; a paragraph longer than ``max_words`` alone is dropped."""
    docs, src, tgt, n = [], [], [], 0
    for en, tr in paragraphs:
        words = len(tr.split())
        if words > shape.max_words:
            continue
        if n + words > shape.max_words:
            if n >= shape.min_words:
                docs.append((" ".join(src), " ".join(tgt)))
            src, tgt, n = [], [], 0
        src.append(en)
        tgt.append(tr)
        n += words
        if n >= shape.target_words:
            docs.append((" ".join(src), " ".join(tgt)))
            src, tgt, n = [], [], 0
    if n >= shape.min_words:
        docs.append((" ".join(src), " ".join(tgt)))
    return docs


def sample(docs: List[Pair], max_docs: int) -> Tuple[List[Pair], int]:
    """Distinct documents (by English text), at most ``max_docs`` chosen by a hash of the English text (stable
    across machines), in that hash order; returns them and how many duplicates were dropped."""
    unique: Dict[str, Pair] = {}
    for src, tgt in docs:
        unique.setdefault(src.lower(), (src, tgt))
    ordered = sorted(unique.values(), key=lambda p: hashlib.sha256(p[0].encode("utf-8")).hexdigest())
    return ordered[:max_docs], len(docs) - len(unique)
