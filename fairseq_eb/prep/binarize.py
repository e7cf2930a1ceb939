"""SentencePiece + ``fairseq-preprocess``: ``DIR/raw`` -> ``DIR/spm.model``, ``DIR/spm/``, ``DIR/bin/``.

One SentencePiece model is trained on the training sources and targets together (so that
``--joined-dictionary`` and shared embeddings make sense); ``--char`` trains a character model,
the usual choice for Chinese. Sources are cut to ``--max-src-pieces`` pieces in every split (the
model's input); training/validation pairs whose target is longer than ``--max-tgt-pieces`` are
dropped (a cut title would teach the model to stop mid-title), test targets are never touched.
Each step records its inputs in ``DIR/binarize.json`` and is skipped when they are unchanged.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from fairseq_eb.prep.common import SPLITS, PrepError, log, raw_paths, read_json, run_main, sha256_file, write_json


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
    for split in SPLITS:
        src_path, tgt_path = raw_paths(data, split)
        src_lines = src_path.read_text(encoding="utf-8").splitlines()
        tgt_lines = tgt_path.read_text(encoding="utf-8").splitlines()
        if len(src_lines) != len(tgt_lines):
            raise PrepError(f"{src_path} and {tgt_path} differ in length ({len(src_lines)} vs {len(tgt_lines)})")
        src_pieces = sp.encode(src_lines, out_type=str)
        tgt_pieces = sp.encode(tgt_lines, out_type=str)
        truncated = sum(1 for p in src_pieces if max_src and len(p) > max_src)
        keep = [i for i, t in enumerate(tgt_pieces)
                if split == "test" or not max_tgt or len(t) <= max_tgt]
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
                        "truncated_source": truncated}
        log(f"encoded {split}: {stats[split]}")
    return stats


def run_preprocess(data: Path, workers: int) -> None:
    """``fairseq-preprocess --joined-dictionary`` into ``data/bin`` (built in a temp dir, then moved)."""
    tmp, final = data / "bin.tmp", data / "bin"
    shutil.rmtree(tmp, ignore_errors=True)
    spm_dir = data / "spm"
    cmd = [sys.executable, "-m", "fairseq_cli.preprocess", "--source-lang", "src", "--target-lang", "tgt",
           "--trainpref", str(spm_dir / "train"), "--validpref", str(spm_dir / "valid"),
           "--testpref", str(spm_dir / "test"), "--destdir", str(tmp), "--joined-dictionary",
           "--workers", str(workers)]
    log("running fairseq-preprocess --joined-dictionary")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PrepError(f"fairseq-preprocess failed (exit {proc.returncode}):\n"
                        f"{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)


def bin_outputs(data: Path) -> List[Path]:
    b = data / "bin"
    return [b / "dict.src.txt", b / "dict.tgt.txt"] + [
        b / f"{split}.src-tgt.{lang}.{ext}" for split in SPLITS for lang in ("src", "tgt") for ext in ("bin", "idx")]


def check_raw(data: Path) -> None:
    """Every split's sources and targets exist and pair up line for line: checked before SentencePiece trains."""
    for split in SPLITS:
        for p in raw_paths(data, split):
            if not p.is_file():
                raise PrepError(f"{p} not found: prepare {data} first (python -m fairseq_eb.prep.debian "
                                "or python -m fairseq_eb.prep.tsv)")
        src, tgt = raw_paths(data, split)
        n_src, n_tgt = (len(p.read_text(encoding="utf-8").splitlines()) for p in (src, tgt))
        if n_src != n_tgt:
            raise PrepError(f"{src} and {tgt} differ in length ({n_src} vs {n_tgt} lines); each source line needs "
                            "its target on the same line")


def check_own_outputs(data: Path, stamps: Optional[dict]) -> None:
    """Refuse to replace ``bin/`` or ``spm.model`` that this preparer did not record (e.g. ``prep.finetune``'s
    dictionary with ``<mask>``, or a fairseq-preprocess output of one's own)."""
    if stamps:
        return
    found = [name for name in ("spm.model", "bin") if (data / name).exists()]
    if found:
        raise PrepError(f"--data {data} holds {' and '.join(found)} that no binarize.json records (made by another "
                        "tool?); binarize a copy of raw/ in a new directory, or delete them to rebuild")


