"""``fairseq-eb-score``: score fairseq-generate output or hypothesis/reference files (docs/method.md §6)."""
import argparse
import json
import sys
from typing import List, Optional, Sequence

from fairseq_eb.scoring.generate_output import (
    load_spm,
    missing_ids_error,
    read_generate_hypotheses,
    read_generate_output,
)
from fairseq_eb.scoring.metrics import METRIC_TITLES, score
from fairseq_eb.scoring.tokenize import TOKENIZE_MODES, has_cjk
from fairseq_eb.textfile import read_lines


def load(args: argparse.Namespace):
    """(hyps, refs) from the arguments: generate output (optionally with --ref) or --hyp/--ref."""
    if args.spm_model:
        load_spm(args.spm_model)  # fail early, also when the output turns out to hold no pieces
    if args.generate_output:
        if args.hyp:
            raise ValueError("give --generate-output or --hyp, not both")
        if not args.ref:
            return read_generate_output(args.generate_output, args.spm_model)
        by_id = read_generate_hypotheses(args.generate_output, args.spm_model)
        refs = read_lines(args.ref)
        missing = [i for i in range(len(refs)) if i not in by_id]
        if missing:
            raise missing_ids_error(args.generate_output, missing, len(refs))
        extra = sorted(i for i in by_id if not 0 <= i < len(refs))
        if extra:
            raise ValueError(f"{args.generate_output} has hypotheses for ids up to {max(extra)}, "
                             f"but {args.ref} has only {len(refs)} lines; they must match id for line")
        return [by_id[i] for i in range(len(refs))], refs
    if not (args.hyp and args.ref):
        raise ValueError("give --generate-output FILE, or both --hyp FILE and --ref FILE")
    return read_lines(args.hyp), read_lines(args.ref)


def spaceless_cjk_warning(refs: Sequence[str], tokenize: str) -> Optional[str]:
    """A hint when word-level scoring meets Chinese/Japanese text written without spaces (all scores ~0)."""
    if tokenize != "word":
        return None
    cjk = [r for r in refs if has_cjk(r)]
    if not cjk or sum(1 for r in cjk if " " not in r.strip()) * 2 < len(cjk):
        return None
    return (f"warning: {len(cjk)} of {len(refs)} references contain CJK text, mostly without spaces; "
            "--tokenize word treats each such line as a single token. Use --tokenize char to score per character.")


def format_table(result: dict, tokenize: str) -> str:
    lines = [f"{'metric':<12}{'score':>8}", "-" * 20]
    lines += [f"{title:<12}{result[key]:>8.2f}" for key, title in METRIC_TITLES]
    lines += [f"n = {result['n']}, tokenize = {tokenize}; BLEU = mean sentence BLEU-4 (method1), sacreBLEU = corpus",
              f"sacreBLEU: {result['sacrebleu_signature']}"]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="fairseq-eb-score", description=__doc__)
    parser.add_argument("--generate-output", metavar="FILE", help="fairseq-generate output (H-/D-/T- lines)")
    parser.add_argument("--spm-model", metavar="M", help="SentencePiece model to decode pieces with")
    parser.add_argument("--hyp", metavar="FILE", help="hypotheses, one per line")
    parser.add_argument("--ref", metavar="FILE",
                        help="references, one per line (with --generate-output: replaces its T- lines)")
    parser.add_argument("--tokenize", choices=TOKENIZE_MODES, default="word",
                        help="char: every non-space character (Chinese); word: whitespace tokens")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    try:
        hyps, refs = load(args)
        warning = spaceless_cjk_warning(refs, args.tokenize)
        if warning:
            print(f"fairseq-eb-score: {warning}", file=sys.stderr)
        result = score(hyps, refs, args.tokenize)
    except (OSError, ValueError) as e:
        print(f"fairseq-eb-score: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(result) if args.json else format_table(result, args.tokenize))


if __name__ == "__main__":
    main()
