"""``score``: every metric of the reference experiment (docs/method.md §6) for hypotheses and references, ×100."""
from typing import Dict, Sequence, Tuple, Union

from fairseq_eb.choices import check_choice
from fairseq_eb.scoring.bleu import bleu_from_counts, ngram_counts
from fairseq_eb.scoring.rouge import rouge_l, rouge_n
from fairseq_eb.scoring.sacrebleu_13a import Tokenizer13a
from fairseq_eb.scoring.tokenize import TOKENIZE_MODES
from fairseq_eb.scoring.tokenize import tokenize as tokenize_text

# Every metric ``score`` returns, key -> title, in the reference table's column order. BLEU is the mean
# sentence BLEU-4 of the reference; sacreBLEU (corpus level) is an extra, not in the reference table.
METRIC_TITLES: Tuple[Tuple[str, str], ...] = (
    ("rouge-l", "ROUGE-L"), ("rouge-1", "ROUGE-1"), ("rouge-2", "ROUGE-2"), ("bleu", "BLEU"),
    ("sacrebleu", "sacreBLEU"),
)
REFERENCE_METRICS: Tuple[Tuple[str, str], ...] = METRIC_TITLES[:4]
_SACREBLEU_TOKENIZER = {"char": "char", "word": "13a"}


def score(hyps: Sequence[str], refs: Sequence[str], tokenize: str = "word") -> Dict[str, Union[float, int, str]]:
    """Mean per-sentence ROUGE-1/2/L F1 and BLEU-4 (method1), plus corpus sacreBLEU.

    All on lower-cased ``tokenize`` tokens ("char" for Chinese, "word" otherwise); an empty
    hypothesis scores 0 and counts in every mean. ROUGE has rouge-score's definitions
    (:mod:`fairseq_eb.scoring.rouge`) on our tokens. sacreBLEU uses its own tokenizer
    (``char`` resp. ``13a``, lower-cased); its signature is returned under ``sacrebleu_signature``.
    """
    from sacrebleu.metrics import BLEU

    check_choice("tokenize", tokenize, TOKENIZE_MODES)
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if not hyps:
        raise ValueError("nothing to score: no hypotheses")
    sums = dict.fromkeys(("rouge-1", "rouge-2", "rouge-l", "bleu"), 0.0)
    for hyp, ref in zip(hyps, refs):
        h, r = tokenize_text(hyp, tokenize), tokenize_text(ref, tokenize)
        h_counts, r_counts = ngram_counts(h), ngram_counts(r)  # 1..4-grams, shared by ROUGE-1/2 and BLEU
        sums["rouge-1"] += rouge_n(h_counts[0], r_counts[0])
        sums["rouge-2"] += rouge_n(h_counts[1], r_counts[1])
        sums["rouge-l"] += rouge_l(h, r)
        sums["bleu"] += bleu_from_counts(h_counts, r_counts, len(h), len(r))
    n = len(hyps)
    result: Dict[str, Union[float, int, str]] = {k: 100.0 * v / n for k, v in sums.items()}
    bleu = BLEU(tokenize=_SACREBLEU_TOKENIZER[tokenize], lowercase=True)
    if tokenize == "word":
        bleu.tokenizer = Tokenizer13a()  # sacreBLEU's 13a, same output, faster (see the module)
    result["sacrebleu"] = float(bleu.corpus_score(list(hyps), [list(refs)]).score)
    result["sacrebleu_signature"] = str(bleu.get_signature())
    result["n"] = n
    return result
