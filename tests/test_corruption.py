"""Statistical and structural tests of the pure replacement function (no fairseq needed)."""
import math

import pytest
import torch

from fairseq_eb.corruption import (
    corrupt_decoder_input,
    eligible_positions,
    replacement_seed,
    warmup_sample_prob,
)

PAD, BOS = 1, 2


def make_batch(n: int, max_len: int = 12, left_pad: bool = False, seed: int = 0):
    """Rows ``[BOS, y1..yn]`` with row-specific token ids (row i uses ids 1000*(i+1)+k), so a
    replacement drawn from another row would be detected."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len, (n,), generator=g)
    width = int(lengths.max()) + 1
    rows = torch.full((n, width), PAD, dtype=torch.long)
    for i, length in enumerate(lengths.tolist()):
        body = 1000 * (i + 1) + torch.randint(0, 5, (length,), generator=g)  # repeats on purpose
        row = torch.cat([torch.tensor([BOS]), body])
        if left_pad:
            rows[i, width - len(row):] = row
        else:
            rows[i, : len(row)] = row
    return rows


def binomial_ok(successes: int, trials: int, p: float, z: float = 5.0) -> bool:
    sd = math.sqrt(p * (1 - p) / trials)
    return abs(successes / trials - p) <= z * sd


def run(tokens, **kw):
    kw.setdefault("pad", PAD)
    kw.setdefault("sample_prob", 0.5)
    kw.setdefault("token_prob", 0.3)
    kw.setdefault("generator", torch.Generator().manual_seed(1))
    return corrupt_decoder_input(tokens, **kw)


@pytest.mark.parametrize("left_pad", [False, True])
def test_eligible_excludes_bos_and_pad(left_pad):
    tokens = make_batch(50, left_pad=left_pad)
    eligible = eligible_positions(tokens, PAD)
    assert not eligible[tokens.eq(PAD)].any()
    assert not eligible[tokens.eq(BOS)].any()  # BOS is the only BOS-valued token here
    assert eligible.sum().item() == tokens.ne(PAD).sum().item() - len(tokens)


def test_sentence_fraction_matches_sample_prob():
    tokens = make_batch(6000, seed=2)
    p_s = 0.5
    # with p_t = 1 a selected sentence has every eligible position selected, so selection is visible
    _, replaced = run(tokens, sample_prob=p_s, token_prob=1.0)
    selected = replaced.any(dim=1)
    assert torch.equal(replaced, eligible_positions(tokens, PAD) & selected[:, None])
    assert binomial_ok(int(selected.sum()), len(tokens), p_s)


def test_token_rate_matches_token_prob():
    tokens = make_batch(3000, seed=3)
    p_t = 0.3
    _, replaced = run(tokens, sample_prob=1.0, token_prob=p_t)
    eligible = eligible_positions(tokens, PAD)
    assert binomial_ok(int(replaced.sum()), int(eligible.sum()), p_t)


def compound_ok(replaced, eligible, p_s: float, p_t: float, z: float = 5.0) -> bool:
    """Total replaced count vs its mean under the two-level draw, with the *compound* variance.

    A sentence's count is Bernoulli(p_s) * Binomial(n, p_t): its tokens are not independent (one gate per
    sentence), so a plain binomial bound on tokens would be too tight. Var = p_s*(n p_t (1-p_t) + n^2 p_t^2)
    - (p_s n p_t)^2 per sentence, summed over sentences.
    """
    n = eligible.sum(dim=1).double()
    mean = float((p_s * p_t * n).sum())
    var = float((p_s * (n * p_t * (1 - p_t) + (n * p_t) ** 2) - (p_s * n * p_t) ** 2).sum())
    return abs(float(replaced.sum()) - mean) <= z * math.sqrt(var)


def test_default_overall_rate_is_product():
    tokens = make_batch(8000, seed=4)
    _, replaced = run(tokens)
    eligible = eligible_positions(tokens, PAD)
    assert compound_ok(replaced, eligible, 0.5, 0.3)
    # the compound bound is the honest one: it is wider than the (wrong) independent-token binomial bound
    n = eligible.sum(dim=1).double()
    compound_var = float((0.5 * (n * 0.3 * 0.7 + (n * 0.3) ** 2) - (0.5 * n * 0.3) ** 2).sum())
    assert compound_var > float(n.sum()) * 0.15 * 0.85


@pytest.mark.parametrize("left_pad", [False, True])
def test_target_pool_tokens_come_from_same_sentence(left_pad):
    tokens = make_batch(300, left_pad=left_pad, seed=5)
    out, replaced = run(tokens, sample_prob=1.0, token_prob=0.7)
    eligible = eligible_positions(tokens, PAD)
    assert replaced.any()
    for i in range(len(tokens)):
        pool = set(tokens[i][eligible[i]].tolist())
        assert set(out[i][replaced[i]].tolist()) <= pool
    # BOS, PAD and unselected positions are untouched
    assert torch.equal(out[~replaced], tokens[~replaced])


def test_target_pool_draws_uniformly_over_positions():
    # one sentence [BOS, 7, 7, 7, 9]: 7 holds 3 of 4 positions, so it must be drawn ~75% of the time
    tokens = torch.tensor([[BOS, 7, 7, 7, 9]]).repeat(4000, 1)
    out, replaced = run(tokens, sample_prob=1.0, token_prob=1.0)
    drawn = out[replaced]
    assert binomial_ok(int(drawn.eq(7).sum()), drawn.numel(), 0.75)
    assert set(drawn.unique().tolist()) == {7, 9}


def test_source_target_pool():
    tokens = make_batch(200, seed=6)
    src = torch.full((200, 6), PAD, dtype=torch.long)
    src[:, :5] = 50_000 + torch.arange(200)[:, None]  # row-specific source ids
    src[:, 5] = BOS  # source EOS (same id as BOS), a special symbol the reference can draw
    out, replaced = run(tokens, sample_prob=1.0, token_prob=1.0, pool="source_target", src_tokens=src)
    drawn_src = 0
    for i in range(len(tokens)):
        pool = set(src[i][src[i].ne(PAD)].tolist()) | set(tokens[i][tokens[i].ne(PAD)].tolist())
        got = out[i][replaced[i]].tolist()
        assert set(got) <= pool
        drawn_src += sum(t == 50_000 + i for t in got)
    assert drawn_src > 0  # the source part of the pool is really used
    assert PAD not in out[replaced].tolist()


def test_source_target_pool_with_left_padded_sources_draws_each_position_uniformly():
    """Left-padded sources of different lengths: the pool is exactly the source's non-PAD span followed by
    the decoder input's span (BOS included), each position drawn with probability 1 / (pool size)."""
    reps = 3000
    rows_src, rows_tgt, pools = [], [], []
    for src_len, width in ((3, 6), (5, 6), (1, 6)):  # left padding of 3, 1 and 5 positions
        src = [PAD] * (width - src_len) + [60_000 + 10 * src_len + k for k in range(src_len)]
        tgt = [BOS, 70_000 + 10 * src_len, 70_001 + 10 * src_len]
        rows_src += [src] * reps
        rows_tgt += [tgt] * reps
        pools.append(src[width - src_len:] + tgt)
    src, tokens = torch.tensor(rows_src), torch.tensor(rows_tgt)
    out, replaced = run(tokens, sample_prob=1.0, token_prob=1.0, pool="source_target", src_tokens=src)
    for block, pool in enumerate(pools):
        drawn = out[block * reps:(block + 1) * reps][replaced[block * reps:(block + 1) * reps]]
        assert set(drawn.tolist()) <= set(pool)  # PAD never drawn, no token of another row
        for position_token in pool:
            # BOS occurs once in the pool and is the row's only BOS: count that position's draws
            hits = int(drawn.eq(position_token).sum())
            assert binomial_ok(hits, drawn.numel(), 1.0 / len(pool)), (pool, position_token, hits, drawn.numel())


