"""Hostile inputs to the preparers (issue 22): one line, exit 2, before any long step, nothing overwritten."""
import json
import re
from pathlib import Path
from typing import Dict, List

import pytest

from fairseq_eb.prep import binarize, debian, finetune, tsv
from fairseq_eb.prep.common import PrepError

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda omicron".split()


def write_lines(path: Path, lines: List[str]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def snapshot(directory: Path) -> Dict[str, bytes]:
    """Every file under ``directory`` with its bytes: the protected files must be byte-identical afterwards."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def refused(main, argv: List[str], capsys) -> str:
    """Run a preparer's ``main``; assert exit 2 and a one-line message without a traceback; return it."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    lines = [line for line in err.splitlines() if not line.startswith("[")]  # progress lines are [HH:MM:SS]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def tsv_corpus(directory: Path, tag: str, n: int = 6) -> Dict[str, str]:
    rows = [f"{tag} title {i}\t{tag} some content number {i}" for i in range(n)]
    return {split: write_lines(directory / f"{split}.tsv", rows[:n - 2] if split == "train" else rows[n - 2:])
            for split in ("train", "valid", "test")}


def tsv_argv(files: Dict[str, str], out: Path) -> List[str]:
    return ["--train", files["train"], "--valid", files["valid"], "--test", files["test"], "--format", "reference",
            "--out", str(out)]


# --- prep.tsv ---------------------------------------------------------------------------------------------

def test_tsv_refuses_an_out_holding_another_corpus(tmp_path, capsys):
    out = tmp_path / "o"
    tsv.prepare(out, **{k: v for k, v in tsv_corpus(tmp_path / "a", "a").items() if k != "valid"},
                fmt="reference", valid=str(tmp_path / "a" / "valid.tsv"))
    before = snapshot(out)
    message = refused(tsv.main, tsv_argv(tsv_corpus(tmp_path / "b", "b"), out), capsys)
    assert f"--out {out} holds another corpus (its --train was {tmp_path / 'a' / 'train.tsv'}" in message
    assert "use a new --out directory" in message
    assert snapshot(out) == before


def test_tsv_rerun_on_an_edited_input_is_the_same_corpus(tmp_path):
    files = tsv_corpus(tmp_path / "a", "a")
    out = tmp_path / "o"
    tsv.prepare(out, files["train"], files["test"], "reference", valid=files["valid"])
    write_lines(Path(files["train"]), ["fixed title\tfixed content"])  # same path, new content: rebuilt
    manifest = tsv.prepare(out, files["train"], files["test"], "reference", valid=files["valid"])
    assert manifest["counts"]["train"] == 1


def test_tsv_refuses_an_out_whose_raw_files_no_manifest_records(tmp_path, capsys):
    out = tmp_path / "o"
    write_lines(out / "raw" / "train.src", ["someone else's data"])
    before = snapshot(out)
    message = refused(tsv.main, tsv_argv(tsv_corpus(tmp_path / "a", "a"), out), capsys)
    assert message == (f"error: --out {out} holds raw/ that no manifest.json records (another corpus's data?); "
                       "use a new --out directory, or delete them to replace them")
    assert snapshot(out) == before


def test_tsv_refuses_an_unreadable_manifest(tmp_path, capsys):
    out = tmp_path / "o"
    (out).mkdir()
    (out / "manifest.json").write_text("{not json")
    message = refused(tsv.main, tsv_argv(tsv_corpus(tmp_path / "a", "a"), out), capsys)
    assert "manifest.json cannot be read as JSON" in message
    assert (out / "manifest.json").read_text() == "{not json"


def test_tsv_refuses_an_input_inside_the_raw_files_it_writes(tmp_path, capsys):
    out = tmp_path / "o"
    files = tsv_corpus(out / "raw", "a")
    before = snapshot(out)
    message = refused(tsv.main, tsv_argv(files, out), capsys)
    assert message.startswith(f"error: --train {files['train']} lies in --out {out}")
    assert snapshot(out) == before


def test_tsv_refuses_a_debian_manifest(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"dataset": "debian-descriptions"}))
    message = refused(tsv.main, tsv_argv(tsv_corpus(tmp_path / "a", "a"), out), capsys)
    assert "holds another corpus (debian-descriptions, not TSV files)" in message


