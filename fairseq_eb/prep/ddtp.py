"""Build the long-output regime's data: whole Debian package descriptions, English -> Italian (or another DDTP
language), plus an out-of-domain test set of LibreOffice help pages.

``python -m fairseq_eb.prep.ddtp --out DIR`` fetches with apt's ordinary client, into ``DIR/apt`` (a private
sources list, lists and cache: the system's apt state is untouched), Debian's ``Translation-en`` and
``Translation-<lang>`` indices and the ``libreoffice-help-en-us`` / ``libreoffice-help-<lang>`` packages, and
writes ``DIR/raw/{train,valid,test,ood}.{src,tgt}`` (one document per line) plus ``DIR/manifest.json``.

- In domain (train/valid/test): descriptions joined on ``Description-md5`` (:mod:`fairseq_eb.prep.ddtp_pairs`):
  every paragraph of the long description on both sides, both sides with the same paragraph count, targets of
  30–160 words, each English text once, at most 10 documents per sibling family, split by a hash of the first
  English paragraph.
- Out of domain (``ood``): LibreOffice's offline help, whose paragraphs share ids across languages
  (:mod:`fairseq_eb.prep.help_pages`): aligned prose paragraphs of a page joined into documents of the same
  length range (office-suite instructions, another vocabulary and register than package descriptions), a
  hash-chosen sample of ``--ood-max-docs``.
Finished steps are skipped; a re-run with the same inputs and options does nothing.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from pathlib import Path
from statistics import mean
from typing import Dict, List, Optional, Sequence, Tuple

from fairseq_eb import atomic
from fairseq_eb.prep import ddtp_pairs, help_pages
from fairseq_eb.prep.common import (
    Pair,
    PrepError,
    check_out_dir,
    check_same_corpus,
    log,
    raw_is_complete,
    raw_sha256,
    recorded_manifest,
    run_main,
    sha256_file,
    write_json,
    write_raw,
)
from fairseq_eb.prep.debian import (
    DEFAULT_DIST,
    DEFAULT_KEYRING,
    DEFAULT_MIRROR,
    add_apt_options,
    apt_fetch_deb,
    apt_update,
    check_apt,
    decompress,
    release_date,
    stored_translation,
)
from fairseq_eb.prep.debian_parse import parse_translation

DATASET = "ddtp-documents"
HELP_ROOT = Path("usr/share/libreoffice/help")


def check_options(lang: str, limits: ddtp_pairs.DocLimits, valid_permille: int, test_permille: int,
                  ood_max_docs: int) -> None:
    """Refuse options that name no DDTP language or leave a split empty by construction, before any download."""
    if lang == "en" or not lang.replace("_", "").isalpha() or not lang.islower():
        raise PrepError(f"--lang must be a DDTP language code other than en (e.g. it, de, fr, pt_BR lower-cased as "
                        f"Debian writes it), got {lang!r}")
    for option, value in (("--valid-permille", valid_permille), ("--test-permille", test_permille)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 500:
            raise PrepError(f"{option} must be an integer in [1, 500] (thousandths of the documents), got {value!r}")
    if valid_permille + test_permille >= 1000:
        raise PrepError(f"--valid-permille {valid_permille} + --test-permille {test_permille} must be below 1000")
    if not 1 <= limits.min_tgt_words <= limits.max_tgt_words:
        raise PrepError(f"--min-tgt-words {limits.min_tgt_words} and --max-tgt-words {limits.max_tgt_words}: need "
                        "1 <= min <= max")
    if limits.max_src_words < 1 or limits.max_per_group < 1:
        raise PrepError(f"--max-src-words and --max-per-group must be integers >= 1, got {limits.max_src_words} "
                        f"and {limits.max_per_group}")
    if ood_max_docs < 0:
        raise PrepError(f"--ood-max-docs must be an integer >= 0 (0 = no out-of-domain set), got {ood_max_docs}")


def help_package(lang: str) -> str:
    """Debian's name of LibreOffice's help in ``lang`` (``pt_BR`` -> ``libreoffice-help-pt-br``)."""
    return "libreoffice-help-" + ("en-us" if lang == "en" else lang.replace("_", "-").lower())


def fetch_indices(out: Path, lang: str, dist: str, mirror: str, keyring: str,
                  with_help: bool, refresh: bool) -> Dict[str, Path]:
    """Step 1: ``DIR/Translation-{en,<lang>}`` (plain text) and the help packages unpacked under ``DIR/help/``,
    downloaded once and then reused."""
    wanted = {"en": out / "Translation-en", lang: out / f"Translation-{lang}"}
    helps = {side: out / "help" / help_package(side) for side in ("en", lang)} if with_help else {}
    have = all(p.is_file() and p.stat().st_size > 0 for p in wanted.values()) and all(
        (d / ".complete").exists() for d in helps.values())
    if have and not refresh:
        log(f"using the downloaded indices in {out} (--refresh to download again)")
        return {**{f"translation-{k}": v for k, v in wanted.items()}, **{f"help-{k}": v for k, v in helps.items()}}
    check_apt(keyring)
    lists = apt_update(out / "apt", dist, mirror, keyring, languages=("en", lang), packages=with_help)
    for language, target in wanted.items():
        decompress(stored_translation(lists, dist, language), target)
    for side, target in helps.items():
        deb = apt_fetch_deb(out / "apt", help_package(side), out / "apt" / "debs")
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise PrepError(f"dpkg-deb -x {deb} failed: {proc.stderr[-1000:]}")
        atomic.write_text(target / ".complete", f"{deb.name} sha256:{sha256_file(deb)}\n")  # the marker, last
    return {**{f"translation-{k}": v for k, v in wanted.items()}, **{f"help-{k}": v for k, v in helps.items()}}


def help_text_dir(unpacked: Path) -> Path:
    """The language folder (``en-US``, ``it``, ...) of an unpacked help package: the one holding ``text/``."""
    found = [d for d in (unpacked / HELP_ROOT).iterdir() if (d / "text").is_dir()] if (unpacked / HELP_ROOT).is_dir() \
        else []
    if len(found) != 1:
        raise PrepError(f"{unpacked}: expected one language folder with text/ under {HELP_ROOT}, found "
                        f"{[d.name for d in found]}; --refresh downloads the package again")
    return found[0]


def ood_documents(english: Path, translated: Path, max_docs: int) -> Tuple[List[Pair], Dict[str, int]]:
    """The out-of-domain set from two unpacked help packages: every page present in both languages."""
    en_dir, tr_dir = help_text_dir(english), help_text_dir(translated)
    pages = sorted(en_dir.rglob("*.html"))
    docs: List[Pair] = []
    stats = {"pages": 0, "paragraphs": 0}
    for page in pages:
        other = tr_dir / page.relative_to(en_dir)
        if not other.is_file():
            continue
        stats["pages"] += 1
        read = lambda p: help_pages.page_paragraphs(p.read_text(encoding="utf-8", errors="replace"))  # noqa: E731
        aligned = help_pages.aligned_paragraphs(read(page), read(other))
        stats["paragraphs"] += len(aligned)
        docs += help_pages.documents(aligned)
    chosen, duplicates = help_pages.sample(docs, max_docs)
    stats.update(documents=len(docs), duplicate_text=duplicates, kept=len(chosen))
    return chosen, stats


def lengths(splits: Dict[str, Sequence[Pair]]) -> Dict[str, Dict[str, float]]:
    """Mean source and target length in whitespace words per split (SentencePiece pieces: prep.binarize)."""
    return {split: {"src_words": round(mean(len(s.split()) for s, _ in pairs), 2),
                    "tgt_words": round(mean(len(t.split()) for _, t in pairs), 2)}
            for split, pairs in splits.items() if pairs}


def prepare(out: Path, lang: str = "it", dist: str = DEFAULT_DIST, mirror: str = DEFAULT_MIRROR,
            keyring: str = DEFAULT_KEYRING, limits: ddtp_pairs.DocLimits = ddtp_pairs.DocLimits(),
            valid_permille: int = 15, test_permille: int = 20, ood_max_docs: int = 600,
            refresh: bool = False) -> dict:
    """Fetch (once) and build ``out/raw`` + ``out/manifest.json``; return the manifest."""
    start = time.time()
    out = Path(out).resolve()  # apt resolves relative directories against /etc/apt, not the cwd
    check_out_dir(out)
    check_options(lang, limits, valid_permille, test_permille, ood_max_docs)
    manifest = recorded_manifest(out)
    recorded = None if manifest is None else manifest.get("dataset", "another preparer's data")
    check_same_corpus(out, manifest, None if recorded in (None, DATASET) else recorded)
    out.mkdir(parents=True, exist_ok=True)
    inputs = fetch_indices(out, lang, dist, mirror, keyring, ood_max_docs > 0, refresh)
    digests = {name: sha256_file(p) if p.is_file() else (p / ".complete").read_text().strip()
               for name, p in inputs.items()}
    parameters = {"lang": lang, "dist": dist, "component": "main", "limits": limits._asdict(),
                  "valid_permille": valid_permille, "test_permille": test_permille, "ood_max_docs": ood_max_docs}
    expect = {"inputs": digests, "parameters": parameters}
    if raw_is_complete(out, manifest, expect):
        log(f"{out}/raw is up to date ({manifest['counts']}); nothing to do")
        return manifest
    read = lambda language: parse_translation(  # noqa: E731
        inputs[f"translation-{language}"].read_text(encoding="utf-8", errors="replace"), language)
    pairs, join_stats = ddtp_pairs.join_documents(read("en"), read(lang))
    splits, split_stats = ddtp_pairs.build_doc_splits(pairs, limits, valid_permille, test_permille)
    empty = [s for s, p in splits.items() if not p]
    if empty:
        raise PrepError(f"the {'/'.join(empty)} split would be empty ({join_stats}, {split_stats}); is "
                        f"Translation-{lang} a DDTP index? Widen the length limits or the split shares")
    log(f"{join_stats['translated']} translated descriptions -> {split_stats['kept']} documents; "
        + ", ".join(f"{k} {v}" for k, v in {**join_stats, **split_stats}.items() if k not in ("translated", "kept")))
    ood_stats = None
    if ood_max_docs:
        splits["ood"], ood_stats = ood_documents(inputs["help-en"], inputs[f"help-{lang}"], ood_max_docs)
        log(f"out-of-domain: {ood_stats}")
    counts = write_raw(out, splits)
    manifest = {
        "dataset": DATASET, "inputs": digests, "mirror": mirror, "release_date": release_date(out / "apt", dist),
        "parameters": parameters, "counts": counts, "outputs_sha256": raw_sha256(out, splits),
        "lengths": lengths(splits), "stats": {**join_stats, **split_stats}, "ood_stats": ood_stats,
        "shared_sentences_with_train": {s: round(ddtp_pairs.shared_paragraph_share(splits, s), 4)
                                        for s in ("valid", "test")},
        "src": "English long description (paragraphs joined by spaces)",
        "tgt": f"its DDTP translation ({lang}), the same paragraphs",
        "ood": f"LibreOffice help pages (en-US -> {lang}), aligned prose paragraphs joined into documents",
        "seconds": round(time.time() - start, 1)}
    write_json(out / "manifest.json", manifest)
    log(f"wrote {out}/raw: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return manifest


def main(argv: Optional[Sequence[str]] = None) -> None:
    d = ddtp_pairs.DocLimits()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="output directory (created)")
    parser.add_argument("--lang", default="it", help="target language, a DDTP code (default: %(default)s)")
    add_apt_options(parser)
    parser.add_argument("--min-tgt-words", type=int, default=d.min_tgt_words)
    parser.add_argument("--max-tgt-words", type=int, default=d.max_tgt_words)
    parser.add_argument("--max-src-words", type=int, default=d.max_src_words)
    parser.add_argument("--max-per-group", type=int, default=d.max_per_group,
                        help="most documents kept per sibling family (default: %(default)s)")
    # ~450 valid and ~600 test documents: every validation decodes the valid split, and each test document is
    # decoded at 5 beam sizes x 2 checkpoint selections x 2 test sets; larger splits cost more CPU than training
    parser.add_argument("--valid-permille", type=int, default=15)
    parser.add_argument("--test-permille", type=int, default=20)
    parser.add_argument("--ood-max-docs", type=int, default=600,
                        help="size of the out-of-domain LibreOffice-help test set (0 = none; default %(default)s)")
    parser.add_argument("--refresh", action="store_true", help="download the indices and packages again")
    args = parser.parse_args(argv)
    limits = ddtp_pairs.DocLimits(args.min_tgt_words, args.max_tgt_words, args.max_src_words, args.max_per_group)
    run_main(lambda: prepare(args.out, args.lang, args.dist, args.mirror, args.keyring, limits,
                             args.valid_permille, args.test_permille, args.ood_max_docs, args.refresh),
             lock=(args.out, "--out"))


if __name__ == "__main__":
    main()
