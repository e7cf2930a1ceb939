"""Data preparation: the Debian parser and split logic, the TSV preparer, binarisation, errors."""
import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from fairseq_eb.prep import debian, tsv
from fairseq_eb.prep.binarize import binarize, encode_splits, train_spm
from fairseq_eb.prep.binarize import main as binarize_main
from fairseq_eb.prep.common import PrepError
from fairseq_eb.prep.debian_parse import (
    Entry,
    Limits,
    build_splits,
    group_key,
    is_transitional,
    parse_translation,
    split_of,
)

REPO = Path(__file__).resolve().parents[1]
CSL = Path(__file__).resolve().parent / "data" / "csl_sample"  # real CSL lines (see its README)

TRANSLATION_EN = """\
Package: 0ad
Description-md5: d943033bedada21853d2ae54a2578a7b
Description-en: Real-time strategy game of ancient warfare
 0 A.D. is a free, open-source, cross-platform
 real-time strategy game of ancient warfare.
 .
 It has a flexible   custom-built game engine.

Package: foo-transitional
Description-md5: 00000000000000000000000000000001
Description-en: transitional package for bar
 This is a transitional package to ease upgrades to bar. It can be removed safely.

Package: libzip4
Description-md5: 00000000000000000000000000000002
Description-en: library for reading, creating, and modifying zip archives (runtime)
 This is libzip, a C library for reading, creating, and modifying zip archives.
 .
 Features:
  * streams
  * encryption
 This package contains the shared library.

Package: libzip-dev
Description-md5: 00000000000000000000000000000003
Description-en: library for reading, creating, and modifying zip archives (development)
 This is libzip 1.9, a C library for reading, creating, and modifying zip archives.
 .
 This package contains the development files.

Package: libzip4
Description-md5: 00000000000000000000000000000004
Description-en: an older description of the same package
 A second stanza for a package already seen must be ignored entirely, whatever it says.

Package: nodescription
Description-md5: 00000000000000000000000000000005
Description-en: a package with a synopsis only

Package: zipcopy
Description-md5: 00000000000000000000000000000006
Description-en: another synopsis for a copied text
 This is libzip, a C library for reading, creating, and modifying zip archives.
 .
 Features:
  * streams
  * encryption
 This package contains the shared library.

Package: empty-dummy
Description-md5: 00000000000000000000000000000007
Description-en: Dummy package
 This dummy package only pulls in its replacement and has no other content.
"""


def test_parse_translation_unfolds_paragraphs():
    entries = parse_translation(TRANSLATION_EN)
    assert [e.package for e in entries] == ["0ad", "foo-transitional", "libzip4", "libzip-dev", "libzip4",
                                            "nodescription", "zipcopy", "empty-dummy"]
    ad = entries[0]
    assert ad.synopsis == "Real-time strategy game of ancient warfare"
    assert ad.paragraphs == ("0 A.D. is a free, open-source, cross-platform real-time strategy game of "
                             "ancient warfare.", "It has a flexible custom-built game engine.")
    # verbatim (double-indented) lines are folded into their paragraph
    assert entries[2].paragraphs == ("This is libzip, a C library for reading, creating, and modifying zip "
                                     "archives.", "Features: * streams * encryption This package contains "
                                     "the shared library.")
    assert entries[5].paragraphs == ()


def test_transitional_and_dummy_detection():
    entries = {e.package: e for e in parse_translation(TRANSLATION_EN)}
    assert is_transitional(entries["foo-transitional"]) and is_transitional(entries["empty-dummy"])
    assert not is_transitional(entries["0ad"]) and not is_transitional(entries["libzip-dev"])


def test_build_splits_filters_and_deduplicates():
    splits, stats = build_splits(parse_translation(TRANSLATION_EN), Limits(min_src_words=3))
    pairs = [p for s in ("train", "valid", "test") for p in splits[s]]
    targets = sorted(t for _, t in pairs)
    assert targets == ["Real-time strategy game of ancient warfare",
                       "library for reading, creating, and modifying zip archives (development)",
                       "library for reading, creating, and modifying zip archives (runtime)"]
    assert stats == {"entries": 8, "duplicate_package": 1, "transitional": 2, "no_description": 1,
                     "too_short_or_long": 0, "duplicate_text": 1, "group_cap": 0, "kept": 3}
    assert all("\n" not in s and "\t" not in s for p in pairs for s in p)


