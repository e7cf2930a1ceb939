"""The long-output regime's data: DDTP document pairs, LibreOffice help documents, the preparer, extra test sets."""
import json
import re
from pathlib import Path

import pytest

from fairseq_eb.prep import ddtp, help_pages
from fairseq_eb.prep.binarize import binarize
from fairseq_eb.prep.common import PrepError
from fairseq_eb.prep.ddtp_pairs import DocLimits, build_doc_splits, join_documents, shared_paragraph_share
from fairseq_eb.prep.debian_parse import Entry, parse_translation, split_of

EN = """\
Package: alpha
Description-md5: aaaa
Description-en: first tool
 Alpha reads files quickly.
 .
 It writes them too.

Package: alpha-doc
Description-md5: aaab
Description-en: first tool (documentation)
 Alpha reads files quickly.
 .
 This package contains the manual.

Package: beta
Description-md5: bbbb
Description-en: second tool
 Beta sorts lines.

Package: gamma
Description-md5: cccc
Description-en: third tool
 Gamma draws charts.
"""

IT = """\
Package: alpha
Description-md5: aaaa
Description-it: primo strumento
 Alpha legge file velocemente.
 .
 Li scrive anche.

Package: alpha-doc
Description-md5: aaab
Description-it: primo strumento (documentazione)
 Alpha legge file velocemente. Questo pacchetto contiene il manuale.

Package: beta
Description-md5: bbbb
Description-it: secondo strumento
 Beta sorts lines.

Package: gamma
Description-md5: cccc
Description-it: terzo strumento
 Gamma disegna grafici.

Package: delta
Description-md5: dddd
Description-it: senza originale
 Nessun originale inglese.
"""


def test_parse_translation_reads_any_language_and_the_md5():
    entries = parse_translation(IT, "it")
    assert [(e.package, e.md5) for e in entries][:2] == [("alpha", "aaaa"), ("alpha-doc", "aaab")]
    assert entries[0].paragraphs == ("Alpha legge file velocemente.", "Li scrive anche.")
    assert parse_translation(IT, "en") == []  # Description-en absent: nothing to read


def test_join_documents_keeps_aligned_translations_only():
    pairs, stats = join_documents(parse_translation(EN), parse_translation(IT, "it"))
    assert [(e.package, t.package) for e, t in pairs] == [("alpha", "alpha"), ("gamma", "gamma")]
    assert stats == {"translated": 5, "no_english_original": 1, "duplicate_original": 0, "no_description": 0,
                     "transitional": 0, "paragraph_mismatch": 1, "untranslated": 1}


def _doc(i: int, words: int, family: str = "") -> tuple:
    first = f"{family or f'tool{chr(97 + i % 26)}{chr(97 + i // 26)}'} does things"
    e = Entry(f"p{i}", "s", (first + " " + " ".join(["word"] * words), f"extra {i}"), f"m{i}")
    t = Entry(f"p{i}", "s", ("fa cose " + " ".join(["parola"] * words), f"altro {i}"), f"m{i}")
    return e, t


def test_build_doc_splits_limits_dedup_family_cap_and_hash_split():
    pairs = [_doc(i, 40) for i in range(30)] + [_doc(100, 5), _doc(101, 300)]  # too short / too long
    pairs.append(pairs[0])  # the same English text again
    pairs += [_doc(200 + i, 40, family="shared family") for i in range(4)]  # one family of 4
    splits, stats = build_doc_splits(pairs, DocLimits(max_per_group=3), valid_permille=200, test_permille=200)
    assert stats == {"too_short_or_long": 2, "duplicate_text": 1, "group_cap": 1, "kept": 33}
    first_paragraph = {" ".join(e.paragraphs): e.paragraphs[0] for e, _ in pairs}
    for split, docs in splits.items():
        for src, tgt in docs:
            key = " ".join(re.sub(r"[^a-z]+", " ", first_paragraph[src].lower()).split())  # recomputed here
            assert split_of(key, 200, 200) == split
            assert len(tgt.split()) >= 30
    assert {s for s, docs in splits.items() if docs} == {"train", "valid", "test"}
    family = [s for s, docs in splits.items() for src, _ in docs if src.startswith("shared family")]
    assert len(family) == 3 and len(set(family)) == 1  # siblings stay together, at most 3


def test_shared_sentence_share_counts_boilerplate():
    splits = {"train": [("A b. Common line.", "x")], "valid": [("Common line. New one.", "y")], "test": []}
    assert shared_paragraph_share(splits, "valid") == 0.5
    assert shared_paragraph_share(splits, "test") == 0.0


PAGE_EN = """<html><body>
<h1 id="par_1">Title</h1>
<p id="par_a" class="paragraph">Inserts a table into the current document at the cursor.</p>
<p id="par_b" class="paragraph">Choose Table - Insert Table</p>
<p id="par_c" class="paragraph">Press <span class="switchinline"><span class="case">Cmd</span>Ctrl</span>+F12 now.</p>
<p id="par_d" class="listitem">Select the text, and then convert it into a table of several rows.</p>
<p id="par_e" class="tablecontent">A cell of a table that is not prose at all.</p>
<p id="par_f" class="paragraph">This sentence was never translated into the other language.</p>
</body></html>"""
PAGE_IT = """<html><body>
<p id="par_a" class="paragraph">Inserisce una tabella nel documento attivo, nella posizione del cursore.</p>
<p id="par_b" class="paragraph">Scegliete Tabella - Inserisci tabella</p>
<p id="par_c" class="paragraph">Premete Ctrl+F12 per aprirla subito.</p>
<p id="par_d" class="listitem">Selezionate il testo e convertitelo in una tabella di varie righe.</p>
<p id="par_e" class="tablecontent">Una cella.</p>
<p id="par_f" class="paragraph">This sentence was never translated into the other language.</p>
</body></html>"""


