"""``score``: all metrics of SPEC §4 for a list of hypotheses and references, ×100."""
from typing import Dict, Sequence, Union

from fairseq_eb.scoring.bleu import sentence_bleu
from fairseq_eb.scoring.tokenize import RougeTokenizer, tokenize as tokenize_text

METRICS = ("rouge-1", "rouge-2", "rouge-l", "bleu", "sacrebleu")
_SACREBLEU_TOKENIZER = {"char": "char", "word": "13a"}


def score(hyps: Sequence[str], refs: Sequence[str], tokenize: str = "word") -> Dict[str, Union[float, int, str]]:
    """Mean per-sentence ROUGE-1/2/L F1 and BLEU-4 (method1), plus corpus sacreBLEU.

    All on lower-cased ``tokenize`` tokens ("char" for Chinese, "word" otherwise); an empty
    hypothesis scores 0 and counts in every mean. ROUGE is rouge-score's (n-gram multiset
    overlap, sentence-level LCS), with our tokenizer. sacreBLEU uses its own tokenizer
    (``char`` resp. ``13a``, lower-cased); its signature is returned under ``sacrebleu_signature``.
    """
    from rouge_score.rouge_scorer import RougeScorer
    from sacrebleu.metrics import BLEU

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if not hyps:
        raise ValueError("nothing to score: no hypotheses")
    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=RougeTokenizer(tokenize))
    sums = dict.fromkeys(("rouge-1", "rouge-2", "rouge-l", "bleu"), 0.0)
    for hyp, ref in zip(hyps, refs):
        rouge = scorer.score(ref, hyp)  # (target, prediction)
        sums["rouge-1"] += rouge["rouge1"].fmeasure
        sums["rouge-2"] += rouge["rouge2"].fmeasure
        sums["rouge-l"] += rouge["rougeL"].fmeasure
        sums["bleu"] += sentence_bleu(tokenize_text(hyp, tokenize), tokenize_text(ref, tokenize))
    n = len(hyps)
    result: Dict[str, Union[float, int, str]] = {k: 100.0 * v / n for k, v in sums.items()}
    bleu = BLEU(tokenize=_SACREBLEU_TOKENIZER[tokenize], lowercase=True)
    result["sacrebleu"] = float(bleu.corpus_score(list(hyps), [list(refs)]).score)
    result["sacrebleu_signature"] = str(bleu.get_signature())
    result["n"] = n
    return result
