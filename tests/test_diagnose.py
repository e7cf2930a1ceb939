"""fairseq-eb-diagnose, pure parts: repetition share, position selection, own-error inputs, error split.

The search/model split is checked on a toy model whose distribution is given by hand (the article's
example: greedy finds (a, b) with p = 0.33, beam 2 finds (c, d) with p = 0.36), decoded by fairseq's own
SequenceGenerator, so the expected answer is known in advance.
"""
import math

import pytest
import torch

from fairseq_eb.diagnose import has_repeated_ngram, repeated_ngram_share
from fairseq_eb.diagnose.recovery import Sums, measured_steps, own_prediction_inputs, select_positions, selection_draws
from fairseq_eb.diagnose.search_errors import classify_errors, error_shares, sequence_scores

PAD, BOS = 1, 2


# --- repetition -------------------------------------------------------------------------------------

def test_has_repeated_ngram():
    assert has_repeated_ngram("a b a b".split(), 2)
    assert not has_repeated_ngram("a b b a".split(), 2)
    assert has_repeated_ngram("a b b a".split(), 1)
    assert has_repeated_ngram("a a a".split(), 2)  # overlapping occurrences count
    assert not has_repeated_ngram("a b c a b".split(), 3)
    assert not has_repeated_ngram([], 2)


def test_repeated_ngram_share_on_plain_strings():
    texts = ["the cat the cat", "a b c", "", "X y x Y"]  # lower-cased like the scorer: "x y x y" repeats
    assert repeated_ngram_share(texts, n=2) == 0.5
    assert repeated_ngram_share(texts, n=3) == 0.0
    assert repeated_ngram_share(["a b c a b c", "the cat the cat"], n=3) == 0.5
    assert repeated_ngram_share(["abab", "abc"], n=2, tokenize="char") == 0.5


@pytest.mark.parametrize("texts,n,error", [([], 2, ValueError), (["a b"], 0, ValueError), ("a b a b", 2, TypeError)])
def test_repeated_ngram_share_rejects_bad_input(texts, n, error):
    with pytest.raises(error):
        repeated_ngram_share(texts, n)


# --- positions and own-error inputs -------------------------------------------------------------------

def right_and_left_padded():
    # [BOS, y1..yn] padded right, and the same rows padded left
    right = torch.tensor([[BOS, 5, 6, 7, 8], [BOS, 9, 10, PAD, PAD]])
    left = torch.tensor([[BOS, 5, 6, 7, 8], [PAD, PAD, BOS, 9, 10]])
    return right, left


@pytest.mark.parametrize("which", [0, 1])
def test_selection_never_touches_bos_or_pad_and_is_nested(which):
    prev = right_and_left_padded()[which]
    gen = torch.Generator().manual_seed(0)
    draws = selection_draws(prev, gen)
    none, some, more, every = (select_positions(prev, PAD, draws, r) for r in (0.0, 0.3, 0.6, 1.0))
    assert not none.any()
    eligible = prev.ne(PAD) & prev.ne(BOS)  # BOS only at the start of each row here
    assert torch.equal(every, eligible)
    assert not (some & ~more).any()  # nested: common random numbers across rates
    with pytest.raises(ValueError):
        select_positions(prev, PAD, draws, 1.5)


@pytest.mark.parametrize("which", [0, 1])
def test_own_prediction_inputs_put_the_previous_steps_argmax_at_selected_positions(which):
    prev = right_and_left_padded()[which]
    predictions = torch.arange(100, 100 + prev.numel()).view_as(prev)  # distinct, recognisable "argmax"
    selected = select_positions(prev, PAD, torch.zeros(prev.shape), 1.0)
    selected[0, 3] = False
    out = own_prediction_inputs(prev, predictions, selected)
    for b in range(prev.size(0)):
        for t in range(prev.size(1)):
            expected = int(predictions[b, t - 1]) if selected[b, t] else int(prev[b, t])
            assert int(out[b, t]) == expected
    assert torch.equal(prev, right_and_left_padded()[which])  # input untouched


def test_measured_steps_next_and_later():
    changed = torch.tensor([[False, False, True, False, False], [False, True, False, False, False]])
    target = torch.tensor([[5, 6, 7, 8, BOS], [9, 10, BOS, PAD, PAD]])
    nxt, later = measured_steps(changed, target, PAD)
    assert nxt.tolist() == changed.tolist()
    assert later.tolist() == [[False, False, False, True, True], [False, False, True, False, False]]


def test_sums_report_deltas_on_the_same_positions():
    s = Sums()
    nll_clean = torch.tensor([[1.0, 2.0, 3.0]])
    nll = torch.tensor([[1.0, 4.0, 3.5]])
    m = torch.tensor([[False, True, True]])
    s.add(torch.tensor([[False, True, True]]), m, torch.tensor([[False, True, False]]),
          {"next": m, "later": m & False, "all": torch.ones_like(m)},
          nll, nll_clean, torch.tensor([[True, False, True]]), torch.tensor([[True, True, True]]))
    r = s.result(0.5)
    assert r["changed_share_of_selected"] == 0.5 and r["selected_share"] == 1.0
    assert r["next"]["n"] == 2 and math.isclose(r["next"]["delta_nll"], (2.0 + 0.5) / 2)
    assert math.isclose(r["next"]["delta_accuracy"], -0.5)
    assert r["later"]["n"] == 0 and r["later"]["delta_nll"] is None


