"""Derive the small-data fine-tuning regime from a prepared corpus: ``PARENT`` -> ``OUT``.

Why: the article fine-tuned a pretrained model on ~3k pairs, the regime where teacher forcing over-fits
the gold prefixes. From scratch, a few thousand pairs give outputs far below the trivial floor, so this
regime pre-trains first (fairseq's own ``denoising`` task, the BART objective) on the parent's
*training-split* text only, then fine-tunes on a seeded subset of its training pairs.

``OUT`` gets: ``raw/`` (``--train-subset`` training pairs and ``--valid-subset`` validation pairs, both seeded
choices in their original order; the whole test split), the parent's ``spm.model``, ``bin/`` binarised with
the parent's dictionary plus ``<mask>`` (the denoising task's extra symbol, so that pre-trained and fine-tuned
models have one vocabulary), and ``pretrain-bin/`` for ``--task denoising``: every parent training source and
target, as separate lines, minus ``--pretrain-valid`` held-out lines used as its validation set. Nothing of the
parent's valid or test splits reaches ``pretrain-bin/``. ``manifest.json`` records the parent's identity, the
sizes, the seed and the sha256 of every output. Re-running with the same inputs does nothing.
"""
import argparse
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from fairseq_eb import atomic
from fairseq_eb.prep.binarize import encode_splits
from fairseq_eb.prep.common import (
    SPLITS,
    PrepError,
    check_out_dir,
    check_out_not_in_input,
    check_same_corpus,
    log,
    raw_paths,
    raw_sha256,
    read_json,
    recorded_manifest,
    run_main,
    sha256_file,
    write_json,
    write_raw,
)

MASK = "<mask>"


def seeded_subset(n_total: int, n: int, seed: int) -> List[int]:
    """``n`` indices out of ``range(n_total)`` chosen by a seeded shuffle, in ascending order (all if n >= total)."""
    if n <= 0 or n >= n_total:
        return list(range(n_total))
    return sorted(random.Random(seed).sample(range(n_total), n))


def read_pairs(data: Path, split: str):
    src, tgt = (p.read_text(encoding="utf-8").splitlines() for p in raw_paths(data, split))
    if len(src) != len(tgt):
        raise PrepError(f"{data}/raw/{split}.src and .tgt differ in length ({len(src)} vs {len(tgt)})")
    return src, tgt


def write_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, "".join(line + "\n" for line in lines))


def dictionary_with_mask(parent_dict: Path, out: Path) -> Path:
    """The parent's dictionary plus ``<mask>`` (appended once), written to ``out``."""
    lines = parent_dict.read_text(encoding="utf-8").splitlines()
    if not any(line.split(" ")[0] == MASK for line in lines):
        lines.append(f"{MASK} 0")
    write_lines(out, lines)
    return out