# --- prep.debian ------------------------------------------------------------------------------------------

TRANSLATION = "".join(
    f"Package: pkg{i}\nDescription-md5: {i:032d}\nDescription-en: tool number {i} for {WORDS[i]}\n"
    f" This {WORDS[i]} program does {WORDS[(i + 1) % 12]} work with {WORDS[(i + 2) % 12]} files quickly.\n\n"
    for i in range(12))


def debian_out(tmp_path: Path, text: str = TRANSLATION) -> Path:
    out = tmp_path / "deb"
    out.mkdir()
    (out / "Translation-en").write_text(text)
    return out


@pytest.mark.parametrize("options,expected", [
    (["--valid-permille", "2000"], "error: --valid-permille must be an integer in [0, 1000] (thousandths of the "
                                   "packages), got 2000"),
    (["--test-permille", "-5"], "error: --test-permille must be an integer in [0, 1000] (thousandths of the "
                                "packages), got -5"),
    (["--valid-permille", "500", "--test-permille", "500"],
     "error: --valid-permille 500 + --test-permille 500 must be below 1000, or no package is left for training"),
    (["--min-src-words", "50", "--max-src-words", "10"],
     "error: --min-src-words 50 and --max-src-words 10: need 0 <= min <= max and max >= 1, or every package is "
     "dropped"),
    (["--max-tgt-words", "0"], "error: --min-tgt-words 2 and --max-tgt-words 0: need 0 <= min <= max and max >= 1, "
                               "or every package is dropped"),
    (["--max-per-group", "0"], "error: --max-per-group must be an integer >= 1, got 0"),
])
def test_debian_refuses_options_that_empty_a_split(tmp_path, capsys, options, expected):
    out = debian_out(tmp_path)
    assert refused(debian.main, ["--out", str(out), *options], capsys) == expected
    assert sorted(p.name for p in out.iterdir()) == ["Translation-en"]  # nothing written


def test_debian_refuses_a_translation_that_is_not_deb822(tmp_path, capsys):
    out = debian_out(tmp_path, "just some text\nwithout any stanza\n")
    message = refused(debian.main, ["--out", str(out)], capsys)
    assert message == (f"error: {out / 'Translation-en'}: no deb822 stanzas with Package: and Description-en: "
                       "fields; is it Debian's Translation-en? (--refresh downloads it again)")
    assert not (out / "raw").exists() and not (out / "manifest.json").exists()


def test_debian_refuses_limits_that_drop_every_package(tmp_path, capsys):
    out = debian_out(tmp_path)
    message = refused(debian.main, ["--out", str(out), "--min-src-words", "100"], capsys)
    assert message.startswith(f"error: {out / 'Translation-en'}: the train/valid/test split would be empty "
                              "(12 packages, 0 kept; dropped: too_short_or_long 12)")
    assert not (out / "raw").exists()


def test_debian_refuses_an_empty_test_split_it_was_asked_for(tmp_path):
    out = debian_out(tmp_path)
    # 12 packages, 1 in 1000 to test: none lands there
    with pytest.raises(PrepError, match=r"the test split would be empty \(12 packages, 12 kept"):
        debian.prepare(out, valid_permille=0, test_permille=1)
    manifest = debian.prepare(out, valid_permille=0, test_permille=0)  # asked for no test split: fine
    assert manifest["counts"] == {"train": 12, "valid": 0, "test": 0}


def test_debian_refuses_an_out_holding_another_corpus(tmp_path, capsys):
    out = tmp_path / "o"
    files = tsv_corpus(tmp_path / "a", "a")
    tsv.prepare(out, files["train"], files["test"], "reference", valid=files["valid"])
    (out / "Translation-en").write_text(TRANSLATION)
    before = snapshot(out)
    message = refused(debian.main, ["--out", str(out)], capsys)
    assert message == (f"error: --out {out} holds another corpus (tsv-reference, not Debian descriptions); use a new "
                       f"--out directory, or delete {out / 'manifest.json'} to replace it")
    assert snapshot(out) == before