def test_vocab_pool_within_range():
    tokens = make_batch(500, seed=7)
    out, replaced = run(tokens, sample_prob=1.0, token_prob=1.0, pool="vocab", vocab_range=(4, 10))
    drawn = out[replaced]
    assert drawn.min() >= 4 and drawn.max() < 10
    assert set(drawn.unique().tolist()) == set(range(4, 10))


def test_zero_sample_prob_is_identity():
    tokens = make_batch(500, seed=8)
    out, replaced = run(tokens, sample_prob=0.0, token_prob=1.0)
    assert torch.equal(out, tokens) and not replaced.any()


def test_all_ones_replaces_every_eligible_position():
    tokens = make_batch(500, seed=9, left_pad=True)
    _, replaced = run(tokens, sample_prob=1.0, token_prob=1.0)
    assert torch.equal(replaced, eligible_positions(tokens, PAD))


def test_length_one_targets():
    tokens = torch.tensor([[BOS, 11], [BOS, 12], [BOS, PAD]])  # last: empty target, nothing eligible
    out, replaced = run(tokens, sample_prob=1.0, token_prob=1.0)
    assert replaced.tolist() == [[False, True], [False, True], [False, False]]
    assert torch.equal(out, tokens)  # the only pool token of each sentence is itself


def test_input_not_mutated_and_same_dtype_device():
    tokens = make_batch(100, seed=10)
    before = tokens.clone()
    out, _ = run(tokens, sample_prob=1.0, token_prob=1.0)
    assert torch.equal(tokens, before)
    assert out.dtype == tokens.dtype and out.device == tokens.device and out.data_ptr() != tokens.data_ptr()


def test_reproducible_from_seed_and_distinct_across_seeds():
    tokens = make_batch(200, seed=11)
    a = run(tokens, generator=torch.Generator().manual_seed(replacement_seed(1, 5, 0)))[0]
    b = run(tokens, generator=torch.Generator().manual_seed(replacement_seed(1, 5, 0)))[0]
    c = run(tokens, generator=torch.Generator().manual_seed(replacement_seed(1, 5, 1)))[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_replacement_seed_separates_every_component():
    base = replacement_seed(1, 2, 0, 0)
    others = {replacement_seed(2, 2, 0, 0), replacement_seed(1, 3, 0, 0), replacement_seed(1, 2, 1, 0),
              replacement_seed(1, 2, 0, 1), replacement_seed(1, 0, 2, 0)}
    assert base not in others and len(others) == 5
    assert 0 <= base < 2**63


def test_bad_pool_arguments():
    tokens = make_batch(4)
    with pytest.raises(ValueError, match="pool must be one of"):
        run(tokens, pool="nope")
    with pytest.raises(ValueError, match="source_target"):
        run(tokens, pool="source_target")
    with pytest.raises(ValueError, match="vocab_range"):
        run(tokens, pool="vocab", vocab_range=(5, 5))


def test_warmup_ramp():
    assert warmup_sample_prob(0.5, 0, 0) == 0.5
    assert warmup_sample_prob(0.5, 0, 100) == 0.0
    assert warmup_sample_prob(0.5, 50, 100) == pytest.approx(0.25)
    assert warmup_sample_prob(0.5, 1000, 100) == 0.5
