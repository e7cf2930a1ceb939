"""``fairseq-eb-score``: score fairseq-generate output or hypothesis/reference files (SPEC §4)."""
import argparse
import json
import sys
from typing import List, Optional

from fairseq_eb.scoring.generate_output import read_generate_hypotheses, read_generate_output
from fairseq_eb.scoring.metrics import score
from fairseq_eb.scoring.tokenize import TOKENIZE_MODES

_NAMES = (("rouge-1", "ROUGE-1"), ("rouge-2", "ROUGE-2"), ("rouge-l", "ROUGE-L"),
          ("bleu", "BLEU (mean sentence)"), ("sacrebleu", "sacreBLEU (corpus)"))


def _read_lines(path: str) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\r\n") for line in f]


def load(args: argparse.Namespace):
    """(hyps, refs) from the arguments: generate output (optionally with --ref) or --hyp/--ref."""
    if args.generate_output:
        if args.hyp:
            raise ValueError("give --generate-output or --hyp, not both")
        if not args.ref:
            return read_generate_output(args.generate_output, args.spm_model)
        by_id = read_generate_hypotheses(args.generate_output, args.spm_model)
        refs = _read_lines(args.ref)
        if sorted(by_id) != list(range(len(refs))):
            raise ValueError(f"{args.generate_output} has hypotheses for {len(by_id)} ids, "
                             f"{args.ref} has {len(refs)} lines; they must match id for line")
        return [by_id[i] for i in range(len(refs))], refs
    if not (args.hyp and args.ref):
        raise ValueError("give --generate-output FILE, or both --hyp FILE and --ref FILE")
    return _read_lines(args.hyp), _read_lines(args.ref)


def format_table(result: dict, tokenize: str) -> str:
    lines = [f"{'metric':<22}{'score':>8}", "-" * 30]
    lines += [f"{label:<22}{result[key]:>8.2f}" for key, label in _NAMES]
    lines += [f"n = {result['n']}, tokenize = {tokenize}", f"sacreBLEU: {result['sacrebleu_signature']}"]
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
        result = score(hyps, refs, args.tokenize)
    except (OSError, ValueError) as e:
        print(f"fairseq-eb-score: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(result) if args.json else format_table(result, args.tokenize))


if __name__ == "__main__":
    main()
