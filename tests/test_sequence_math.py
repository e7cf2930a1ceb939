"""Sequence-level costs and losses (docs/method.md §8): agreement with the string scorers, plain-loop
references, finite-difference gradients and the properties the criterion relies on."""
import math
import random
from typing import List, Tuple

import pytest
import torch

from fairseq_eb.scoring.bleu import sentence_bleu
from fairseq_eb.scoring.rouge import rouge_l
from fairseq_eb.sequence.costs import rouge_l_ids, sentence_bleu_ids, sequence_cost
from fairseq_eb.sequence.losses import length_normalised, ranking_loss, risk_loss


def random_pairs(rng: random.Random, n: int, lh: int, lr: int, vocab: int):
    """n padded (hyp, ref) id rows of random lengths 0..width (0 and 1 made common), from a small
    vocabulary so tokens and n-grams repeat; padding is random junk from the same vocabulary."""
    def length(width):
        return rng.choice([0, 1, width, rng.randint(0, width), rng.randint(0, width)])

    hyp_len = [length(lh) for _ in range(n)]
    ref_len = [length(lr) for _ in range(n)]
    hyp = [[rng.randint(1, vocab) for _ in range(lh)] for _ in range(n)]
    ref = [[rng.randint(1, vocab) for _ in range(lr)] for _ in range(n)]
    return torch.tensor(hyp), torch.tensor(ref), torch.tensor(hyp_len), torch.tensor(ref_len)


def as_words(ids: torch.Tensor, length: int) -> List[str]:
    return [str(t) for t in ids[:length].tolist()]


@pytest.mark.parametrize("lh,lr,vocab", [(12, 12, 3), (9, 15, 5), (20, 7, 2), (1, 1, 2), (30, 30, 8)])
def test_rouge_l_ids_matches_scoring_rouge_l(lh, lr, vocab):
    rng = random.Random(lh * 1000 + lr * 10 + vocab)
    hyp, ref, hl, rl = random_pairs(rng, 300, lh, lr, vocab)
    got = rouge_l_ids(hyp, ref, hl, rl)
    want = [100 * rouge_l(as_words(hyp[i], hl[i]), as_words(ref[i], rl[i])) for i in range(len(hl))]
    assert got.shape == (len(hl),)
    assert got.tolist() == pytest.approx(want, abs=1e-5)
    assert any(w > 0 for w in want) and any(w == 0 for w in want)  # the sample is not degenerate


@pytest.mark.parametrize("lh,lr,vocab", [(12, 12, 3), (9, 15, 5), (20, 7, 2), (1, 1, 2), (30, 30, 8)])
def test_sentence_bleu_ids_matches_scoring_sentence_bleu(lh, lr, vocab):
    rng = random.Random(lh * 1000 + lr * 10 + vocab + 1)
    hyp, ref, hl, rl = random_pairs(rng, 300, lh, lr, vocab)
    got = sentence_bleu_ids(hyp, ref, hl, rl)
    # scoring.bleu.sentence_bleu is in [0, 1]; the id version is ×100 like every reported metric.
    want = [100 * sentence_bleu(as_words(hyp[i], hl[i]), as_words(ref[i], rl[i])) for i in range(len(hl))]
    assert got.tolist() == pytest.approx(want, abs=1e-5)
    assert any(w > 0 for w in want) and any(w == 0 for w in want)


@pytest.mark.parametrize("max_n,epsilon", [(1, 0.1), (2, 0.5), (6, 0.01)])
def test_sentence_bleu_ids_other_orders_and_smoothing(max_n, epsilon):
    rng = random.Random(max_n)
    hyp, ref, hl, rl = random_pairs(rng, 200, 14, 11, 3)
    got = sentence_bleu_ids(hyp, ref, hl, rl, max_n=max_n, epsilon=epsilon)
    want = [100 * sentence_bleu(as_words(hyp[i], hl[i]), as_words(ref[i], rl[i]), max_n, epsilon)
            for i in range(len(hl))]
    assert got.tolist() == pytest.approx(want, abs=1e-5)


