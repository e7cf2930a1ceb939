"""The two 95% intervals of a paired difference (fairseq_eb.scoring.intervals), checked against independent
computations: the t quantiles by integrating Student's density, the bootstrap against the normal theory."""
import math
import random

import numpy as np
import pytest

from fairseq_eb.scoring import intervals, rouge_l_per_sentence, score


def _t_cdf_from_zero(q: float, df: int, steps: int = 20000) -> float:
    """P(0 < T < q) for Student's t with ``df`` degrees of freedom, by Simpson's rule on its density."""
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    f = lambda x: c * (1 + x * x / df) ** (-(df + 1) / 2)  # noqa: E731
    h = q / steps
    total = f(0) + f(q) + sum((4 if i % 2 else 2) * f(i * h) for i in range(1, steps))
    return total * h / 3


@pytest.mark.parametrize("df", [1, 2, 3, 4, 9, 29, 30, 40, 100])
def test_t_quantiles_leave_2_5_percent_in_each_tail(df):
    assert _t_cdf_from_zero(intervals.t_quantile_975(df), df) == pytest.approx(0.475, abs=3e-4)


def test_seed_interval_is_the_student_t_interval():
    deltas = [0.52, 0.82, 0.41, 0.04, 0.19]
    lo, hi = intervals.seed_interval(deltas)
    mean, std = float(np.mean(deltas)), float(np.std(deltas, ddof=1))
    assert (lo + hi) / 2 == pytest.approx(mean)
    assert (hi - lo) / 2 == pytest.approx(2.776 * std / math.sqrt(5))
    assert lo > 0  # every seed up, by a margin: the interval excludes 0
    assert intervals.seed_interval([0.3]) is None  # one seed: no spread, no interval
    with pytest.raises(ValueError, match="degrees of freedom"):
        intervals.t_quantile_975(0)


def test_sentence_bootstrap_matches_normal_theory_and_is_deterministic():
    rng = np.random.default_rng(5)
    d = rng.normal(0.3, 4.0, size=(3, 2000))  # 3 seeds × 2,000 sentences
    boot = intervals.sentence_bootstrap(d, samples=2000, seed=1)
    per_sentence = d.mean(axis=0)
    se = per_sentence.std(ddof=1) / math.sqrt(per_sentence.size)
    assert boot["mean"] == pytest.approx(d.mean())
    assert boot["lo"] == pytest.approx(per_sentence.mean() - 1.96 * se, abs=0.25 * se)
    assert boot["hi"] == pytest.approx(per_sentence.mean() + 1.96 * se, abs=0.25 * se)
    z = per_sentence.mean() / se
    assert boot["not_better"] == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)), abs=0.01)
    assert intervals.sentence_bootstrap(d, samples=2000, seed=1) == boot
    assert (boot["sentences"], boot["seeds"], boot["samples"]) == (2000, 3, 2000)


def test_sentence_bootstrap_resamples_sentences_not_seeds():
    # the seeds disagree wildly, but every sentence's seed average is 1: no sentence-sampling uncertainty
    d = np.array([[5.0, -3.0, 1.0], [-3.0, 5.0, 1.0]])
    boot = intervals.sentence_bootstrap(d, samples=200)
    assert boot["lo"] == pytest.approx(1.0) and boot["hi"] == pytest.approx(1.0) and boot["not_better"] == 0.0


def test_sentence_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="seeds, sentences"):
        intervals.sentence_bootstrap(np.zeros(4))
    with pytest.raises(ValueError, match="seeds, sentences"):
        intervals.sentence_bootstrap(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="samples must be >= 1"):
        intervals.sentence_bootstrap(np.zeros((1, 4)), samples=0)


def test_verdict_needs_both_intervals_on_one_side():
    assert intervals.verdict((0.1, 0.5), (0.05, 0.4)) == "gain"
    assert intervals.verdict((-0.5, -0.1), (-0.4, -0.02)) == "loss"
    assert intervals.verdict((0.1, 0.5), (-0.05, 0.4)) == "not established"
    assert intervals.verdict((-0.2, 0.5), (0.05, 0.4)) == "not established"
    assert intervals.verdict(None, (0.05, 0.4)) == "one seed: not established"
    cell = intervals.interval_cell((0.03, 0.77), {"mean": 0.4, "lo": 0.12, "hi": 0.68})
    assert cell == "+0.40; seeds [+0.03, +0.77]; sentences [+0.12, +0.68]: **gain**"


def test_per_sentence_rouge_l_averages_to_the_corpus_score():
    rnd = random.Random(3)
    words = "the a package tool library for of and data python files".split()
    refs = [" ".join(rnd.choice(words) for _ in range(rnd.randint(1, 8))) for _ in range(50)]
    hyps = [" ".join(rnd.choice(words) for _ in range(rnd.randint(0, 8))) for _ in range(50)]
    per = rouge_l_per_sentence(hyps, refs)
    assert len(per) == 50 and all(0.0 <= v <= 100.0 for v in per)
    assert sum(per) / len(per) == pytest.approx(score(hyps, refs)["rouge-l"])
    assert rouge_l_per_sentence(["A b"], ["a B"]) == [100.0]  # lower-cased like score()
    with pytest.raises(ValueError, match="1 hypotheses but 2 references"):
        rouge_l_per_sentence(["a"], ["a", "b"])
