"""The selection-noise measurement and checkpoint averaging, against independent computations."""

import numpy as np
import pytest
import torch

from fairseq_eb.recipe import noise
from fairseq_eb.recipe.averaging import average_state_dicts, interval_checkpoints
from fairseq_eb.recipe.selection import Validation


def _sentences(rng: np.random.Generator, n: int):
    words = ["a", "b", "c", "d", "e", "Foo", "bar,", "baz."]
    def sent() -> str:
        return " ".join(rng.choice(words, size=int(rng.integers(0, 9))))
    return [sent() for _ in range(n)], [sent() for _ in range(n)]


def test_corpus_bleu_of_summed_stats_is_sacrebleus():
    from sacrebleu.metrics import BLEU

    rng = np.random.default_rng(3)
    for n in (1, 3, 40):
        hyps, refs = _sentences(rng, n)
        ours = float(noise.corpus_bleu(noise.sentence_stats(hyps, refs).sum(0))[0])
        theirs = BLEU().corpus_score(hyps, [refs]).score  # fairseq --eval-bleu's settings: 13a, case kept
        assert ours == pytest.approx(theirs, abs=1e-6), (n, hyps, refs)


def test_paired_bootstrap_identical_systems_and_scaling():
    rng = np.random.default_rng(0)
    hyps, refs = _sentences(rng, 300)
    stats = noise.sentence_stats(hyps, refs)
    same = noise.paired_bootstrap(stats, stats.copy(), samples=200)
    assert same["diff"] == 0 and same["se_diff"] == 0 and same["se_a"] > 0
    other_hyps, _ = _sentences(rng, 300)
    other = noise.sentence_stats(other_hyps, refs)
    big = noise.paired_bootstrap(stats, other, samples=400, seed=1)
    assert big["lo"] <= big["diff"] <= big["hi"] and big["se_diff"] > 0
    # a quarter of the sentences: the standard error roughly doubles (1/sqrt(n))
    small = noise.paired_bootstrap(stats[:75], other[:75], samples=400, seed=1)
    assert 1.4 < small["se_a"] / big["se_a"] < 2.9
    assert noise.paired_bootstrap(stats, other, samples=50, seed=5) == noise.paired_bootstrap(
        stats, other, samples=50, seed=5)
    with pytest.raises(ValueError, match="same non-empty sentences"):
        noise.paired_bootstrap(stats, other[:10])


def _vals(*bleus):
    return [Validation(100 * (i + 1), 5.0 - i * 0.1, b) for i, b in enumerate(bleus)]


def test_neighbour_close_and_warnings():
    vals = _vals(8.0, 9.5, 9.4, 9.0, 9.45)
    assert noise.neighbour(vals, 200) == 300 and noise.neighbour(vals, 500) == 400
    assert noise.neighbour(vals[:1], 100) is None
    assert noise.close_to_best(vals, 200, se_diff=0.06) == [300, 500]  # within 1.96 * 0.06 = 0.118
    assert noise.close_to_best(vals, 200, se_diff=0.01) == []
    warn = noise.warnings_for("baseline seed 1", vals, 200, {"se_diff": 0.3}, baseline=True)
    assert len(warn) == 1 and "coin toss" in warn[0] and "300, 400, 500" in warn[0]
    rising = _vals(8.0, 8.5, 9.0)
    assert noise.still_improving(rising, 300) and not noise.still_improving(rising, 200)
    assert any("still improving" in w for w in noise.warnings_for("b", rising, 300, None, baseline=True))
    assert noise.warnings_for("RR", rising, 300, None, baseline=False) == []


def test_average_state_dicts_is_the_elementwise_mean():
    states = [{"w": torch.tensor([1.0, 2.0], dtype=torch.float16), "n": torch.tensor(i)} for i in range(3)]
    states[1]["w"] = torch.tensor([3.0, 6.0], dtype=torch.float16)
    states[2]["w"] = torch.tensor([5.0, 1.0], dtype=torch.float16)
    avg = average_state_dicts(states)
    assert avg["w"].dtype == torch.float16 and torch.equal(avg["w"], torch.tensor([3.0, 3.0], dtype=torch.float16))
    assert int(avg["n"]) == 2  # integer buffers: the newest
    with pytest.raises(ValueError, match="other parameters"):
        average_state_dicts([{"w": torch.zeros(1)}, {"v": torch.zeros(1)}])
    with pytest.raises(ValueError, match="changes shape"):
        average_state_dicts([{"w": torch.zeros(1)}, {"w": torch.zeros(2)}])
    with pytest.raises(ValueError, match="nothing to average"):
        average_state_dicts([])


def test_interval_checkpoints_sorted_by_update(tmp_path):
    for name in ("checkpoint_2_100.pt", "checkpoint_1_20.pt", "checkpoint_best.pt", "checkpoint_10_1000.pt",
                 "checkpoint_last.pt"):
        (tmp_path / name).write_text("")
    assert [p.name for p in interval_checkpoints(tmp_path)] == [
        "checkpoint_1_20.pt", "checkpoint_2_100.pt", "checkpoint_10_1000.pt"]