def test_debian_refuses_another_release_in_the_same_out(tmp_path, capsys):
    out = debian_out(tmp_path)
    debian.prepare(out, valid_permille=0, test_permille=0)
    before = snapshot(out)
    message = refused(debian.main, ["--out", str(out), "--dist", "trixie"], capsys)
    assert "holds another corpus (Debian bookworm, not trixie)" in message
    assert snapshot(out) == before


# --- prep.finetune ----------------------------------------------------------------------------------------

def fake_parent(directory: Path, n_train: int = 40) -> Path:
    """raw/ of a prepared parent plus placeholders for spm.model and bin/dict.src.txt: every refusal below
    comes before they are read."""
    for split, n in (("train", n_train), ("valid", 6), ("test", 5)):
        src = [f"{WORDS[i % 12]} {WORDS[(i + 3) % 12]} x{i}" for i in range(n)]
        write_lines(directory / "raw" / f"{split}.src", src)
        write_lines(directory / "raw" / f"{split}.tgt", [f"{WORDS[i % 12]} y{i}" for i in range(n)])
    (directory / "spm.model").write_bytes(b"placeholder")
    write_lines(directory / "bin" / "dict.src.txt", ["alpha 3"])
    return directory


def ft_argv(parent: Path, out: Path, *extra: str) -> List[str]:
    return ["--parent", str(parent), "--out", str(out), "--train-subset", "10", "--valid-subset", "3",
            "--pretrain-valid", "5", *extra]


def test_finetune_refuses_out_equal_to_parent(tmp_path, capsys):
    parent = fake_parent(tmp_path / "p")
    before = snapshot(parent)
    message = refused(finetune.main, ft_argv(parent, parent), capsys)
    assert message == (f"error: --out {parent} is the same directory as --parent {parent}; give an output "
                       "directory outside the input")
    assert snapshot(parent) == before


def test_finetune_refuses_out_inside_parent(tmp_path, capsys):
    parent = fake_parent(tmp_path / "p")
    before = snapshot(parent)
    message = refused(finetune.main, ft_argv(parent, parent / "ft"), capsys)
    assert message.startswith(f"error: --out {parent / 'ft'} is inside --parent {parent}")
    assert snapshot(parent) == before and not (parent / "ft").exists()


def test_finetune_refuses_an_out_holding_another_corpus(tmp_path, capsys):
    parent = fake_parent(tmp_path / "p")
    out = tmp_path / "ft"
    write_lines(out / "raw" / "train.src", ["other corpus"])
    write_lines(out / "bin" / "dict.src.txt", ["other 1"])
    before = snapshot(out)
    message = refused(finetune.main, ft_argv(parent, out), capsys)
    assert message.startswith(f"error: --out {out} holds raw/, bin/ that no manifest.json records")
    assert snapshot(out) == before
    # a subset of another parent, recorded: refused as well
    other = fake_parent(tmp_path / "other", n_train=30)
    (out / "manifest.json").write_text(json.dumps({"key": {"parent_raw": {"train.src": "0" * 64}},
                                                   "parent": str(other)}))
    before = snapshot(out)
    message = refused(finetune.main, ft_argv(parent, out), capsys)
    assert f"holds another corpus (a subset of {other}, not of {parent})" in message
    assert snapshot(out) == before


def test_finetune_refuses_a_pretrain_valid_that_leaves_no_pretraining_text(tmp_path, capsys):
    parent = fake_parent(tmp_path / "p")  # 40 training pairs: 80 text lines
    out = tmp_path / "ft"
    message = refused(finetune.main, ft_argv(parent, out)[:-2] + ["--pretrain-valid", "1000"], capsys)
    assert message == (f"error: --pretrain-valid 1000 would hold out all 80 training-split text lines of {parent}, "
                       "leaving no pre-training text; give at most 79")
    assert not out.exists()