def test_length_limits_and_group_cap():
    # source words: 0ad 20, libzip-dev 20, libzip4 and its copy zipcopy 24 (too long)
    _, stats = build_splits(parse_translation(TRANSLATION_EN), Limits(min_src_words=3, max_src_words=20))
    assert stats["too_short_or_long"] == 2 and stats["kept"] == 2
    _, stats = build_splits(parse_translation(TRANSLATION_EN), Limits(min_src_words=3, max_tgt_words=6))
    # synopses: 0ad 6 words, zipcopy 6, the libzip ones 9; zipcopy's text no longer duplicates a kept one
    assert stats["too_short_or_long"] == 2 and stats["kept"] == 2
    _, stats = build_splits(parse_translation(TRANSLATION_EN), Limits(min_src_words=3, max_per_group=1))
    assert stats["group_cap"] == 1 and stats["kept"] == 2  # libzip4 and libzip-dev share a group


def test_siblings_share_a_group_key():
    entries = {e.package: e for e in parse_translation(TRANSLATION_EN)[:4]}
    # "libzip" vs "libzip 1.9" and a different second paragraph: same normalised first paragraph
    assert group_key(entries["libzip4"]) == group_key(entries["libzip-dev"])
    assert group_key(entries["libzip4"]) != group_key(entries["0ad"])


def test_split_is_deterministic_and_pinned():
    # Pinned: changing the hash would silently reshuffle every published Debian split.
    assert [split_of(f"key{i}", 50, 50) for i in (6, 7, 8, 32, 53)] == ["train", "test", "valid", "test", "valid"]
    counts = Counter(split_of(f"group {i}", 50, 50) for i in range(20000))
    assert 850 < counts["test"] < 1150 and 850 < counts["valid"] < 1150


def test_sibling_groups_never_straddle_splits():
    entries = []
    for g in range(300):
        first = f"Toolkit number {'abcdefghij'[g % 10]}{'klmnopqrst'[g // 10 % 10]}{'uvwxyz'[g // 100]} " \
                "does useful things for everyone."
        for i, (suffix, kind) in enumerate([("", "runtime"), ("-dev", "headers"), ("-doc", "manual")]):
            entries.append(Entry(f"lib{g}{suffix}", f"toolkit {g} part {i}",
                                 (first.replace("number", f"number {i}"), f"This package holds the {kind}.")))
    splits, stats = build_splits(entries, Limits(min_src_words=1))
    assert stats["kept"] == 900
    where = {}
    for split, pairs in splits.items():
        for _, tgt in pairs:
            where.setdefault(tgt.split()[1], set()).add(split)
    assert len(where) == 300 and all(len(s) == 1 for s in where.values())
    assert {s for v in where.values() for s in v} == {"train", "valid", "test"}


def test_debian_prepare_from_cached_translation_is_idempotent(tmp_path):
    out = tmp_path / "debian"
    out.mkdir()
    (out / "Translation-en").write_text(TRANSLATION_EN)
    manifest = debian.prepare(out, limits=Limits(min_src_words=3), valid_permille=0, test_permille=0)
    assert manifest["counts"] == {"train": 3, "valid": 0, "test": 0}
    assert len(manifest["input_sha256"]) == 64 and manifest["stats"]["kept"] == 3
    assert (out / "raw" / "train.tgt").read_text().splitlines()[0] == "Real-time strategy game of ancient warfare"
    assert json.loads((out / "manifest.json").read_text())["counts"] == manifest["counts"]
    splits = ("train", "valid", "test")
    assert set(manifest["outputs_sha256"]) == {f"{s}.{lang}" for s in splits for lang in ("src", "tgt")}
    stamp = (out / "raw" / "train.src").stat().st_mtime_ns
    debian.prepare(out, limits=Limits(min_src_words=3), valid_permille=0, test_permille=0)
    assert (out / "raw" / "train.src").stat().st_mtime_ns == stamp  # skipped
    debian.prepare(out, limits=Limits(min_src_words=3, max_src_words=20), valid_permille=0, test_permille=0)
    assert len((out / "raw" / "train.src").read_text().splitlines()) == 2  # new parameters: rebuilt


