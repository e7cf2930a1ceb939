"""``fairseq-eb-diagnose``: measure exposure bias of a seq2seq checkpoint (see ``docs/diagnose.md``)."""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path
from typing import List, Optional

from fairseq_eb.diagnose.errors import DiagnoseError
from fairseq_eb.diagnose.recovery import POSITION_BIN
from fairseq_eb.diagnose.runner import DEFAULT_BEAMS, DEFAULT_RATES, validate_options

PROG = "fairseq-eb-diagnose"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Measure exposure bias of a fairseq seq2seq checkpoint: "
                                "error recovery, beam curve with repetition, search vs model errors.")
    p.add_argument("data_bin", metavar="DATA_BIN", help="binarised data (fairseq-preprocess --destdir)")
    p.add_argument("--path", required=True, metavar="CHECKPOINT", help="the checkpoint to diagnose")
    p.add_argument("--out", required=True, metavar="DIR", help="writes DIR/diagnose.{json,md,png}")
    p.add_argument("--user-dir", default=None, help="fairseq --user-dir (default: this plugin)")
    p.add_argument("--subset", default="valid", help="data split (default: valid)")
    p.add_argument("--beams", type=int, nargs="+", default=list(DEFAULT_BEAMS), help="beam sizes (>= 1)")
    p.add_argument("--corrupt-rates", type=float, nargs="+", default=list(DEFAULT_RATES),
                   help="shares r in [0, 1] of decoder-input tokens to corrupt")
    p.add_argument("--max-sentences", type=int, default=None, help="use only the split's first N sentences")
    p.add_argument("--max-tokens", type=int, default=4096, help="tokens per batch (default 4096)")
    p.add_argument("--batch-size", type=int, default=None, help="sentences per batch (default: by --max-tokens)")
    p.add_argument("--ref-file", default=None, help="references, one line per sentence of the split, in id order "
                   "(default: the split's targets, detokenised)")
    p.add_argument("--tokenize", choices=("word", "char"), default="word",
                   help="tokenisation for scores, lengths and repetition (char: Chinese)")
    p.add_argument("--spm-model", default=None, help="SentencePiece model to detokenise the pieces with")
    p.add_argument("--ngram", type=int, default=2, help="n of the repeated-n-gram share (default 2)")
    p.add_argument("--max-len-a", type=float, default=0.0, help="beam search max length = a * src_len + b")
    p.add_argument("--max-len-b", type=int, default=200, help="see --max-len-a")
    p.add_argument("--position-bin", type=int, default=POSITION_BIN,
                   help="target positions per bin of the error-recovery jump by position (default %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="seed of the corrupted positions and tokens")
    p.add_argument("--cpu", action="store_true", help="run on CPU even when CUDA is available")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    return p


def check_cli_options(args: argparse.Namespace) -> None:
    """Options the runner does not see, refused before the checkpoint is loaded (the diagnosis takes minutes)."""
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise DiagnoseError(f"--out {args.out} is an existing file; give a directory (created if missing)")
    if args.batch_size is not None and args.batch_size < 1:
        raise DiagnoseError(f"--batch-size must be an integer >= 1 (or left out), got {args.batch_size}")
    if not math.isfinite(args.max_len_a) or args.max_len_a < 0:
        raise DiagnoseError(f"--max-len-a must be a finite number >= 0, got {args.max_len_a}")
    if args.position_bin < 1:
        raise DiagnoseError(f"--position-bin must be an integer >= 1, got {args.position_bin}")
    if args.max_len_b < 0 or (args.max_len_b == 0 and args.max_len_a == 0):
        raise DiagnoseError(f"--max-len-b must be an integer >= 0, and >= 1 when --max-len-a is 0 (the longest "
                            f"output is a * source length + b), got {args.max_len_b}")


def main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    # fairseq's text_to_speech task calls logging.basicConfig(DEBUG) on import: keep fairseq's INFO
    # lines, drop matplotlib's font-search chatter
    logging.getLogger().setLevel(logging.INFO)
    for name in ("matplotlib", "PIL"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from fairseq_eb.atomic import DiskWriteError
    from fairseq_eb.runlock import RunLock, RunLocked

    lock = None
    try:
        check_cli_options(args)
        lock = RunLock(Path(args.out), "--out", say=lambda m: print(f"{PROG}: {m}", file=sys.stderr, flush=True))
        lock.acquire()
        validate_options(args.beams, args.corrupt_rates, args.max_sentences, args.ngram, args.max_tokens)
        from fairseq_eb.diagnose.report import write_report
        from fairseq_eb.diagnose.runner import run_diagnosis

        result = run_diagnosis(
            args.data_bin, args.path, subset=args.subset, beams=args.beams, corrupt_rates=args.corrupt_rates,
            max_sentences=args.max_sentences, max_tokens=args.max_tokens, batch_size=args.batch_size,
            ref_file=args.ref_file, tokenize=args.tokenize, spm_model=args.spm_model, ngram=args.ngram,
            user_dir=args.user_dir, cpu=args.cpu, seed=args.seed, max_len_a=args.max_len_a,
            max_len_b=args.max_len_b, progress=not args.no_progress, position_bin=args.position_bin)
        paths = write_report(result, args.out)
    except (DiagnoseError, RunLocked) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except DiskWriteError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        sys.exit(1)
    finally:
        if lock is not None:
            lock.release()
    print(paths["markdown"].read_text(), end="")
    print(f"{PROG}: wrote {paths['json']}, {paths['markdown']}, {paths['png']}", file=sys.stderr)


if __name__ == "__main__":
    main()