def test_finetune_refuses_a_subset_larger_than_the_parent_before_writing(tmp_path, capsys):
    parent = fake_parent(tmp_path / "p")
    out = tmp_path / "ft"
    message = refused(finetune.main, ft_argv(parent, out, "--valid-subset", "7"), capsys)
    assert message == "error: --valid-subset 7 exceeds the parent's 6 valid pairs"
    assert not out.exists()


# --- prep.binarize ----------------------------------------------------------------------------------------

def raw_corpus(directory: Path, n_train: int = 40, n_train_tgt: int = 40) -> Path:
    src = [" ".join(WORDS[(i + j) % 12] for j in range(4 + i % 5)) for i in range(n_train)]
    tgt = [" ".join(WORDS[(i + j) % 12] for j in range(3 + i % 3)) for i in range(n_train)]
    write_lines(directory / "raw" / "train.src", src)
    write_lines(directory / "raw" / "train.tgt", tgt[:n_train_tgt])
    for split in ("valid", "test"):
        write_lines(directory / "raw" / f"{split}.src", src[:5])
        write_lines(directory / "raw" / f"{split}.tgt", tgt[:5])
    return directory


def test_binarize_refuses_unpaired_lines_before_sentencepiece(tmp_path, capsys):
    data = raw_corpus(tmp_path / "d", n_train_tgt=39)
    before = snapshot(data)
    message = refused(binarize.main, ["--data", str(data), "--vocab-size", "40"], capsys)
    raw = data / "raw"
    assert message == (f"error: {raw / 'train.src'} and {raw / 'train.tgt'} differ in length (40 vs 39 lines); "
                       "each source line needs its target on the same line")
    assert snapshot(data) == before  # no spm.model: refused before SentencePiece trained


def test_binarize_refuses_a_target_cut_that_drops_every_pair(tmp_path, capsys):
    data = raw_corpus(tmp_path / "d")
    message = refused(binarize.main, ["--data", str(data), "--vocab-size", "40", "--max-tgt-pieces", "1"], capsys)
    shortest = re.fullmatch(r"error: --max-tgt-pieces 1 drops every train pair \(the shortest target has (\d+) "
                            r"pieces\); give at least \1, or leave it out to keep all", message)
    assert shortest and int(shortest.group(1)) >= 2, message
    assert not (data / "bin").exists() and not (data / "spm" / "train.src").exists()


def test_binarize_refuses_to_replace_outputs_it_did_not_record(tmp_path, capsys):
    data = raw_corpus(tmp_path / "d")
    write_lines(data / "bin" / "dict.src.txt", ["<mask> 0"])  # e.g. prep.finetune's dictionary
    before = snapshot(data)
    message = refused(binarize.main, ["--data", str(data), "--vocab-size", "40"], capsys)
    assert message == (f"error: --data {data} holds bin that no binarize.json records (made by another tool?); "
                       "binarize a copy of raw/ in a new directory, or delete them to rebuild")
    assert snapshot(data) == before


def test_tsv_warns_about_and_records_duplicated_rows_and_test_rows_seen_in_training(tmp_path, capsys):
    rows = [f"title {i}\tcontent number {i}" for i in range(4)]
    train = write_lines(tmp_path / "train.tsv", rows + rows)  # every row twice
    valid = write_lines(tmp_path / "valid.tsv", ["v\tvalid content"])
    test = write_lines(tmp_path / "test.tsv", [rows[0], rows[1].replace("title", "other title"), "t\tnew content"])
    manifest = tsv.prepare(tmp_path / "o", train, test, "reference", valid=valid)
    assert manifest["duplicate_rows"] == {"train": 4, "valid": 0, "test": 0}
    assert manifest["overlap_with_train"] == {"valid": 0, "test": 2}  # by source text: a new title is no new row
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["overlap_with_train"]["test"] == 2
    warnings = [line.split("] ", 1)[1] for line in capsys.readouterr().err.splitlines() if "warning:" in line]
    assert warnings == [
        "warning: 4 of 8 train rows repeat an earlier train row (recorded in manifest.json as duplicate_rows)",
        "warning: 2 of 3 test rows have a source that also occurs in training; test scores will flatter the model "
        "(recorded in manifest.json as overlap_with_train)"]