def preprocess(args: List[str], what: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "fairseq_cli.preprocess", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise PrepError(f"fairseq-preprocess ({what}) failed (exit {proc.returncode}):\n"
                        f"{proc.stdout[-2000:]}{proc.stderr[-3000:]}")


def other_parent(manifest: Optional[dict], parent: Path, parent_raw: Dict[str, str]) -> Optional[str]:
    """What a recorded manifest holds when it is not derived from ``parent`` (None when it is: a re-run).

    The same parent by path or by the content of its raw files (a moved or re-binarised parent is still it).
    """
    if manifest is None:
        return None
    key = manifest.get("key")
    if not isinstance(key, dict) or "parent_raw" not in key:
        return f"{manifest.get('dataset', 'data of another preparer')}, not a fine-tuning subset"
    if manifest.get("parent") == str(parent.resolve()) or key.get("parent_raw") == parent_raw:
        return None
    return f"a subset of {manifest.get('parent')}, not of {parent}"


def subsets(parent: Path, train_subset: int, valid_subset: int, pretrain_valid: int):
    """The parent's training pairs and the chosen sizes checked against them, before anything is written."""
    train_src, train_tgt = read_pairs(parent, "train")
    sizes = {"train": len(train_src), "valid": len(read_pairs(parent, "valid")[0])}
    for split, n in (("train", train_subset), ("valid", valid_subset)):
        if n > sizes[split]:
            raise PrepError(f"--{split}-subset {n} exceeds the parent's {sizes[split]} {split} pairs")
    lines = sum(1 for line in train_src + train_tgt if line.strip())
    if pretrain_valid >= lines:
        raise PrepError(f"--pretrain-valid {pretrain_valid} would hold out all {lines} training-split text lines "
                        f"of {parent}, leaving no pre-training text; give at most {max(lines - 1, 0)}")
    return train_src, train_tgt


def prepare(parent: Path, out: Path, train_subset: int, valid_subset: int, seed: int,
            pretrain_valid: int = 500, max_pretrain_pieces: int = 0, workers: int = 1) -> dict:
    """Build ``out`` (skipped when its manifest matches); return the manifest."""
    parent_dict = parent / "bin" / "dict.src.txt"
    stamps = read_json(parent / "binarize.json") or {}
    for needed in (parent / "spm.model", parent_dict):
        if not needed.is_file():
            raise PrepError(f"{needed} not found: binarise the parent first (python -m fairseq_eb.prep.binarize "
                            f"--data {parent} ...)")
    if train_subset < 1 or valid_subset < 1 or pretrain_valid < 1:
        raise PrepError("--train-subset, --valid-subset and --pretrain-valid must be >= 1, got "
                        f"{train_subset}, {valid_subset}, {pretrain_valid}")
    check_out_dir(out)
    check_out_not_in_input(out, parent, "--parent")
    max_src = (stamps.get("encode") or {}).get("max_src_pieces")
    raw = {f"{s}.{side}": p for s in SPLITS for side, p in zip(("src", "tgt"), raw_paths(parent, s))}
    missing = [str(p) for p in raw.values() if not p.is_file()]
    if missing:
        raise PrepError(f"--parent {parent}: {missing[0]} not found; prepare the parent first")
    parent_raw = {name: sha256_file(p) for name, p in raw.items()}
    manifest = recorded_manifest(out)
    check_same_corpus(out, manifest, other_parent(manifest, parent, parent_raw), ("raw", "bin", "pretrain-bin"))
    train_src, train_tgt = subsets(parent, train_subset, valid_subset, pretrain_valid)
    key = {"parent_raw": parent_raw,
           "parent_spm": sha256_file(parent / "spm.model"), "parent_dict": sha256_file(parent_dict),
           "train_subset": train_subset, "valid_subset": valid_subset, "seed": seed,
           "pretrain_valid": pretrain_valid, "max_src_pieces": max_src, "max_pretrain_pieces": max_pretrain_pieces}
    manifest_path = out / "manifest.json"
    manifest = manifest or {}
    if manifest.get("key") == key and (out / "bin" / "train.src-tgt.src.bin").exists() and (
            out / "pretrain-bin" / "train.bin").exists():
        log(f"{out} is up to date")
        return manifest
    out.mkdir(parents=True, exist_ok=True)
    log(f"deriving {out} from {parent}: {train_subset} training and {valid_subset} validation pairs (seed {seed})")
    splits = {}
    for split, n in (("train", train_subset), ("valid", valid_subset), ("test", 0)):
        src, tgt = (train_src, train_tgt) if split == "train" else read_pairs(parent, split)
        keep = seeded_subset(len(src), n, seed) if n else list(range(len(src)))
        splits[split] = [(src[i], tgt[i]) for i in keep]
    counts: Dict[str, int] = write_raw(out, splits)
    shutil.copyfile(parent / "spm.model", out / "spm.model")
    encode_stats = encode_splits(out, max_src, None)
    dict_path = dictionary_with_mask(parent_dict, out / "dict.txt")
    shutil.rmtree(out / "bin", ignore_errors=True)
    spm_dir = out / "spm"
    preprocess(["--source-lang", "src", "--target-lang", "tgt", "--trainpref", str(spm_dir / "train"),
                "--validpref", str(spm_dir / "valid"), "--testpref", str(spm_dir / "test"),
                "--destdir", str(out / "bin"), "--joined-dictionary", "--srcdict", str(dict_path),
                "--workers", str(workers)], "pairs")

    # Pre-training text: every training-split source and target line (encoded like the pairs' sources).
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(out / "spm.model"))
    cut = max_pretrain_pieces or max_src or 0
    text = [" ".join(p[:cut] if cut else p) for p in sp.encode(train_src + train_tgt, out_type=str) if p]
    if pretrain_valid >= len(text):  # some lines encode to nothing: checked again on the encoded text
        raise PrepError(f"--pretrain-valid {pretrain_valid} would hold out all {len(text)} encoded training-split "
                        f"text lines, leaving no pre-training text; give at most {max(len(text) - 1, 0)}")
    held = set(seeded_subset(len(text), pretrain_valid, seed + 1))
    pt_dir = out / "pretrain-text"
    write_lines(pt_dir / "train", [t for i, t in enumerate(text) if i not in held])
    write_lines(pt_dir / "valid", [t for i, t in enumerate(text) if i in held])
    shutil.rmtree(out / "pretrain-bin", ignore_errors=True)
    preprocess(["--only-source", "--srcdict", str(dict_path), "--trainpref", str(pt_dir / "train"),
                "--validpref", str(pt_dir / "valid"), "--destdir", str(out / "pretrain-bin"),
                "--workers", str(workers)], "pre-training text")
    counts["pretrain_train_lines"] = len(text) - len(held)
    counts["pretrain_valid_lines"] = len(held)
    manifest = {"key": key, "parent": str(parent.resolve()), "counts": counts, "encode_stats": encode_stats,
                "outputs_sha256": raw_sha256(out)}
    write_json(manifest_path, manifest)
    log(f"done: {out}/bin ({counts['train']}/{counts['valid']}/{counts['test']} pairs), {out}/pretrain-bin "
        f"({counts['pretrain_train_lines']} + {counts['pretrain_valid_lines']} lines)")
    return manifest


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parent", required=True, type=Path, help="a prepared and binarised data directory")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--train-subset", type=int, default=5000, help="training pairs kept (default 5000)")
    parser.add_argument("--valid-subset", type=int, default=500, help="validation pairs kept (default 500)")
    parser.add_argument("--pretrain-valid", type=int, default=500,
                        help="training-split text lines held out to validate the pre-training (default 500)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the subset choices (default 1)")
    parser.add_argument("--workers", type=int, default=1, help="fairseq-preprocess workers")
    args = parser.parse_args(argv)
    run_main(lambda: prepare(args.parent, args.out, args.train_subset, args.valid_subset, args.seed,
                             args.pretrain_valid, workers=args.workers), lock=(args.out, "--out"))


if __name__ == "__main__":
    main()