def test_ids_worked_by_hand_and_padding_ignored():
    # "the cat sat on the mat" vs "the cat is on the mat" as ids (tests/test_scoring.py works it by hand):
    # BLEU = 100·240^(-1/4), ROUGE-L = 100·5/6. The padding repeats the real tokens and must not count.
    the, cat, sat, on, mat, is_ = 1, 2, 3, 4, 5, 6
    hyp = torch.tensor([[the, cat, sat, on, the, mat, the, mat, the]])
    ref = torch.tensor([[the, cat, is_, on, the, mat, mat, the]])
    hl, rl = torch.tensor([6]), torch.tensor([6])
    assert sentence_bleu_ids(hyp, ref, hl, rl).item() == pytest.approx(100 * 240 ** -0.25, abs=1e-5)
    assert rouge_l_ids(hyp, ref, hl, rl).item() == pytest.approx(100 * 5 / 6, abs=1e-5)


def test_ids_zero_width_and_zero_rows():
    empty, zeros = torch.zeros(3, 0, dtype=torch.long), torch.zeros(3, dtype=torch.long)
    full, fives = torch.ones(3, 5, dtype=torch.long), torch.full((3,), 5)
    for f in (rouge_l_ids, sentence_bleu_ids):
        assert f(empty, full, zeros, fives).tolist() == [0.0] * 3
        assert f(full, empty, fives, zeros).tolist() == [0.0] * 3
        assert f(empty[:0], full[:0], zeros[:0], fives[:0]).shape == (0,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_costs_and_losses_on_cuda_match_cpu():
    hyp, ref, hl, rl = random_pairs(random.Random(11), 64, 16, 16, 4)
    for metric in ("rouge_l", "bleu"):
        got = sequence_cost(metric, hyp.cuda(), ref.cuda(), hl.cuda(), rl.cuda())
        assert got.device.type == "cuda"
        assert torch.allclose(got.cpu(), sequence_cost(metric, hyp, ref, hl, rl))
    scores, costs, mask = random_sets(4)
    for loss in (risk_loss, ranking_loss):
        assert torch.allclose(loss(scores.cuda(), costs.cuda(), mask.cuda()).cpu(), loss(scores, costs, mask))


def test_sequence_cost_is_one_minus_metric_and_rejects_unknown_metric():
    rng = random.Random(7)
    hyp, ref, hl, rl = random_pairs(rng, 50, 10, 10, 3)
    assert torch.allclose(sequence_cost("rouge_l", hyp, ref, hl, rl), 1 - rouge_l_ids(hyp, ref, hl, rl) / 100)
    assert torch.allclose(sequence_cost("bleu", hyp, ref, hl, rl), 1 - sentence_bleu_ids(hyp, ref, hl, rl) / 100)
    with pytest.raises(ValueError, match="rouge_l.*bleu"):
        sequence_cost("rouge-l", hyp, ref, hl, rl)


# ---- losses: plain-Python references -------------------------------------------------------------

def risk_reference(scores: List[float], costs: List[float], mask: List[bool], scale: float) -> float:
    valid = [k for k in range(len(scores)) if mask[k]]
    if not valid:
        return 0.0
    top = max(scale * scores[k] for k in valid)
    weights = {k: math.exp(scale * scores[k] - top) for k in valid}
    z = sum(weights.values())
    return sum(weights[k] / z * costs[k] for k in valid)


def ranking_reference(scores: List[float], costs: List[float], mask: List[bool], margin: float) -> float:
    order = sorted((k for k in range(len(scores)) if mask[k]), key=lambda k: (costs[k], k))
    total = 0.0
    for i in range(len(order)):
        for j in range(i + 1, len(order)):
            a, b = order[i], order[j]
            if costs[a] < costs[b]:
                total += max(0.0, scores[b] - scores[a] + (j - i) * margin)
    return total


def random_sets(seed: int, b: int = 12, k: int = 6, tie_costs: bool = True) -> Tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(b, k, generator=g, dtype=torch.float64) * 2 - 5
    if tie_costs:  # few distinct values, so ties occur
        costs = torch.randint(0, 4, (b, k), generator=g).double() / 4
    else:
        costs = torch.rand(b, k, generator=g, dtype=torch.float64)
    mask = torch.rand(b, k, generator=g) < 0.75
    mask[0] = False  # a row with no candidate
    mask[1] = False
    mask[1, 2] = True  # a row with one candidate
    mask[2] = True  # a full row
    scores = torch.where(mask, scores, torch.full_like(scores, float("nan")))  # junk must not leak
    costs = torch.where(mask, costs, torch.full_like(costs, float("nan")))
    return scores, costs, mask


HAND_MADE = [
    # scores, costs, mask
    ([-1.0, -2.0, -3.0], [0.2, 0.5, 0.9], [True, True, True]),
    ([-3.0, -1.0, -2.0, -0.5], [0.2, 0.5, 0.5, 0.1], [True, True, True, False]),
    ([-0.1, -0.1, -0.1, -0.1], [0.3, 0.3, 0.3, 0.3], [True, True, True, True]),
    ([-2.0, -1.0, -4.0, -1.5], [0.0, 0.4, 0.4, 0.8], [False, True, True, True]),
]


@pytest.mark.parametrize("scale", [1.0, 0.005, 3.0])
def test_risk_loss_equals_loop(scale):
    for scores, costs, mask in HAND_MADE:
        got = risk_loss(torch.tensor([scores]), torch.tensor([costs]), torch.tensor([mask]), scale)
        assert got.item() == pytest.approx(risk_reference(scores, costs, mask, scale), abs=1e-6)
    scores, costs, mask = random_sets(0)
    got = risk_loss(scores, costs, mask, scale)
    want = [risk_reference(s, c, m, scale) for s, c, m in zip(scores.tolist(), costs.tolist(), mask.tolist())]
    assert got.tolist() == pytest.approx(want, abs=1e-12)
    assert got[0].item() == 0.0


@pytest.mark.parametrize("margin", [0.001, 0.3])
def test_ranking_loss_equals_loop(margin):
    hand = [(-3.0, -1.0, -2.0, -0.5), (0.2, 0.5, 0.5, 0.1), (True, True, True, False)]
    # Valid order by cost: 0 (0.2), 1 (0.5), 2 (0.5, a tie with 1: no pair, but rank 2).
    # Pairs (0,1) gap 1 and (0,2) gap 2: max(0, -1+3+m) + max(0, -2+3+2m).
    got = ranking_loss(torch.tensor([hand[0]]), torch.tensor([hand[1]]), torch.tensor([hand[2]]), margin)
    assert got.item() == pytest.approx((2 + margin) + (1 + 2 * margin))
    for scores, costs, mask in HAND_MADE:
        got = ranking_loss(torch.tensor([scores]), torch.tensor([costs]), torch.tensor([mask]), margin)
        assert got.item() == pytest.approx(ranking_reference(scores, costs, mask, margin), abs=1e-6)
    for tie_costs in (True, False):
        scores, costs, mask = random_sets(1, tie_costs=tie_costs)
        scores = scores / 10  # length-normalised magnitudes, so margins matter
        got = ranking_loss(scores, costs, mask, margin)
        want = [ranking_reference(s, c, m, margin)
                for s, c, m in zip(scores.tolist(), costs.tolist(), mask.tolist())]
        assert got.tolist() == pytest.approx(want, abs=1e-12)
        assert got[0].item() == 0.0 and got[1].item() == 0.0


def finite_difference_grad(f, x: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    """Central differences of the scalar ``f`` at every entry of ``x`` (float64)."""
    grad = torch.zeros_like(x)
    flat, gflat = x.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        keep = flat[i].item()
        flat[i] = keep + h
        up = f(x).item()
        flat[i] = keep - h
        down = f(x).item()
        flat[i] = keep
        gflat[i] = (up - down) / (2 * h)
    return grad


@pytest.mark.parametrize("loss", ["risk", "ranking"])
def test_gradients_match_finite_differences(loss):
    scores, costs, mask = random_sets(2, tie_costs=False)
    scores = torch.where(mask, scores, torch.zeros_like(scores)) / 4
    weights = torch.rand(scores.size(0), dtype=torch.float64, generator=torch.Generator().manual_seed(3)) + 0.5

    def f(s):
        per_row = risk_loss(s, costs, mask, 1.7) if loss == "risk" else ranking_loss(s, costs, mask, 0.05)
        return (weights * per_row).sum()

    x = scores.clone().requires_grad_(True)
    f(x).backward()
    assert torch.isfinite(x.grad).all()
    assert (x.grad[~mask] == 0).all()
    numeric = finite_difference_grad(f, scores.clone())
    assert x.grad.abs().max() > 1e-3  # not trivially zero
    assert torch.allclose(x.grad, numeric, atol=1e-6)


def test_risk_loss_equal_costs_give_zero_gradient():
    scores = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True] * 5, [True, False, True, True, False], [False] * 5, [True] * 5])
    costs = torch.full((4, 5), 0.37, dtype=torch.float64)
    risk_loss(scores, costs, mask, 2.0).sum().backward()
    assert torch.allclose(scores.grad, torch.zeros_like(scores.grad), atol=1e-15)


