"""SentencePiece + ``fairseq-preprocess``: ``DIR/raw`` -> ``DIR/spm.model``, ``DIR/spm/``, ``DIR/bin/``.

One SentencePiece model is trained on the training sources and targets together (so that
``--joined-dictionary`` and shared embeddings make sense); ``--char`` trains a character model,
the usual choice for Chinese. Sources are cut to ``--max-src-pieces`` pieces in every split (the
model's input); training/validation pairs whose target is longer than ``--max-tgt-pieces`` are
dropped (a cut title would teach the model to stop mid-title), test targets are never touched.
Each step records its inputs in ``DIR/binarize.json`` and is skipped when they are unchanged.

To fine-tune a pretrained model, its own vocabulary must be kept: ``--spm-model FILE`` uses (copies to
``DIR/spm.model``) an existing SentencePiece model instead of training one, and ``--dict FILE`` binarises with an
existing fairseq dictionary (``fairseq-preprocess --srcdict FILE --tgtdict FILE``: one dictionary for both sides,
``DIR/bin/dict.{src,tgt}.txt`` are FILE's lines) instead of building one from the training data. Both are checked
before any step runs; the stamps record their sha256, so another file re-runs exactly the steps it feeds.
``--vocab-size``, ``--char`` and ``--character-coverage`` only shape a model trained here: with ``--spm-model``
they are refused rather than silently ignored.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from fairseq_eb.prep.common import (
    SPLITS,
    PrepError,
    all_splits,
    log,
    raw_paths,
    read_json,
    run_main,
    sha256_file,
    write_json,
)


def extra_test_splits(data: Path) -> List[str]:
    """Test sets beyond train/valid/test that a preparer wrote (``raw/ood.src`` -> ``ood``): encoded and binarised
    like ``test`` (targets never dropped), decoded with ``--gen-subset NAME``."""
    return [s for s in all_splits(p.name[:-4] for p in (data / "raw").glob("*.src")) if s not in SPLITS]


def _stamp_ok(stamps: dict, step: str, key: dict, outputs: List[Path]) -> bool:
    return stamps.get(step) == key and all(p.exists() for p in outputs)


def train_spm(data: Path, vocab_size: int, char: bool, coverage: float, threads: int) -> None:
    """Train ``data/spm.model`` on ``raw/train.src`` + ``raw/train.tgt`` (vocabulary size soft)."""
    import sentencepiece as spm

    log(f"training SentencePiece ({'char' if char else 'unigram'}, vocab {vocab_size}) on {data}/raw/train.*")
    spm.SentencePieceTrainer.train(
        input=[str(p) for p in raw_paths(data, "train")], model_prefix=str(data / "spm"),
        vocab_size=vocab_size, model_type="char" if char else "unigram",
        character_coverage=coverage, hard_vocab_limit=False, max_sentence_length=1 << 16,
        num_threads=threads, minloglevel=2)


def check_at_least_one(**options: Optional[int]) -> None:
    """Refuse sizes < 1 (``None`` = option not given): 0 or -1 would silently mean "no cut" or "drop all"."""
    for name, value in options.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise PrepError(f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}")


def encode_splits(data: Path, max_src: Optional[int], max_tgt: Optional[int]) -> Dict[str, dict]:
    """Write ``data/spm/{split}.{src,tgt}`` as space-separated pieces; return per-split statistics."""
    check_at_least_one(max_src_pieces=max_src, max_tgt_pieces=max_tgt)
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(data / "spm.model"))
    (data / "spm").mkdir(exist_ok=True)
    stats = {}
    for split in all_splits(extra_test_splits(data)):
        src_path, tgt_path = raw_paths(data, split)
        src_lines = src_path.read_text(encoding="utf-8").splitlines()
        tgt_lines = tgt_path.read_text(encoding="utf-8").splitlines()
        if len(src_lines) != len(tgt_lines):
            raise PrepError(f"{src_path} and {tgt_path} differ in length ({len(src_lines)} vs {len(tgt_lines)})")
        src_pieces = sp.encode(src_lines, out_type=str)
        tgt_pieces = sp.encode(tgt_lines, out_type=str)
        truncated = sum(1 for p in src_pieces if max_src and len(p) > max_src)
        keep = [i for i, t in enumerate(tgt_pieces)
                if split not in ("train", "valid") or not max_tgt or len(t) <= max_tgt]
        if tgt_pieces and not keep:
            shortest = min(len(t) for t in tgt_pieces)
            raise PrepError(f"--max-tgt-pieces {max_tgt} drops every {split} pair (the shortest target has "
                            f"{shortest} pieces); give at least {shortest}, or leave it out to keep all")
        if len(keep) * 2 < len(tgt_pieces):
            log(f"warning: --max-tgt-pieces {max_tgt} drops {len(tgt_pieces) - len(keep)} of {len(tgt_pieces)} "
                f"{split} pairs")
        for path, pieces, cut in ((data / "spm" / f"{split}.src", src_pieces, max_src),
                                  (data / "spm" / f"{split}.tgt", tgt_pieces, None)):
            with open(path, "w", encoding="utf-8") as f:
                for i in keep:
                    f.write(" ".join(pieces[i][:cut] if cut else pieces[i]) + "\n")
        stats[split] = {"pairs": len(keep), "dropped_long_target": len(src_lines) - len(keep),
                        "truncated_source": truncated,
                        "src_pieces_mean": round(_mean([min(len(src_pieces[i]), max_src or 1 << 30) for i in keep]), 2),
                        "tgt_pieces_mean": round(_mean([len(tgt_pieces[i]) for i in keep]), 2)}
        log(f"encoded {split}: {stats[split]}")
    return stats


def record_pieces(data: Path, stats: Dict[str, dict]) -> None:
    """Add the mean lengths in SentencePiece pieces to the preparer's ``manifest.json`` (its word lengths are there
    already), so that one file describes the data as the model sees it."""
    manifest = read_json(data / "manifest.json")
    if isinstance(manifest, dict):
        manifest["pieces"] = {split: {k: v for k, v in s.items() if k.endswith("_mean")} for split, s in stats.items()}
        write_json(data / "manifest.json", manifest)


def _mean(values: List[int]) -> float:
    return sum(values) / len(values) if values else 0.0


def run_preprocess(data: Path, workers: int, dictionary: Optional[Path] = None) -> str:
    """``fairseq-preprocess`` into ``data/bin`` (built in a temp dir, then moved): ``--joined-dictionary`` built
    from the training data, or ``--srcdict``/``--tgtdict`` ``dictionary`` for both sides; returns its log."""
    tmp, final = data / "bin.tmp", data / "bin"
    shutil.rmtree(tmp, ignore_errors=True)
    spm_dir = data / "spm"
    vocab = (["--joined-dictionary"] if dictionary is None
             else ["--srcdict", str(dictionary), "--tgtdict", str(dictionary)])
    extra = extra_test_splits(data)
    tests = ",".join(str(spm_dir / s) for s in ["test", *extra])
    cmd = [sys.executable, "-m", "fairseq_cli.preprocess", "--source-lang", "src", "--target-lang", "tgt",
           "--trainpref", str(spm_dir / "train"), "--validpref", str(spm_dir / "valid"),
           "--testpref", tests, "--destdir", str(tmp), *vocab, "--workers", str(workers)]
    log(f"running fairseq-preprocess {' '.join(vocab)}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PrepError(f"fairseq-preprocess failed (exit {proc.returncode}):\n"
                        f"{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    for number, name in enumerate(extra, 1):  # fairseq names the k-th extra test prefix test<k>
        for produced in tmp.glob(f"test{number}.src-tgt.*"):
            os.replace(produced, tmp / produced.name.replace(f"test{number}.", f"{name}.", 1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return proc.stdout + proc.stderr


_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # fairseq's Dictionary holds these before the file's lines


def read_dictionary(path: Path) -> List[str]:
    """The symbols of a fairseq dictionary file, checked as fairseq's ``Dictionary.add_from_file`` reads it
    (``symbol count`` lines, an optional ``#fairseq:overwrite`` flag, no symbol twice); PrepError naming
    ``--dict`` and the line otherwise, before fairseq-preprocess fails on it with a traceback."""
    where = f"--dict {path}"
    if not Path(path).is_file():
        raise PrepError(f"{where}: no such file (a fairseq dictionary: one 'symbol count' line per symbol)")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise PrepError(f"{where}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    seen = set(_SPECIALS)
    symbols = []
    for number, line in enumerate(lines, 1):
        parts = line.rstrip().rsplit(" ", 1)
        overwrite = len(parts) == 2 and parts[1] == "#fairseq:overwrite"
        if overwrite:
            parts = parts[0].rsplit(" ", 1)
        if len(parts) != 2 or not parts[0] or not re.fullmatch(r"-?\d+", parts[1]):
            raise PrepError(f"{where}, line {number}: expected 'symbol count' (fairseq's dictionary format), "
                            f"got {line[:80]!r}")
        if parts[0] in seen and not overwrite:
            raise PrepError(f"{where}, line {number}: symbol {parts[0]!r} is listed twice (fairseq's "
                            f"{', '.join(_SPECIALS)} come first by themselves); add ' #fairseq:overwrite' to mean it")
        seen.add(parts[0])
        symbols.append(parts[0])
    if not symbols:
        raise PrepError(f"{where}: lists no symbols")
    return symbols


def check_spm_model(path: Path) -> List[str]:
    """The pieces of an existing SentencePiece model; PrepError naming ``--spm-model`` when it cannot be loaded."""
    where = f"--spm-model {path}"
    if not Path(path).is_file():
        raise PrepError(f"{where}: no such file (a SentencePiece model, e.g. mBART's sentence.bpe.model)")
    import sentencepiece as spm

    try:
        sp = spm.SentencePieceProcessor(model_file=str(path))
    except Exception as e:  # noqa: BLE001 - sentencepiece raises OSError/RuntimeError: one line either way
        raise PrepError(f"{where}: SentencePiece cannot load it ({' '.join(str(e).split())[:160]})") from None
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())
            if not (sp.is_control(i) or sp.is_unknown(i))]


def check_given_vocabulary(vocab_size: Optional[int], char: bool, coverage: Optional[float],
                           dictionary: Optional[Path], spm_model: Optional[Path]) -> None:
    """Refuse option combinations that cannot all apply, and warn when the dictionary and the pieces disagree."""
    if spm_model is None:
        if vocab_size is None:
            raise PrepError("--vocab-size is required to train a SentencePiece model (or give an existing one with "
                            "--spm-model FILE)")
    else:
        trained = [name for name, value in (("--vocab-size", vocab_size), ("--character-coverage", coverage))
                   if value is not None] + (["--char"] if char else [])
        if trained:
            raise PrepError(f"{' and '.join(trained)} shape a SentencePiece model trained here; --spm-model "
                            f"{spm_model} is used as it is: leave them out")
    symbols = read_dictionary(dictionary) if dictionary is not None else None
    pieces = check_spm_model(spm_model) if spm_model is not None else None
    if symbols is not None and pieces is not None:
        missing = len(set(pieces) - set(symbols))
        if missing * 2 > len(pieces):
            log(f"warning: {missing} of the {len(pieces)} pieces of --spm-model {spm_model} are not in --dict "
                f"{dictionary}: are they from the same pretrained model? (those pieces become <unk>)")
    elif symbols is not None:
        log(f"warning: --dict {dictionary} without --spm-model: the pieces of a SentencePiece model trained here "
            "are rarely the dictionary's; give the model the dictionary was made with")


def unknown_rates(preprocess_log: str) -> Dict[str, float]:
    """% of tokens fairseq-preprocess replaced by ``<unk>``, per split file (from its log)."""
    found = re.findall(r"\[(\w+)\] (\S+): \d+ sents, \d+ tokens, ([\d.e+-]+)% replaced", preprocess_log)
    return {f"{Path(name).name}": float(rate) for _, name, rate in found}


def bin_outputs(data: Path) -> List[Path]:
    b = data / "bin"
    return [b / "dict.src.txt", b / "dict.tgt.txt"] + [
        b / f"{split}.src-tgt.{lang}.{ext}" for split in all_splits(extra_test_splits(data))
        for lang in ("src", "tgt") for ext in ("bin", "idx")]


def check_raw(data: Path) -> None:
    """Every split's sources and targets exist and pair up line for line: checked before SentencePiece trains."""
    for split in all_splits(extra_test_splits(data)):
        for p in raw_paths(data, split):
            if not p.is_file():
                raise PrepError(f"{p} not found: prepare {data} first (python -m fairseq_eb.prep.debian "
                                "or python -m fairseq_eb.prep.tsv)")
        src, tgt = raw_paths(data, split)
        n_src, n_tgt = (len(p.read_text(encoding="utf-8").splitlines()) for p in (src, tgt))
        if n_src != n_tgt:
            raise PrepError(f"{src} and {tgt} differ in length ({n_src} vs {n_tgt} lines); each source line needs "
                            "its target on the same line")


def check_own_outputs(data: Path, stamps: Optional[dict], spm_model: Optional[Path] = None) -> None:
    """Refuse to replace ``bin/`` or ``spm.model`` that this preparer did not record (e.g. ``prep.finetune``'s
    dictionary with ``<mask>``, or a fairseq-preprocess output of one's own); ``--spm-model DIR/spm.model`` itself
    is the user's choice."""
    if stamps:
        return
    given = spm_model is not None and (data / "spm.model").resolve() == Path(spm_model).resolve()
    found = [name for name in ("spm.model", "bin") if (data / name).exists() and not (name == "spm.model" and given)]
    if found:
        raise PrepError(f"--data {data} holds {' and '.join(found)} that no binarize.json records (made by another "
                        "tool?); binarize a copy of raw/ in a new directory, or delete them to rebuild")


def binarize(data: Path, vocab_size: Optional[int] = None, char: bool = False, max_src_pieces: Optional[int] = None,
             max_tgt_pieces: Optional[int] = None, coverage: Optional[float] = None, workers: int = 1,
             dictionary: Optional[Path] = None, spm_model: Optional[Path] = None) -> dict:
    """Run the three steps (each skipped when up to date); return the contents of ``binarize.json``.

    ``spm_model``: use this SentencePiece model instead of training one (``vocab_size``, ``char`` and ``coverage``
    must then be left out); ``dictionary``: binarise with this fairseq dictionary instead of building one.
    """
    check_at_least_one(vocab_size=vocab_size, max_src_pieces=max_src_pieces, max_tgt_pieces=max_tgt_pieces)
    check_given_vocabulary(vocab_size, char, coverage, dictionary, spm_model)
    check_raw(data)
    start = time.time()
    stamp_path = data / "binarize.json"
    stamps = read_json(stamp_path) or {}
    check_own_outputs(data, stamps, spm_model)
    splits = all_splits(extra_test_splits(data))
    raw = {f"{s}.{lang}": sha256_file(p) for s in splits for lang, p in zip(("src", "tgt"), raw_paths(data, s))}
    threads = max(1, min(os.cpu_count() or 1, 8))

    if spm_model is not None:  # the user's model, by content (moving the file changes nothing)
        spm_key = {"given_spm_model": sha256_file(spm_model)}
    else:
        coverage = coverage if coverage is not None else (0.9995 if char else 1.0)
        spm_key = {"raw_train": [raw["train.src"], raw["train.tgt"]], "vocab_size": vocab_size, "char": char,
                   "character_coverage": coverage}
    if _stamp_ok(stamps, "spm", spm_key, [data / "spm.model"]):
        log(f"{data}/spm.model is up to date")
    else:
        stamps = {}  # everything downstream is stale too
        # recorded before spm.model is written: a run killed from here on left this tool's own outputs, which the
        # re-run replaces (check_own_outputs refuses only files no binarize.json records)
        write_json(stamp_path, {"incomplete": True})
        if spm_model is None:
            train_spm(data, vocab_size, char, coverage, threads)
        else:
            log(f"using the SentencePiece model {spm_model} (no training)")
            if (data / "spm.model").resolve() != Path(spm_model).resolve():
                shutil.copyfile(spm_model, data / "spm.model")
        stamps["spm"] = spm_key
        write_json(stamp_path, stamps)

    encode_key = {"spm_model": sha256_file(data / "spm.model"), "raw": raw,
                  "max_src_pieces": max_src_pieces, "max_tgt_pieces": max_tgt_pieces}
    encoded = [data / "spm" / f"{s}.{lang}" for s in splits for lang in ("src", "tgt")]
    if _stamp_ok(stamps, "encode", encode_key, encoded):
        log(f"{data}/spm/ is up to date")
    else:
        stamps.pop("bin", None)
        stamps["encode_stats"] = encode_splits(data, max_src_pieces, max_tgt_pieces)
        stamps["encode"] = encode_key
        write_json(stamp_path, stamps)
        record_pieces(data, stamps["encode_stats"])

    bin_key = {"encoded": {p.name: sha256_file(p) for p in encoded}}
    if dictionary is not None:  # only then: stamps of a data directory binarised before --dict existed stay valid
        bin_key["given_dict"] = sha256_file(dictionary)
    if _stamp_ok(stamps, "bin", bin_key, bin_outputs(data)):
        log(f"{data}/bin/ is up to date")
    else:
        output = run_preprocess(data, workers, dictionary)
        stamps["bin"] = bin_key
        stamps["dictionary_size"] = sum(1 for _ in open(data / "bin" / "dict.src.txt", encoding="utf-8"))
        stamps.pop("unknown_percent", None)
        if dictionary is not None:
            stamps["unknown_percent"] = unknown_rates(output)
            high = {name: rate for name, rate in stamps["unknown_percent"].items() if rate > 1.0}
            if high:
                log(f"warning: with --dict {dictionary}, fairseq-preprocess replaced "
                    f"{', '.join(f'{r:.1f}% of {n}' for n, r in high.items())} by <unk>: the pieces are not the "
                    "dictionary's (give the SentencePiece model it was made with: --spm-model)")
        write_json(stamp_path, stamps)
    log(f"done in {time.time() - start:.1f}s: {data}/bin (dictionary {stamps['dictionary_size']} + 4 specials)")
    return stamps


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="directory holding raw/ (from a preparer)")
    parser.add_argument("--vocab-size", type=int,
                        help="SentencePiece vocabulary size (>= 1); required unless --spm-model is given")
    parser.add_argument("--char", action="store_true", help="character-level model (Chinese)")
    parser.add_argument("--max-src-pieces", type=int, help="cut sources to this many pieces (>= 1; default: no cut)")
    parser.add_argument("--max-tgt-pieces", type=int,
                        help="drop train/valid pairs with longer targets (>= 1; default: keep all)")
    parser.add_argument("--character-coverage", type=float,
                        help="SentencePiece character coverage (default 0.9995 with --char, else 1.0)")
    parser.add_argument("--spm-model", type=Path, metavar="FILE",
                        help="use this SentencePiece model (e.g. a pretrained model's sentence.bpe.model) instead of "
                        "training one; not with --vocab-size, --char or --character-coverage")
    parser.add_argument("--dict", type=Path, metavar="FILE", dest="dictionary",
                        help="binarise with this fairseq dictionary (e.g. a pretrained model's dict.txt; passed to "
                        "fairseq-preprocess as --srcdict and --tgtdict) instead of building one from the data")
    parser.add_argument("--workers", type=int, default=1, help="fairseq-preprocess workers")
    args = parser.parse_args(argv)
    run_main(lambda: binarize(args.data, args.vocab_size, args.char, args.max_src_pieces,
                              args.max_tgt_pieces, args.character_coverage, args.workers,
                              dictionary=args.dictionary, spm_model=args.spm_model), lock=(args.data, "--data"))


if __name__ == "__main__":
    main()
