"""Prepare a title-generation corpus (CSL, LCSTS, your own) from TSV files into ``DIR/raw``.

Formats: ``reference`` = ``title<TAB>content`` per line (the reference code's LCSTS/CSL layout);
``csl`` = the CSL benchmark's ``to title<TAB>abstract<TAB>title``. The source is the content /
abstract, the target the title. Without a validation file, ``--valid-from-train N`` holds out N
training examples chosen by a seeded shuffle (the public CSL sample ships only dev and test).
"""
import argparse
import random
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from fairseq_eb.choices import check_choice
from fairseq_eb.prep.common import (
    Pair,
    PrepError,
    check_inputs_not_in_outputs,
    check_out_dir,
    check_same_corpus,
    log,
    one_line,
    raw_is_complete,
    raw_sha256,
    recorded_manifest,
    require_files,
    run_main,
    same_input,
    sha256_file,
    write_json,
    write_raw,
)
from fairseq_eb.textfile import read_lines

FORMATS = {"reference": 2, "csl": 3}


def parse_line(line: str, fmt: str) -> Optional[Pair]:
    """One TSV line -> (source, target), ``None`` for a blank line; ``ValueError`` on a bad layout."""
    line = line.rstrip("\r\n")
    if not line.strip():
        return None
    fields = line.split("\t")
    if len(fields) != FORMATS[fmt]:
        other = [f for f, n in FORMATS.items() if n == len(fields)]
        hint = f" (looks like --format {other[0]})" if other else ""
        raise ValueError(f"expected {FORMATS[fmt]} tab-separated fields for --format {fmt}, "
                         f"found {len(fields)}{hint}")
    if fmt == "reference":
        title, content = fields
    else:
        _, content, title = fields
    return one_line(content), one_line(title)


def read_tsv(path: str, fmt: str) -> Tuple[List[Pair], int]:
    """All pairs of a file, and how many rows were dropped for an empty source or target (blank lines aside)."""
    try:
        lines = read_lines(path)
    except ValueError as e:  # invalid UTF-8: the message names the file and line
        raise PrepError(str(e)) from None
    pairs: List[Pair] = []
    dropped = 0
    for number, line in enumerate(lines, 1):
        try:
            pair = parse_line(line, fmt)
        except ValueError as e:
            raise PrepError(f"{path}:{number}: {e}") from None
        if pair is None:
            continue
        if pair[0] and pair[1]:
            pairs.append(pair)
        else:
            dropped += 1
    if not pairs:
        raise PrepError(f"{path}: no examples found" + (f" ({dropped} rows with an empty field)" if dropped else ""))
    if dropped:
        log(f"{path}: dropped {dropped} rows with an empty source or target")
    return pairs, dropped


def hold_out(pairs: List[Pair], n: int, seed: int) -> Dict[str, List[Pair]]:
    """Move ``n`` examples (seeded choice, original order kept) from training to validation."""
    if not 0 < n < len(pairs):
        raise PrepError(f"--valid-from-train {n} must be between 1 and {len(pairs) - 1} (train has {len(pairs)})")
    chosen = set(random.Random(seed).sample(range(len(pairs)), n))
    return {"train": [p for i, p in enumerate(pairs) if i not in chosen],
            "valid": [p for i, p in enumerate(pairs) if i in chosen]}


def suspicious_rows(splits: Dict[str, List[Pair]]) -> Tuple[Dict[str, int], Dict[str, int]]:
    """Rows repeated within a split, and validation/test rows whose source text also occurs in training.

    Legitimate data may have both, but a test row seen in training flatters every score: warned and recorded.
    """
    duplicates = {name: len(pairs) - len(set(pairs)) for name, pairs in splits.items()}
    train_sources = {src for src, _ in splits["train"]}
    overlap = {name: sum(1 for src, _ in splits[name] if src in train_sources) for name in ("valid", "test")}
    return duplicates, overlap