def test_risk_loss_cheaper_argmax_lowers_loss_and_large_scale_picks_argmax():
    scores = torch.tensor([[-4.0, -1.0, -2.5, -3.0]], dtype=torch.float64)
    costs = torch.tensor([[0.1, 0.6, 0.3, 0.9]], dtype=torch.float64)
    mask = torch.ones(1, 4, dtype=torch.bool)
    before = risk_loss(scores, costs, mask).item()
    cheaper = costs.clone()
    cheaper[0, 1] = 0.4  # candidate 1 has the highest score
    assert risk_loss(scores, cheaper, mask).item() < before
    assert risk_loss(scores, costs, mask, scale=1e4).item() == pytest.approx(0.6, abs=1e-9)
    assert risk_loss(scores, costs, mask, scale=1e-9).item() == pytest.approx(costs.mean().item(), abs=1e-6)
    # masking the argmax out moves the limit to the best remaining candidate
    mask[0, 1] = False
    assert risk_loss(scores, costs, mask, scale=1e4).item() == pytest.approx(0.3, abs=1e-9)


def test_ranking_loss_correct_order_with_wide_gaps_is_zero():
    # costs ascending with scores descending by 0.1 per rank, far more than 3·margin.
    scores = torch.tensor([[-0.5, -0.6, -0.7, -0.8], [-1.2, -0.9, -1.0, -1.1]])
    costs = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.9, 0.1, 0.2, 0.5]])
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    assert ranking_loss(scores, costs, mask, margin=0.001).tolist() == [0.0, 0.0]
    # one swapped pair is penalised
    swapped = scores.clone()
    swapped[0, 0], swapped[0, 1] = -0.6, -0.5
    assert ranking_loss(swapped, costs, mask, margin=0.001)[0].item() == pytest.approx(0.1 + 0.001)