def test_sums_by_position_split_the_next_steps_into_bins():
    torch.manual_seed(0)
    nll_clean, nll = torch.rand(3, 10), torch.rand(3, 10) + 0.5
    correct, correct_clean = torch.rand(3, 10) > 0.5, torch.rand(3, 10) > 0.3
    nxt = torch.rand(3, 10) > 0.4
    s = Sums(position_bin=4)
    for _ in range(2):  # two batches accumulate
        s.add(nxt, nxt, nxt, {"next": nxt, "later": nxt & False, "all": nxt}, nll, nll_clean, correct, correct_clean)
    rows = s.result(0.3)["next_by_position"]
    assert [(r["from"], r["to"]) for r in rows] == [(0, 3), (4, 7), (8, 11)]
    for r in rows:  # recomputed position by position
        cols = [t for t in range(10) if r["from"] <= t <= r["to"]]
        picked = [(b, t) for b in range(3) for t in cols if nxt[b, t]]
        assert r["n"] == 2 * len(picked)
        expect = sum(float(nll[b, t] - nll_clean[b, t]) for b, t in picked) / len(picked)
        assert math.isclose(r["delta_nll"], expect, rel_tol=1e-9)
        acc = sum(int(correct[b, t]) - int(correct_clean[b, t]) for b, t in picked) / len(picked)
        assert math.isclose(r["delta_accuracy"], acc)
    assert sum(r["n"] for r in rows) == s.result(0.3)["next"]["n"]


# --- search vs model errors -----------------------------------------------------------------------------

def test_classify_errors_counts_ties_explicitly_and_shares_sum_to_one():
    ref = torch.tensor([-1.0, -3.0, -2.0, -2.0, -5.0])
    hyp = torch.tensor([-2.0, -1.0, -2.0, -2.0 + 1e-9, -4.0])
    same = torch.tensor([False, False, False, False, True])
    classes = classify_errors(ref, hyp, same)
    assert classes.tolist() == [0, 1, 2, 2, 2]
    shares = error_shares(classes)
    assert shares["search_error"] == 0.2 and shares["model_error"] == 0.2 and shares["tie"] == 0.6
    assert math.isclose(shares["search_error"] + shares["model_error"] + shares["tie"], 1.0)
    with pytest.raises(ValueError):
        classify_errors(ref, hyp[:2])


def test_sequence_scores_skip_padding():
    lprobs = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]]))
    total, length = sequence_scores(lprobs, torch.tensor([[0, 1]]), pad=1)
    assert math.isclose(float(total), math.log(0.5), rel_tol=1e-6) and int(length) == 1


# --- the article's toy distribution through fairseq's SequenceGenerator -------------------------------

def toy_model():
    """p(a)=.6, p(c)=.4, p(b|a)=.55, p(d|a)=.45, p(b|c)=.1, p(d|c)=.9, then EOS; the source is ignored."""
    from fairseq.data import Dictionary
    from fairseq.models import FairseqDecoder, FairseqEncoder, FairseqEncoderDecoderModel

    d = Dictionary()
    a, b, c, dd = (d.add_symbol(s) for s in "abcd")
    table = torch.full((len(d), len(d)), -1e9)
    table[:, d.eos()] = 0.0  # after b, d (and anything else): EOS for sure
    table[d.eos(), d.eos()] = -1e9  # the first step (input BOS = EOS) never ends
    table[d.eos(), a], table[d.eos(), c] = math.log(0.6), math.log(0.4)
    table[a, :] = table[c, :] = -1e9
    for prev, nxt, p in ((a, b, 0.55), (a, dd, 0.45), (c, b, 0.1), (c, dd, 0.9)):
        table[prev, nxt] = math.log(p)

    class Encoder(FairseqEncoder):
        def forward(self, src_tokens, src_lengths=None, **kwargs):
            return {"encoder_out": [src_tokens.new_zeros(src_tokens.shape, dtype=torch.float)]}

        def reorder_encoder_out(self, encoder_out, new_order):
            return {"encoder_out": [encoder_out["encoder_out"][0].index_select(0, new_order)]}

    class Decoder(FairseqDecoder):
        def forward(self, prev_output_tokens, encoder_out=None, **kwargs):
            return table[prev_output_tokens], None

    return FairseqEncoderDecoderModel(Encoder(d), Decoder(d)), d, (a, b, c, dd)


