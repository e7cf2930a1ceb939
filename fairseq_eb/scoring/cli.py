"""``fairseq-eb-score``: score fairseq-generate output or hypothesis/reference files (docs/method.md §6).

With ``--baseline``, also a second system's output on the same sentences and the paired ROUGE-L difference
with a 95% bootstrap interval over the sentences (:mod:`fairseq_eb.scoring.intervals`): is a gain more than
the choice of test sentences explains?
"""
import argparse
import json
import re
import sys
from typing import List, Optional, Sequence, Set

from fairseq_eb.scoring.generate_output import (
    load_spm,
    missing_ids_error,
    read_generate_hypotheses,
    read_generate_output,
)
from fairseq_eb.scoring.metrics import METRIC_TITLES, score
from fairseq_eb.scoring.tokenize import TOKENIZE_MODES, has_cjk
from fairseq_eb.textfile import read_lines


def reference_ids(path: str) -> Set[int]:
    """Ids of the ``T-`` lines of a fairseq-generate output: the sentences it decoded, whether or not each got
    a hypothesis."""
    return {int(m.group(1)) for m in map(re.compile(r"^T-(\d+)\t").match, read_lines(path)) if m}


def ref_mismatch_error(generate_output: str, ref: str, hyp_ids: Set[int], n_refs: int) -> ValueError:
    """Blame the right file when ``--ref`` has more lines than the output has hypotheses.

    The output's ``T-`` lines tell: when every decoded sentence has its hypothesis, the output is complete and
    ``--ref`` is the wrong length; sentences without one mean a truncated or failed decode.
    """
    decoded = reference_ids(generate_output)
    n = len(hyp_ids)
    if decoded and decoded == hyp_ids:
        return ValueError(f"--ref {ref} has {n_refs} lines, but {generate_output} decoded {n} sentences (its T- "
                          "lines, each with its hypothesis); --ref needs one line per test sentence, in id order")
    missing = [i for i in range(n_refs) if i not in hyp_ids]
    if decoded:
        return missing_ids_error(generate_output, missing, n_refs)
    return ValueError(f"--ref {ref} has {n_refs} lines, but {generate_output} has hypotheses for {n} sentences "
                      f"(no hypothesis for ids {', '.join(map(str, missing[:5]))}{', ...' if len(missing) > 5 else ''}"
                      "): is --ref this test set's references, or is the output truncated?")


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
        if any(i not in by_id for i in range(len(refs))):
            raise ref_mismatch_error(args.generate_output, args.ref, set(by_id), len(refs))
        extra = sorted(i for i in by_id if not 0 <= i < len(refs))
        if extra:
            raise ValueError(f"{args.generate_output} has hypotheses for ids up to {max(extra)}, "
                             f"but {args.ref} has only {len(refs)} lines; they must match id for line")
        return [by_id[i] for i in range(len(refs))], refs
    if not (args.hyp and args.ref):
        raise ValueError("give --generate-output FILE, or both --hyp FILE and --ref FILE")
    return read_lines(args.hyp), read_lines(args.ref)


def load_baseline(args: argparse.Namespace, refs: Sequence[str]) -> List[str]:
    """The baseline's hypotheses, read like the main system's (``--baseline`` takes the place of
    --generate-output resp. --hyp); references taken from its T- lines must equal the main system's."""
    as_main = argparse.Namespace(**vars(args))
    if args.generate_output:
        as_main.generate_output = args.baseline
    else:
        as_main.hyp = args.baseline
    hyps, base_refs = load(as_main)
    if len(hyps) != len(refs):
        raise ValueError(f"--baseline {args.baseline}: {len(hyps)} sentences, but the system scored has "
                         f"{len(refs)}; both must decode the same test set")
    differ = next((i for i, (a, b) in enumerate(zip(base_refs, refs)) if a != b), None)
    if differ is not None:
        raise ValueError(f"--baseline {args.baseline}: its reference of sentence {differ} differs from the "
                         "system's; both must decode the same test set")
    return hyps


def paired(hyps: Sequence[str], base_hyps: Sequence[str], refs: Sequence[str], tokenize: str) -> dict:
    """The system's ROUGE-L minus the baseline's, with the paired bootstrap's interval over sentences."""
    import numpy as np

    from fairseq_eb.scoring.intervals import sentence_bootstrap
    from fairseq_eb.scoring.metrics import rouge_l_per_sentence

    delta = np.array(rouge_l_per_sentence(hyps, refs, tokenize)) - np.array(
        rouge_l_per_sentence(base_hyps, refs, tokenize))
    boot = sentence_bootstrap(delta[None, :])
    return {"delta_rouge_l": boot["mean"], "lo": boot["lo"], "hi": boot["hi"], "not_better": boot["not_better"],
            "samples": boot["samples"]}


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


def format_paired(result: dict, base: dict, pair: dict) -> str:
    return "\n".join([
        f"baseline:   ROUGE-L {base['rouge-l']:.2f}  ROUGE-1 {base['rouge-1']:.2f}  ROUGE-2 {base['rouge-2']:.2f}  "
        f"BLEU {base['bleu']:.2f}",
        f"difference: ROUGE-L {pair['delta_rouge_l']:+.2f}, 95% interval over the {result['n']} sentences "
        f"[{pair['lo']:+.2f}, {pair['hi']:+.2f}] (paired bootstrap, {pair['samples']} resamples; not ahead in "
        f"{100 * pair['not_better']:.1f}% of them). Training randomness is not in it: compare several seeds."])


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="fairseq-eb-score", description=__doc__)
    parser.add_argument("--generate-output", metavar="FILE", help="fairseq-generate output (H-/D-/T- lines)")
    parser.add_argument("--spm-model", metavar="M", help="SentencePiece model to decode pieces with")
    parser.add_argument("--hyp", metavar="FILE", help="hypotheses, one per line")
    parser.add_argument("--ref", metavar="FILE",
                        help="references, one per line (with --generate-output: replaces its T- lines)")
    parser.add_argument("--tokenize", choices=TOKENIZE_MODES, default="word",
                        help="char: every non-space character (Chinese); word: whitespace tokens")
    parser.add_argument("--baseline", metavar="FILE",
                        help="a second system's output on the same sentences, in the form of the first "
                        "(fairseq-generate output, or hypotheses with --hyp): adds its scores and the paired ROUGE-L "
                        "difference with a 95%% bootstrap interval over the sentences")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    try:
        hyps, refs = load(args)
        base_hyps = load_baseline(args, refs) if args.baseline else None
        warning = spaceless_cjk_warning(refs, args.tokenize)
        if warning:
            print(f"fairseq-eb-score: {warning}", file=sys.stderr)
        result = score(hyps, refs, args.tokenize)
        if base_hyps is not None:
            base = score(base_hyps, refs, args.tokenize)
            pair = paired(hyps, base_hyps, refs, args.tokenize)
    except (OSError, ValueError) as e:
        print(f"fairseq-eb-score: error: {e}", file=sys.stderr)
        sys.exit(2)
    if args.json:
        print(json.dumps(dict(result, baseline=base, paired=pair) if base_hyps is not None else result))
        return
    print(format_table(result, args.tokenize))
    if base_hyps is not None:
        print(format_paired(result, base, pair))


if __name__ == "__main__":
    main()
