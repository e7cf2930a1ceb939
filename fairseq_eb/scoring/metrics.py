"""``score``: every metric of the reference experiment (docs/method.md §6) for hypotheses and references, ×100."""
from collections import Counter
from typing import Dict, List, Sequence, Tuple, Union

from fairseq_eb.choices import check_choice
from fairseq_eb.scoring.bleu import bleu_from_counts, ngram_counts, overlap
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
    The tokenisation and n-gram counts are done once and shared by all metrics where they coincide.
    """
    from sacrebleu.metrics import BLEU

    check_choice("tokenize", tokenize, TOKENIZE_MODES)
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if not hyps:
        raise ValueError("nothing to score: no hypotheses")
    sums = dict.fromkeys(("rouge-1", "rouge-2", "rouge-l", "bleu"), 0.0)
    corpus = CorpusBleuStats()
    tokenizer_13a = Tokenizer13a()
    for hyp, ref in zip(hyps, refs):
        h, r = tokenize_text(hyp, tokenize), tokenize_text(ref, tokenize)
        h_counts, r_counts = ngram_counts(h), ngram_counts(r)  # 1..4-grams, shared by ROUGE-1/2 and BLEU
        sums["rouge-1"] += rouge_n(h_counts[0], r_counts[0])
        sums["rouge-2"] += rouge_n(h_counts[1], r_counts[1])
        sums["rouge-l"] += rouge_l(h, r)
        sums["bleu"] += bleu_from_counts(h_counts, r_counts, len(h), len(r))
        if tokenize == "char":  # sacreBLEU's char tokens are ours: non-space characters, lower-cased
            corpus.add(h_counts, r_counts, len(h), len(r))
        else:  # its 13a tokens differ from whitespace tokens only around punctuation
            h13 = tokenizer_13a(hyp.lower().rstrip()).split()
            r13 = tokenizer_13a(ref.lower().rstrip()).split()
            corpus.add(h_counts if h13 == h else ngram_counts(h13), r_counts if r13 == r else ngram_counts(r13),
                       len(h13), len(r13))
    n = len(hyps)
    result: Dict[str, Union[float, int, str]] = {k: 100.0 * v / n for k, v in sums.items()}
    bleu = BLEU(tokenize=_SACREBLEU_TOKENIZER[tokenize], lowercase=True)
    result["sacrebleu"] = float(BLEU.compute_bleu(
        corpus.correct, corpus.total, corpus.sys_len, corpus.ref_len, smooth_method=bleu.smooth_method,
        smooth_value=bleu.smooth_value, effective_order=bleu.effective_order, max_ngram_order=4).score)
    bleu.corpus_score(["a"], [["a"]])  # a one-sentence call records what the signature reports (1 reference)
    result["sacrebleu_signature"] = str(bleu.get_signature())
    result["n"] = n
    return result


def rouge_l_per_sentence(hyps: Sequence[str], refs: Sequence[str], tokenize: str = "word") -> List[float]:
    """Each sentence's ROUGE-L F1 × 100, on the tokens :func:`score` uses (their mean is its ``rouge-l``).

    Why per sentence: paired significance tests resample test sentences (:mod:`fairseq_eb.scoring.intervals`).
    """
    check_choice("tokenize", tokenize, TOKENIZE_MODES)
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    return [100.0 * rouge_l(tokenize_text(h, tokenize), tokenize_text(r, tokenize)) for h, r in zip(hyps, refs)]


class CorpusBleuStats:
    """sacreBLEU's sufficient statistics (one reference per sentence), summed over the corpus.

    Why not ``BLEU.corpus_score``: it tokenises and counts n-grams again, which doubled the scorer's run
    time; the counts of :func:`score` are reused whenever sacreBLEU's tokens equal ours. The score then
    comes from sacreBLEU's own ``BLEU.compute_bleu`` with its default settings (equality with
    ``corpus_score`` is tested).
    """

    def __init__(self, max_n: int = 4) -> None:
        self.correct = [0] * max_n
        self.total = [0] * max_n
        self.sys_len = 0
        self.ref_len = 0

    def add(self, hyp_counts: Sequence[Counter], ref_counts: Sequence[Counter], hyp_len: int, ref_len: int) -> None:
        for k, (h, r) in enumerate(zip(hyp_counts, ref_counts)):
            self.correct[k] += overlap(h, r)
            self.total[k] += sum(h.values())
        self.sys_len += hyp_len
        self.ref_len += ref_len