def test_help_pages_align_prose_paragraphs_by_id():
    en, it = help_pages.page_paragraphs(PAGE_EN), help_pages.page_paragraphs(PAGE_IT)
    assert list(en) == ["par_a", "par_b", "par_c", "par_d", "par_f"]  # prose classes only, in page order
    assert en["par_c"] is None  # platform-dependent keys: not used
    aligned = help_pages.aligned_paragraphs(en, it)
    # par_b is a menu path (no sentence end), par_c platform-dependent, par_f untranslated
    assert [a for a, _ in aligned] == [en["par_a"], en["par_d"]]
    assert aligned[1][1] == "Selezionate il testo e convertitelo in una tabella di varie righe."


def test_help_documents_join_consecutive_paragraphs_within_limits():
    paragraphs = [(f"en {i} " + "w " * 20, f"it {i} " + "p " * 18) for i in range(7)]  # 20 target words each
    shape = help_pages.DocShape(min_words=30, target_words=50, max_words=70)
    docs = help_pages.documents(paragraphs, shape)
    assert [len(t.split()) for _, t in docs] == [60, 60]  # 3 + 3 paragraphs; the 7th alone (20) is dropped
    assert docs[0][0].startswith("en 0") and "en 3" in docs[1][0]
    chosen, duplicates = help_pages.sample(docs + [docs[0]], 1)
    assert duplicates == 1 and len(chosen) == 1


def _fake_downloads(out: Path, n_docs: int = 40) -> None:
    """What fetch_indices leaves behind, made by hand: the test needs neither apt nor network."""
    en, it = [], []
    letters = lambda k: chr(97 + k % 26) + chr(97 + k // 26)  # noqa: E731 - digits would not split families
    for i in range(n_docs):
        words = " ".join(f"w{letters(i)}x{letters(j)}" for j in range(35))
        en.append(f"Package: p{i}\nDescription-md5: m{i}\nDescription-en: s\n Tool {i} {words}.\n .\n Second {i}.\n")
        it.append(f"Package: p{i}\nDescription-md5: m{i}\nDescription-it: s\n Strumento {i} {words}.\n .\n Due {i}.\n")
    out.mkdir(parents=True)
    (out / "Translation-en").write_text("\n".join(en))
    (out / "Translation-it").write_text("\n".join(it))
    for side, lang, page in (("en-us", "en-US", PAGE_EN), ("it", "it", PAGE_IT)):
        root = out / "help" / f"libreoffice-help-{side}"
        text = root / "usr/share/libreoffice/help" / lang / "text" / "swriter"
        text.mkdir(parents=True)
        (text / "page.html").write_text(page.replace("current document", "current document " + "w " * 30)
                                        .replace("nella posizione", "nella posizione " + "p " * 30))
        (root / ".complete").write_text("fake.deb sha256:0\n")


def test_prepare_builds_raw_splits_ood_and_manifest_then_binarizes_ood(tmp_path):
    out = tmp_path / "ddtp"
    _fake_downloads(out)
    manifest = ddtp.prepare(out, valid_permille=200, test_permille=200, ood_max_docs=5)
    counts = manifest["counts"]
    assert counts["train"] + counts["valid"] + counts["test"] == 40 and min(counts.values()) >= 1
    assert counts["ood"] == 1 and manifest["ood_stats"]["paragraphs"] == 2
    ood_src = (out / "raw" / "ood.src").read_text().splitlines()
    assert ood_src[0].startswith("Inserts a table") and "Select the text" in ood_src[0]
    assert manifest["lengths"]["train"]["tgt_words"] == 39.0  # "Strumento i" + 35 words + "Due i." = 39
    again = ddtp.prepare(out, valid_permille=200, test_permille=200, ood_max_docs=5)
    assert again == manifest  # nothing rebuilt
    stamps = binarize(out, vocab_size=60)
    assert (out / "bin" / "ood.src-tgt.tgt.idx").exists() and not list((out / "bin").glob("test1.*"))
    assert stamps["encode_stats"]["ood"]["pairs"] == 1
    pieces = json.loads((out / "manifest.json").read_text())["pieces"]
    assert set(pieces) == {"train", "valid", "test", "ood"} and pieces["ood"]["tgt_pieces_mean"] > 30


@pytest.mark.parametrize("kwargs, option", [
    ({"lang": "en"}, "--lang"), ({"lang": "It"}, "--lang"), ({"valid_permille": 0}, "--valid-permille"),
    ({"test_permille": 600}, "--test-permille"), ({"test_permille": 500, "valid_permille": 500}, "below 1000"),
    ({"limits": DocLimits(min_tgt_words=50, max_tgt_words=40)}, "--min-tgt-words"),
    ({"ood_max_docs": -1}, "--ood-max-docs"),
])
def test_prepare_refuses_bad_options_before_downloading(tmp_path, kwargs, option):
    with pytest.raises(PrepError, match=option):
        ddtp.prepare(tmp_path / "never", **kwargs)
    assert not (tmp_path / "never").exists()


def test_prepare_refuses_another_corpus(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"dataset": "debian-descriptions"}))
    with pytest.raises(PrepError, match="another corpus"):
        ddtp.prepare(out)