def test_ranking_loss_ties_form_no_pair():
    scores = torch.tensor([[-2.0, -0.1, -5.0]])
    costs = torch.tensor([[0.5, 0.5, 0.5]])
    assert ranking_loss(scores, costs, torch.ones(1, 3, dtype=torch.bool)).item() == 0.0


def test_length_normalised():
    scores = torch.tensor([[-6.0, -8.0]])
    lengths = torch.tensor([[3, 4]])
    assert length_normalised(scores, lengths, 1.0).tolist() == [[-2.0, -2.0]]
    assert length_normalised(scores, lengths, 0.0).tolist() == [[-6.0, -8.0]]
    assert length_normalised(scores, lengths, 2.0)[0].tolist() == pytest.approx([-6 / 9, -0.5])


def test_candidate_content_and_forced_prefix():
    """Costs compare content tokens only (no EOS, language tag or padding), and the prefix a multilingual task
    forces is each reference's own leading tag."""
    from fairseq_eb.sequence.candidates import content, forced_prefix, shifted

    protected = torch.tensor([1, 2, 250])
    tokens = torch.tensor([[5, 2, 1, 1], [250, 7, 8, 2], [9, 250, 2, 2]])
    kept, n = content(tokens, torch.tensor([2, 4, 3]), protected)
    assert n.tolist() == [1, 2, 1]
    assert [row[:k].tolist() for row, k in zip(kept, n)] == [[5], [7, 8], [9]]
    assert forced_prefix(torch.tensor([[250, 5, 2], [250, 6, 2]]), protected).tolist() == [[250], [250]]
    assert forced_prefix(torch.tensor([[5, 2], [6, 2]]), protected) is None
    assert forced_prefix(torch.tensor([[250, 5, 2], [6, 2, 1]]), protected) is None
    # the decoder input starts with each row's own first input (mBART: its target-language tag)
    prev = shifted(torch.tensor([[7, 8, 2], [9, 2, 1]]), torch.tensor([3, 2]), torch.tensor([250, 251]), pad=1)
    assert prev.tolist() == [[250, 7, 8], [251, 9, 1]]
