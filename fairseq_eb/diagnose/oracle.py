"""Best-of-K oracle gap: how much better is the best of a model's K beam candidates than the one it ranks first?

Why: a sequence-level ranking loss (``sequence_ranking``) can only teach the model to prefer, among its own
candidates, those closer to the reference; if the oracle choice among K candidates scores little above the model's
own first choice, re-ranking them cannot gain much (BRIO's gains on CNN/DM came with oracle gaps of many ROUGE
points). Reads a ``fairseq-generate --beam K --nbest K`` output; picks per sentence the candidate with the highest
sentence chrF and reports corpus BLEU and chrF of the first and of the oracle choice.

    python -m fairseq_eb.diagnose.oracle GENERATE_OUTPUT [--spm-model spm.model]
"""
from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from fairseq_eb.textfile import read_lines

_LINE = re.compile(r"^([HT])-(\d+)\t(.*)$")


def read_nbest(path: str, spm_model: Optional[str] = None) -> Tuple[List[List[str]], List[str]]:
    """(candidates per sentence, in the generator's order, best first; references), by sentence id."""
    from fairseq_eb.scoring.generate_output import _decoder

    cands: Dict[int, List[str]] = {}
    refs: Dict[int, str] = {}
    for line in read_lines(path):
        m = _LINE.match(line)
        if not m:
            continue
        kind, idx, rest = m.group(1), int(m.group(2)), m.group(3)
        if kind == "T":
            refs.setdefault(idx, rest)
        else:
            cands.setdefault(idx, []).append(rest.split("\t", 1)[1] if "\t" in rest else "")
    if not refs or set(refs) != set(cands):
        raise ValueError(f"{path}: expected H- and T- lines for the same sentences (fairseq-generate --nbest K)")
    decode = _decoder(itertools.chain(refs.values(), *cands.values()), spm_model)
    ids = sorted(refs)
    return [[decode(c) for c in cands[i]] for i in ids], [decode(refs[i]) for i in ids]


def oracle_gap(candidates: Sequence[Sequence[str]], refs: Sequence[str]) -> Dict[str, object]:
    """Corpus BLEU / chrF of the first candidate and of the best-by-sentence-chrF one, the gap, how often the first
    is already the oracle, and the oracle's mean rank (1 = first)."""
    from sacrebleu.metrics import CHRF

    from fairseq_eb.scoring.translation import bleu_from_stats, chrf_from_stats, sentence_stats

    chrf = CHRF()
    picks = []
    for cands, ref in zip(candidates, refs):
        scores = [chrf.sentence_score(c, [ref]).score for c in cands]
        picks.append(max(range(len(cands)), key=lambda k: (scores[k], -k)))
    first = [c[0] for c in candidates]
    oracle = [c[k] for c, k in zip(candidates, picks)]
    out: Dict[str, object] = {"sentences": len(refs), "k": max(len(c) for c in candidates)}
    for name, hyps in (("first", first), ("oracle", oracle)):
        b, c = sentence_stats(hyps, refs)
        out[name] = {"bleu-cased": float(bleu_from_stats(b.sum(0))), "chrf": float(chrf_from_stats(c.sum(0)))}
    out["gap"] = {k: out["oracle"][k] - out["first"][k] for k in ("bleu-cased", "chrf")}
    out["first_is_oracle"] = sum(k == 0 for k in picks) / len(picks)
    out["oracle_mean_rank"] = 1 + sum(picks) / len(picks)
    return out


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(prog="python -m fairseq_eb.diagnose.oracle", description=__doc__.split("\n")[0])
    p.add_argument("generate_output", help="fairseq-generate output with --nbest K")
    p.add_argument("--spm-model", default=None, help="SentencePiece model to detokenise with")
    args = p.parse_args(argv)
    try:
        cands, refs = read_nbest(args.generate_output, args.spm_model)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(oracle_gap(cands, refs), indent=1))


if __name__ == "__main__":
    main()