def test_debian_without_apt_or_root_says_how_to_use_a_tsv(tmp_path, monkeypatch):
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    with pytest.raises(PrepError, match="(?s)apt-get.*not found.*fairseq_eb.prep.tsv"):
        debian.prepare(tmp_path / "d")
    monkeypatch.undo()
    monkeypatch.setattr(debian.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(debian.os.path, "exists", lambda p: True)
    with pytest.raises(PrepError, match="(?s)root.*--format reference"):
        debian.check_apt(debian.DEFAULT_KEYRING)


def write_lines(path: Path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def test_tsv_reference_format(tmp_path):
    train = write_lines(tmp_path / "train.tsv", [f"title {i}\tsome  content number {i}" for i in range(6)] + [""])
    valid = write_lines(tmp_path / "valid.tsv", ["v title\tvalid content"])
    test = write_lines(tmp_path / "test.tsv", ["t title\ttest content", "\tempty title is skipped"])
    manifest = tsv.prepare(tmp_path / "out", train, test, "reference", valid=valid)
    assert manifest["counts"] == {"train": 6, "valid": 1, "test": 1}
    raw = tmp_path / "out" / "raw"
    assert (raw / "train.src").read_text().splitlines()[2] == "some content number 2"
    assert (raw / "train.tgt").read_text().splitlines()[2] == "title 2"
    assert (raw / "test.tgt").read_text() == "t title\n"
    assert manifest["inputs"]["train"]["sha256"] and manifest["parameters"]["format"] == "reference"


def test_tsv_csl_format_with_held_out_validation(tmp_path):
    dev = (CSL / "dev.tsv").read_text(encoding="utf-8").splitlines()[:8]
    tst = (CSL / "test.tsv").read_text(encoding="utf-8").splitlines()[:3]
    train, test = write_lines(tmp_path / "dev.tsv", dev), write_lines(tmp_path / "test.tsv", tst)
    out = tmp_path / "csl"
    manifest = tsv.prepare(out, train, test, "csl", valid_from_train=2, seed=1)
    assert manifest["counts"] == {"train": 6, "valid": 2, "test": 3}
    raw = out / "raw"
    titles = (raw / "train.tgt").read_text().splitlines() + (raw / "valid.tgt").read_text().splitlines()
    assert sorted(titles) == sorted(line.split("\t")[2] for line in dev)
    sources = (raw / "train.src").read_text().splitlines() + (raw / "valid.src").read_text().splitlines()
    assert sorted(sources) == sorted(" ".join(line.split("\t")[1].split()) for line in dev)  # field 1 unused
    assert (out / "raw" / "test.src").read_text().splitlines()[0] == tst[0].split("\t")[1]
    # same inputs and seed: same validation set, and the run is skipped
    again = tsv.prepare(out, train, test, "csl", valid_from_train=2, seed=1)
    assert again == manifest
    valid_titles = (raw / "valid.tgt").read_text()
    same = tsv.prepare(tmp_path / "csl_same", train, test, "csl", valid_from_train=2, seed=1)
    assert (tmp_path / "csl_same" / "raw" / "valid.tgt").read_text() == valid_titles
    assert same["outputs_sha256"] == manifest["outputs_sha256"]
    # another seed holds out other examples (these two seeds, on this data, share none)
    other = tsv.prepare(tmp_path / "csl2", train, test, "csl", valid_from_train=2, seed=2)
    assert other["counts"] == manifest["counts"]
    other_titles = (tmp_path / "csl2" / "raw" / "valid.tgt").read_text().splitlines()
    assert not set(other_titles) & set(valid_titles.splitlines())


def test_tsv_errors(tmp_path):
    csl_like = write_lines(tmp_path / "c.tsv", ["to title\tabstract text\ta title"])
    with pytest.raises(PrepError, match=r"c\.tsv:1: expected 2 .* found 3 \(looks like --format csl\)"):
        tsv.prepare(tmp_path / "o", csl_like, csl_like, "reference", valid=csl_like)
    with pytest.raises(PrepError, match="input file not found: .*missing.tsv"):
        tsv.prepare(tmp_path / "o", str(tmp_path / "missing.tsv"), csl_like, "csl", valid=csl_like)
    with pytest.raises(PrepError, match="exactly one of --valid"):
        tsv.prepare(tmp_path / "o", csl_like, csl_like, "csl")
    with pytest.raises(PrepError, match="--valid-from-train 5 must be between 1 and 0"):
        tsv.prepare(tmp_path / "o", csl_like, csl_like, "csl", valid_from_train=5)
    blank = write_lines(tmp_path / "blank.tsv", ["", ""])
    with pytest.raises(PrepError, match="no examples"):
        tsv.prepare(tmp_path / "o", blank, blank, "csl", valid=blank)


def test_tsv_command_line_error_exit_code(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        tsv.main(["--train", str(tmp_path / "nope.tsv"), "--test", str(tmp_path / "nope.tsv"),
                  "--valid-from-train", "1", "--format", "csl", "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    assert "error: input file not found" in capsys.readouterr().err


def make_raw(directory: Path, n_train: int = 60):
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda omicron".split()
    raw = directory / "raw"
    raw.mkdir(parents=True)
    for split, n in (("train", n_train), ("valid", 6), ("test", 5)):
        src = [" ".join(words[(i + j) % len(words)] for j in range(4 + i % 7)) for i in range(n)]
        tgt = [" ".join(words[(i + j) % len(words)] for j in range(1 + i % 4)) for i in range(n)]
        write_lines(raw / f"{split}.src", src)
        write_lines(raw / f"{split}.tgt", tgt)


def test_binarize_tiny_corpus_end_to_end(tmp_path):
    data = tmp_path / "tiny"
    make_raw(data)
    stamps = binarize(data, vocab_size=40, max_src_pieces=5, max_tgt_pieces=3)
    assert (data / "spm.model").exists()
    src_lines = (data / "spm" / "train.src").read_text().splitlines()
    assert len(src_lines) == stamps["encode_stats"]["train"]["pairs"]
    assert max(len(line.split()) for line in src_lines) == 5
    tgt_lens = [len(line.split()) for line in (data / "spm" / "train.tgt").read_text().splitlines()]
    assert max(tgt_lens) <= 3 and stamps["encode_stats"]["train"]["dropped_long_target"] > 0
    # test targets are never dropped or cut: they are the references
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(data / "spm.model"))
    test_src = (data / "raw" / "test.src").read_text().splitlines()
    long_sources = sum(1 for line in test_src if len(sp.encode(line, out_type=str)) > 5)  # counted independently
    assert long_sources > 0
    test_tgt = (data / "raw" / "test.tgt").read_text().splitlines()
    tgt_mean = sum(len(sp.encode(line, out_type=str)) for line in test_tgt) / len(test_tgt)
    src_mean = sum(min(5, len(sp.encode(line, out_type=str))) for line in test_src) / len(test_src)
    assert stamps["encode_stats"]["test"] == {"pairs": 5, "dropped_long_target": 0, "truncated_source": long_sources,
                                              "src_pieces_mean": round(src_mean, 2),
                                              "tgt_pieces_mean": round(tgt_mean, 2)}
    assert [len(line.split()) for line in (data / "spm" / "test.src").read_text().splitlines()] == [
        min(5, len(sp.encode(line, out_type=str))) for line in test_src]
    for name in ("dict.src.txt", "dict.tgt.txt", "train.src-tgt.src.bin", "test.src-tgt.tgt.idx"):
        assert (data / "bin" / name).exists(), name
    assert (data / "bin" / "dict.src.txt").read_text() == (data / "bin" / "dict.tgt.txt").read_text()
    assert any(line.startswith("\u2581") for line in (data / "bin" / "dict.src.txt").read_text().splitlines())
    mtime = (data / "bin" / "dict.src.txt").stat().st_mtime_ns
    again = binarize(data, vocab_size=40, max_src_pieces=5, max_tgt_pieces=3)
    assert again == stamps and (data / "bin" / "dict.src.txt").stat().st_mtime_ns == mtime


def given_vocabulary(tmp_path: Path):
    """A "pretrained" SentencePiece model and a dictionary of its pieces in an order no build from the toy data
    gives (reversed, plus symbols the data never has), as a pretrained model ships them."""
    made = tmp_path / "pretrained"
    make_raw(made, n_train=30)
    train_spm(made, vocab_size=40, char=False, coverage=1.0, threads=1)
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(made / "spm.model"))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not (sp.is_control(i) or sp.is_unknown(i))]
    dictionary = made / "dict.txt"
    write_lines(dictionary, [f"{p} {i + 1}" for i, p in enumerate(reversed(pieces))] + ["zzz 0", "<mask> 0"])
    return made / "spm.model", dictionary


def test_binarize_with_a_given_dictionary_and_sentencepiece_model(tmp_path, monkeypatch, capsys):
    spm_model, dictionary = given_vocabulary(tmp_path)
    data = tmp_path / "data"
    make_raw(data)
    from fairseq_eb.prep import binarize as module

    def no_training(*args, **kwargs):
        raise AssertionError("SentencePiece was trained")

    monkeypatch.setattr(module, "train_spm", no_training)
    stamps = binarize(data, max_src_pieces=5, dictionary=dictionary, spm_model=spm_model)
    for side in ("src", "tgt"):  # the dictionary given, byte for byte, on both sides
        assert (data / "bin" / f"dict.{side}.txt").read_bytes() == dictionary.read_bytes()
    assert (data / "spm.model").read_bytes() == spm_model.read_bytes()
    assert stamps["spm"] == {"given_spm_model": module.sha256_file(spm_model)}
    assert stamps["bin"]["given_dict"] == module.sha256_file(dictionary)
    assert set(stamps["unknown_percent"]) == {f"{s}.{side}" for s in ("train", "valid", "test") for side in
                                              ("src", "tgt")} and not any(stamps["unknown_percent"].values())
    # the binarised ids are the given dictionary's
    from fairseq.data import Dictionary, data_utils

    d = Dictionary.load(str(dictionary))
    ids = data_utils.load_indexed_dataset(str(data / "bin" / "train.src-tgt.src"), d)
    assert d.string(ids[0]) == (data / "spm" / "train.src").read_text(encoding="utf-8").splitlines()[0]
    capsys.readouterr()

    mtime = (data / "bin" / "dict.src.txt").stat().st_mtime_ns
    assert binarize(data, max_src_pieces=5, dictionary=dictionary, spm_model=spm_model) == stamps
    assert (data / "bin" / "dict.src.txt").stat().st_mtime_ns == mtime  # nothing re-ran
    # another dictionary re-runs fairseq-preprocess only
    with open(dictionary, "a", encoding="utf-8") as f:
        f.write("yyy 0\n")
    binarize(data, max_src_pieces=5, dictionary=dictionary, spm_model=spm_model)
    err = capsys.readouterr().err
    assert "spm.model is up to date" in err and "spm/ is up to date" in err and "--srcdict" in err
    assert (data / "bin" / "dict.src.txt").read_bytes() == dictionary.read_bytes()
    # without --dict: the dictionary is built from the data again (joined), the given model kept
    monkeypatch.undo()
    again = binarize(data, max_src_pieces=5, spm_model=spm_model)
    assert "given_dict" not in again["bin"] and "unknown_percent" not in again
    assert (data / "bin" / "dict.src.txt").read_bytes() != dictionary.read_bytes()
    assert "zzz" not in (data / "bin" / "dict.src.txt").read_text()


@pytest.mark.parametrize("case", ["no-spm", "bad-spm", "no-dict", "bad-line", "twice", "special", "vocab-size",
                                  "char", "neither"])
def test_binarize_refuses_a_given_vocabulary_it_cannot_use(tmp_path, capsys, case):
    spm_model, dictionary = given_vocabulary(tmp_path)
    data = tmp_path / "data"
    make_raw(data)
    bad = tmp_path / "bad"
    argv, expected = {
        "no-spm": lambda: (["--spm-model", str(bad)], f"--spm-model {bad}: no such file"),
        "bad-spm": lambda: (["--spm-model", str(dictionary)],
                            f"--spm-model {dictionary}: SentencePiece cannot load it ("),
        "no-dict": lambda: (["--spm-model", str(spm_model), "--dict", str(bad)], f"--dict {bad}: no such file"),
        "bad-line": lambda: (["--spm-model", str(spm_model), "--dict", write_lines(bad, ["a 1", "b"])],
                             f"--dict {bad}, line 2: expected 'symbol count' (fairseq's dictionary format), got 'b'"),
        "twice": lambda: (["--spm-model", str(spm_model), "--dict", write_lines(bad, ["a 1", "b 2", "a 3"])],
                          f"--dict {bad}, line 3: symbol 'a' is listed twice"),
        "special": lambda: (["--spm-model", str(spm_model), "--dict", write_lines(bad, ["a 1", "</s> 2"])],
                            f"--dict {bad}, line 2: symbol '</s>' is listed twice"),
        "vocab-size": lambda: (["--spm-model", str(spm_model), "--vocab-size", "40"],
                               f"--vocab-size shape a SentencePiece model trained here; --spm-model {spm_model} is "
                               "used as it is: leave them out"),
        "char": lambda: (["--spm-model", str(spm_model), "--char"], "--char shape a SentencePiece model trained here"),
        "neither": lambda: (["--dict", str(dictionary)],
                            "--vocab-size is required to train a SentencePiece model (or give an existing one with "
                            "--spm-model FILE)"),
    }[case]()  # only this case writes its file
    with pytest.raises(SystemExit) as e:
        binarize_main(["--data", str(data), *argv])
    assert e.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("[")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {expected}"), errors
    assert sorted(p.name for p in data.iterdir()) == ["raw"]  # refused before any step


def test_char_sentencepiece_on_chinese(tmp_path):
    data = tmp_path / "zh"
    raw = data / "raw"
    raw.mkdir(parents=True)
    lines = [line.split("\t") for line in (CSL / "dev.tsv").read_text(encoding="utf-8").splitlines()[:20]]
    for split in ("train", "valid", "test"):
        write_lines(raw / f"{split}.src", [fields[1] for fields in lines])
        write_lines(raw / f"{split}.tgt", [fields[2] for fields in lines])
    train_spm(data, vocab_size=5000, char=True, coverage=1.0, threads=1)
    encode_splits(data, max_src=30, max_tgt=None)
    first = (data / "spm" / "test.tgt").read_text(encoding="utf-8").splitlines()[0].split()
    assert all(len(p.replace("\u2581", "")) <= 1 for p in first)  # one character per piece
    assert "".join(first).replace("\u2581", "") == lines[0][2].replace(" ", "")


def test_binarize_needs_prepared_data(tmp_path):
    with pytest.raises(PrepError, match="raw/train.src not found: prepare"):
        binarize(tmp_path, vocab_size=100)


def test_shell_wrappers_show_usage():
    for script in ("prepare_debian.sh", "prepare_tsv.sh"):
        proc = subprocess.run(["bash", str(REPO / "scripts" / script), "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and "Usage:" in proc.stdout
    proc = subprocess.run(["bash", str(REPO / "scripts" / "prepare_tsv.sh"), "only-one-arg"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Usage:" in proc.stderr


def test_tsv_counts_logs_and_records_rows_with_an_empty_field(tmp_path, capsys):
    train = write_lines(tmp_path / "train.tsv", [f"title {i}\tcontent {i}" for i in range(5)]
                        + ["\tno title", "no content\t", "title only\t   ", ""])
    valid = write_lines(tmp_path / "valid.tsv", ["v\tvalid content"])
    test = write_lines(tmp_path / "test.tsv", ["t\ttest content", "\tempty title"])
    manifest = tsv.prepare(tmp_path / "out", train, test, "reference", valid=valid)
    assert manifest["counts"] == {"train": 5, "valid": 1, "test": 1}
    assert manifest["dropped_empty_rows"] == {"train": 3, "valid": 0, "test": 1}
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["dropped_empty_rows"]["train"] == 3
    err = capsys.readouterr().err
    assert "train.tsv: dropped 3 rows with an empty source or target" in err
    assert "test.tsv: dropped 1 rows" in err and "valid.tsv: dropped" not in err


def test_tsv_invalid_utf8_names_file_and_line(tmp_path):
    good = write_lines(tmp_path / "good.tsv", ["t\tc"])
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"t\tc\nt2\tc2\nt3\t\xc3\x28 broken\n")
    with pytest.raises(PrepError, match=r"bad\.tsv, line 3: not valid UTF-8"):
        tsv.prepare(tmp_path / "o", good, str(bad), "reference", valid=good)


def test_out_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    good = write_lines(tmp_path / "good.tsv", ["t\tc", "t2\tc2"])
    taken = tmp_path / "taken"
    taken.write_text("not a directory\n")
    with pytest.raises(SystemExit) as e:
        tsv.main(["--train", good, "--test", good, "--valid", good, "--format", "reference", "--out", str(taken)])
    assert e.value.code == 2
    assert f"--out {taken} is an existing file" in capsys.readouterr().err
    with pytest.raises(PrepError, match="is an existing file"):
        debian.prepare(taken)
    assert taken.read_text() == "not a directory\n"


@pytest.mark.parametrize("option,value", [("--max-tgt-pieces", "-1"), ("--max-src-pieces", "-1"),
                                          ("--max-src-pieces", "0"), ("--max-tgt-pieces", "0"),
                                          ("--vocab-size", "0")])
def test_binarize_refuses_sizes_below_one(tmp_path, capsys, option, value):
    data = tmp_path / "tiny"
    make_raw(data)
    argv = ["--data", str(data), "--vocab-size", "40", option, value]
    with pytest.raises(SystemExit) as e:
        binarize_main(argv)
    assert e.value.code == 2
    assert f"error: {option} must be an integer >= 1, got {value}" in capsys.readouterr().err
    assert not (data / "spm.model").exists()  # refused before any work


def test_prepare_debian_defaults_are_the_demo_s():
    import re

    demo = (REPO / "scripts" / "demo.sh").read_text()
    wrapper = (REPO / "scripts" / "prepare_debian.sh").read_text()
    vocab = re.search(r"binarize .*--vocab-size (\d+)", demo).group(1)
    cut = re.search(r"binarize .*--max-src-pieces (\d+)", demo).group(1)
    assert f'--vocab-size "${{2:-{vocab}}}"' in wrapper and f'--max-src-pieces "${{3:-{cut}}}"' in wrapper
    assert re.search(r'DATA:-(\S+?)\}', demo).group(1) == "data/debian" and "$ROOT/data/debian" in wrapper


def test_every_script_help_is_exactly_its_header():
    """`--help` prints the script's leading comment block: no code lines leak in, no text is cut off."""
    wrong = []
    for script in sorted((REPO / "scripts").glob("*.sh")):
        if script.name in ("setup.sh", "test.sh"):  # they take no options: they just run
            continue
        lines = script.read_text().splitlines()[1:]
        header = []
        for line in lines:
            if not line.startswith("#"):
                break
            header.append(line[2:] if line.startswith("# ") else line[1:])
        proc = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=60)
        if proc.returncode not in (0, 2) or (proc.stdout or proc.stderr).rstrip("\n").splitlines() != header:
            wrong.append(f"{script.name}: exit {proc.returncode}, {(proc.stdout or proc.stderr)[:200]!r}")
    assert not wrong, "\n".join(wrong)  # every script checked: one bad script must not hide the next


def test_converged_cpu_script_rejects_an_unknown_config_before_setup(tmp_path):
    """CONFIG picks the regime; a typo must fail at once, naming the valid values, not after setup and prep."""
    env = {"PATH": "/usr/bin:/bin", "CONFIG": "converged", "VENV": str(tmp_path / "venv")}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "converged_cpu.sh")], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "CONFIG=converged: must be converged_cpu or converged_cpu_long"
    assert not (tmp_path / "venv").exists() and proc.stdout == ""