def test_search_and_model_errors_on_the_articles_toy_distribution():
    from fairseq.sequence_generator import SequenceGenerator

    from fairseq_eb.diagnose import diagnose_batches

    model, d, (a, b, c, dd) = toy_model()
    eos = d.eos()
    refs = [[c, dd], [a, b], [a, dd], [c, b]]  # p = .36, .33, .27, .04
    target = torch.tensor([r + [eos] for r in refs])
    sample = {"id": torch.arange(4), "target": target,
              "net_input": {"src_tokens": torch.full((4, 2), a), "src_lengths": torch.full((4,), 2),
                            "prev_output_tokens": torch.cat([torch.full((4, 1), eos), target[:, :-1]], 1)}}
    out = diagnose_batches(model, d, [sample], lambda beam: SequenceGenerator([model], d, beam_size=beam),
                           rates=[0.0, 1.0], beams=[1, 2])
    s = out["sentences"]
    assert [s[i]["hyps"][1] for i in range(4)] == ["a b"] * 4  # greedy: 0.6 * 0.55 = 0.33
    assert [s[i]["hyps"][2] for i in range(4)] == ["c d"] * 4  # beam 2: 0.4 * 0.9 = 0.36
    greedy, beam2 = out["search"][1], out["search"][2]
    # greedy: ref (c,d) scores higher -> search error; (a,b) is the output -> tie; (a,d), (c,b) -> model errors
    for kind in ("raw", "normalized"):  # all lengths equal: the same split
        assert (greedy[kind]["search_error"], greedy[kind]["model_error"], greedy[kind]["tie"]) == (0.25, 0.5, 0.25)
        assert (beam2[kind]["search_error"], beam2[kind]["model_error"], beam2[kind]["tie"]) == (0.0, 0.75, 0.25)
    assert math.isclose(greedy["mean_logprob_hyp"], math.log(0.33), rel_tol=1e-6)
    assert math.isclose(beam2["mean_logprob_ref"], sum(map(math.log, (0.36, 0.33, 0.27, 0.04))) / 4, rel_tol=1e-6)
    assert out["teacher_forced"]["ntokens"] == 12


def test_error_recovery_on_the_articles_toy_distribution():
    """r = 1: every input y1, y2 becomes the model's own guess (a first, then b after a, d after c)."""
    from fairseq.sequence_generator import SequenceGenerator

    from fairseq_eb.diagnose import diagnose_batches

    model, d, (a, b, c, dd) = toy_model()
    eos = d.eos()
    target = torch.tensor([r + [eos] for r in ([c, dd], [a, b], [a, dd], [c, b])])
    sample = {"id": torch.arange(4), "target": target,
              "net_input": {"src_tokens": torch.full((4, 2), a), "src_lengths": torch.full((4,), 2),
                            "prev_output_tokens": torch.cat([torch.full((4, 1), eos), target[:, :-1]], 1)}}
    out = diagnose_batches(model, d, [sample], lambda beam: SequenceGenerator([model], d, beam_size=beam),
                           rates=[0.0, 1.0], beams=[1])
    own = out["recovery"]["own"][1]
    # changed inputs: (c,d): c->a; (a,b): none (the guesses are right); (a,d): d->b; (c,b): c->a, b->d
    assert own["selected_share"] == 1.0 and own["changed_share_of_selected"] == 0.5
    # next steps: predict d after a (.45 instead of .9), EOS after b (1 = 1), b after a (.55 instead of .1),
    # EOS after d (1 = 1)
    assert own["next"]["n"] == 4
    assert math.isclose(own["next"]["delta_nll"], (math.log(0.9 / 0.45) + math.log(0.1 / 0.55)) / 4, rel_tol=1e-6)
    # argmax after a is b: (c,b) now right at step 1, (c,d) now wrong; both EOS steps stay right
    assert own["next"]["accuracy"] == own["next"]["accuracy_clean"] == 0.75
    assert own["later"]["n"] == 1 and own["later"]["delta_nll"] == 0.0  # (c,d): EOS after gold d


# --- options refused before the checkpoint is loaded (issue 22) -------------------------------------------

@pytest.mark.parametrize("extra,message", [
    (["--batch-size", "0"], "--batch-size must be an integer >= 1 (or left out), got 0"),
    (["--max-len-b", "-1"], "--max-len-b must be an integer >= 0, and >= 1 when --max-len-a is 0 (the longest "
                            "output is a * source length + b), got -1"),
    (["--max-len-a", "-0.5"], "--max-len-a must be a finite number >= 0, got -0.5"),
])
def test_cli_refuses_bad_options_before_loading(tmp_path, capsys, extra, message):
    from fairseq_eb.diagnose.cli import main

    # the checkpoint does not exist: had the option been accepted, the error would be about --path
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path), "--path", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o"), *extra])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == f"fairseq-eb-diagnose: error: {message}"
    assert not (tmp_path / "o").exists()


def test_cli_refuses_an_existing_file_as_out_before_the_diagnosis(tmp_path, capsys, monkeypatch):
    from fairseq_eb.diagnose import cli, runner

    taken = tmp_path / "report"
    taken.write_text("keep me\n")
    monkeypatch.setattr(runner, "run_diagnosis", lambda *a, **k: pytest.fail("the diagnosis ran"))
    with pytest.raises(SystemExit) as e:
        cli.main([str(tmp_path), "--path", str(tmp_path / "none.pt"), "--out", str(taken)])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == (f"fairseq-eb-diagnose: error: --out {taken} is an existing file; "
                                               "give a directory (created if missing)")
    assert taken.read_text() == "keep me\n"