def other_corpus(manifest: Optional[dict], inputs: Dict[str, dict]) -> Optional[str]:
    """What a recorded manifest holds when it is not this TSV corpus (None when it is: a re-run)."""
    if manifest is None:
        return None
    recorded = manifest.get("inputs")
    if not isinstance(recorded, dict):
        return f"{manifest.get('dataset', 'data of another preparer')}, not TSV files"
    for name, current in inputs.items():
        if name in recorded and not same_input(recorded[name], current):
            was = recorded[name] if isinstance(recorded[name], dict) else {}
            return (f"its --{name} was {was.get('path')} (sha256 {str(was.get('sha256'))[:12]}), "
                    f"not {current['path']} (sha256 {current['sha256'][:12]})")
    return None


def prepare(out: Path, train: str, test: str, fmt: str, valid: Optional[str] = None,
            valid_from_train: int = 0, seed: int = 0) -> dict:
    """Build ``out/raw`` + ``out/manifest.json`` (skipped when inputs and options are unchanged)."""
    try:
        check_choice("--format", fmt, sorted(FORMATS))
    except ValueError as e:
        raise PrepError(str(e)) from None
    check_out_dir(out)
    if (valid is None) == (not valid_from_train):
        raise PrepError("give exactly one of --valid FILE or --valid-from-train N")
    require_files([train, valid, test])
    check_inputs_not_in_outputs(out, {"--train": train, "--valid": valid, "--test": test})
    inputs = {name: {"path": str(Path(p).resolve()), "sha256": sha256_file(Path(p))}
              for name, p in (("train", train), ("valid", valid), ("test", test)) if p is not None}
    parameters = {"format": fmt, "valid_from_train": valid_from_train, "seed": seed}
    expect = {"inputs": inputs, "parameters": parameters}
    manifest_path = out / "manifest.json"
    manifest = recorded_manifest(out)
    check_same_corpus(out, manifest, other_corpus(manifest, inputs))
    if raw_is_complete(out, manifest, expect):
        log(f"{out}/raw is up to date ({manifest['counts']}); nothing to do")
        return manifest
    start = time.time()
    read = {name: read_tsv(p, fmt) for name, p in (("train", train), ("valid", valid), ("test", test)) if p}
    splits = {name: pairs for name, (pairs, _) in read.items()}
    dropped_empty = {name: dropped for name, (_, dropped) in read.items()}
    if valid is None:
        splits.update(hold_out(splits["train"], valid_from_train, seed))
    duplicates, overlap = suspicious_rows(splits)
    for name, n in duplicates.items():
        if n:
            log(f"warning: {n} of {len(splits[name])} {name} rows repeat an earlier {name} row (recorded in "
                "manifest.json as duplicate_rows)")
    for name, n in overlap.items():
        if n:
            log(f"warning: {n} of {len(splits[name])} {name} rows have a source that also occurs in training; "
                f"{name} scores will flatter the model (recorded in manifest.json as overlap_with_train)")
    out.mkdir(parents=True, exist_ok=True)
    counts = write_raw(out, splits)
    manifest = {"dataset": f"tsv-{fmt}", "inputs": inputs, "parameters": parameters, "counts": counts,
                "dropped_empty_rows": dropped_empty, "duplicate_rows": duplicates, "overlap_with_train": overlap,
                "outputs_sha256": raw_sha256(out),
                "src": "content / abstract", "tgt": "title",
                "seconds": round(time.time() - start, 1)}
    write_json(manifest_path, manifest)
    log(f"wrote {out}/raw: train {counts['train']}, valid {counts['valid']}, test {counts['test']}; "
        f"dropped rows with an empty field: {dropped_empty}")
    return manifest


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True, help="training TSV")
    parser.add_argument("--valid", help="validation TSV (or use --valid-from-train)")
    parser.add_argument("--test", required=True, help="test TSV")
    parser.add_argument("--format", required=True, choices=sorted(FORMATS),
                        help="reference: title<TAB>content; csl: to title<TAB>abstract<TAB>title")
    parser.add_argument("--valid-from-train", type=int, default=0, metavar="N",
                        help="hold out N training examples as validation set")
    parser.add_argument("--seed", type=int, default=0, help="seed for --valid-from-train")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    args = parser.parse_args(argv)
    run_main(lambda: prepare(args.out, args.train, args.test, args.format, args.valid,
                             args.valid_from_train, args.seed), lock=(args.out, "--out"))


if __name__ == "__main__":
    main()