def binarize(data: Path, vocab_size: int, char: bool = False, max_src_pieces: Optional[int] = None,
             max_tgt_pieces: Optional[int] = None, coverage: Optional[float] = None, workers: int = 1) -> dict:
    """Run the three steps (each skipped when up to date); return the contents of ``binarize.json``."""
    check_at_least_one(vocab_size=vocab_size, max_src_pieces=max_src_pieces, max_tgt_pieces=max_tgt_pieces)
    check_raw(data)
    start = time.time()
    stamp_path = data / "binarize.json"
    stamps = read_json(stamp_path) or {}
    check_own_outputs(data, stamps)
    raw = {f"{s}.{lang}": sha256_file(p) for s in SPLITS for lang, p in zip(("src", "tgt"), raw_paths(data, s))}
    coverage = coverage if coverage is not None else (0.9995 if char else 1.0)
    threads = max(1, min(os.cpu_count() or 1, 8))

    spm_key = {"raw_train": [raw["train.src"], raw["train.tgt"]], "vocab_size": vocab_size, "char": char,
               "character_coverage": coverage}
    if _stamp_ok(stamps, "spm", spm_key, [data / "spm.model"]):
        log(f"{data}/spm.model is up to date")
    else:
        stamps = {}  # everything downstream is stale too
        train_spm(data, vocab_size, char, coverage, threads)
        stamps["spm"] = spm_key
        write_json(stamp_path, stamps)

    encode_key = {"spm_model": sha256_file(data / "spm.model"), "raw": raw,
                  "max_src_pieces": max_src_pieces, "max_tgt_pieces": max_tgt_pieces}
    encoded = [data / "spm" / f"{s}.{lang}" for s in SPLITS for lang in ("src", "tgt")]
    if _stamp_ok(stamps, "encode", encode_key, encoded):
        log(f"{data}/spm/ is up to date")
    else:
        stamps.pop("bin", None)
        stamps["encode_stats"] = encode_splits(data, max_src_pieces, max_tgt_pieces)
        stamps["encode"] = encode_key
        write_json(stamp_path, stamps)

    bin_key = {"encoded": {p.name: sha256_file(p) for p in encoded}}
    if _stamp_ok(stamps, "bin", bin_key, bin_outputs(data)):
        log(f"{data}/bin/ is up to date")
    else:
        run_preprocess(data, workers)
        stamps["bin"] = bin_key
        stamps["dictionary_size"] = sum(1 for _ in open(data / "bin" / "dict.src.txt", encoding="utf-8"))
        write_json(stamp_path, stamps)
    log(f"done in {time.time() - start:.1f}s: {data}/bin (dictionary {stamps['dictionary_size']} + 4 specials)")
    return stamps


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="directory holding raw/ (from a preparer)")
    parser.add_argument("--vocab-size", required=True, type=int, help="SentencePiece vocabulary size (>= 1)")
    parser.add_argument("--char", action="store_true", help="character-level model (Chinese)")
    parser.add_argument("--max-src-pieces", type=int, help="cut sources to this many pieces (>= 1; default: no cut)")
    parser.add_argument("--max-tgt-pieces", type=int,
                        help="drop train/valid pairs with longer targets (>= 1; default: keep all)")
    parser.add_argument("--character-coverage", type=float,
                        help="SentencePiece character coverage (default 0.9995 with --char, else 1.0)")
    parser.add_argument("--workers", type=int, default=1, help="fairseq-preprocess workers")
    args = parser.parse_args(argv)
    run_main(lambda: binarize(args.data, args.vocab_size, args.char, args.max_src_pieces,
                              args.max_tgt_pieces, args.character_coverage, args.workers))


if __name__ == "__main__":
    main()
