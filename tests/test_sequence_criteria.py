"""sequence_risk / sequence_ranking end to end: real fairseq-train / fairseq-generate on the toy corpus, the
candidate decode against fairseq's SequenceGenerator, the criterion's loss against an independent computation,
resume, 2-rank gloo data parallel and the option checks (docs/method.md §8).

Every run fine-tunes one tiny label-smoothed baseline (150 updates, trained once per session), as the criteria are
meant to be used. Sign checks run a control with the sequence loss negated (a ``python -c`` prelude patches the
criterion's ``sequence_loss``), so each "it goes down" assertion is shown to be able to fail.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.fairseq_tools import TINY_MODEL, TRAIN_COMMON, USER_DIR, run_data_parallel_train, run_fairseq
from tests.test_ddp import CPU_DDP, max_diff
from tests.test_ddp import params_after_one_update as sgd_update

SEQ = ["--seq-beam", "4", "--seq-max-len-b", "12", "--label-smoothing", "0.1"]

# The sequence loss negated: what a sign error in the criterion would train.
FLIP = """
import fairseq_eb.criterions.sequence_level as _m
for _c in (_m.SequenceRiskCriterion, _m.SequenceRankingCriterion):
    _c.sequence_loss = (lambda f: lambda self, *a: -f(self, *a))(_c.sequence_loss)
"""

# fairseq's pytorch_ddp passes device_ids, which PyTorch refuses for a CPU module (as tests/test_ddp.py).
# Each rank records the seed and the candidates of every decode.
RECORD_DECODES = """
import json, os
import fairseq_eb.sequence.candidates as _cand
_orig = _cand.decode
def _recording(model, generator, sample, k, pad, eos, seed=None, prefix=None):
    found = _orig(model, generator, sample, k, pad, eos, seed, prefix)
    with open(os.environ["EB_OUT"] + "/rank" + os.environ["EB_RANK"] + ".jsonl", "a") as f:
        f.write(json.dumps({"seed": seed, "tokens": found.tokens.tolist()}) + "\\n")
    return found
_cand.decode = _recording
"""


# ---------------------------------------------------------------- helpers

def run_train_with_prelude(args, prelude: str) -> subprocess.CompletedProcess:
    """fairseq-train in one process with ``prelude`` run first (as run_data_parallel_train does per rank)."""
    code = f"{prelude}\nfrom fairseq_cli.train import cli_main\ncli_main()\n"
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True, text=True,
                          input="")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def inner_logs(log: str):
    """{update: {column: value}} from fairseq's train_inner lines (either logging format)."""
    out = {}
    for line in log.splitlines():
        if not re.search(r"train_inner\W+epoch", line):
            continue
        cols = {k: float(v) for k, v in re.findall(r"\b(\w+)=([-\d.eE+]+|nan|inf)", line)}
        out[int(cols["num_updates"])] = cols
    return out


def epoch_logs(log: str):
    """[{column: value}] from fairseq's end-of-epoch train lines, in order (averages over each epoch's batches)."""
    found = []
    for line in log.splitlines():
        if re.search(r"(\| train \||INFO:train:)\s*epoch \d+ \|", line):
            found.append({k: float(v) for k, v in re.findall(r"\| (\w+) ([-\d.eE+]+)(?= \||$)", line)})
    return found


def finetune_args(toy_bin, baseline, save_dir, criterion, max_update, *extra):
    return [toy_bin, "--user-dir", USER_DIR, *TINY_MODEL, *TRAIN_COMMON, "--finetune-from-model", baseline,
            "--criterion", criterion, *SEQ, "--save-dir", save_dir, "--max-update", str(max_update),
            "--disable-validation", *extra]


@pytest.fixture(scope="session")
def baseline(toy_bin, tmp_path_factory):
    """A tiny label-smoothed-CE model, 150 updates: what the sequence criteria fine-tune (trained once)."""
    save = tmp_path_factory.mktemp("seq_baseline")
    run_fairseq("train", [toy_bin, "--user-dir", USER_DIR, *TINY_MODEL, *TRAIN_COMMON, "--criterion",
                          "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--save-dir", save,
                          "--max-update", "150", "--disable-validation"])
    return save / "checkpoint_last.pt"


def load_baseline(baseline, toy_bin, dropout: float = None):
    from fairseq import checkpoint_utils
    from fairseq.modules import FairseqDropout

    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(baseline)],
                                                                    arg_overrides={"data": str(toy_bin)})
    model = models[0]
    if dropout is not None:
        for module in model.modules():
            if isinstance(module, FairseqDropout):
                module.p = dropout
    task.load_dataset("valid")
    return model, task


def valid_sample(task, n: int = 6):
    ds = task.dataset("valid")
    return ds.collater([ds[i] for i in range(n)])


# ---------------------------------------------------------------- training lowers the objective

# 64 updates = 8 epochs of the toy corpus's 8 batches: the first and last epoch averages cover the same batches,
# so their difference is the model's doing, not the batches'.
@pytest.fixture(scope="module")
def finetuned(toy_bin, baseline, tmp_path_factory):
    root = tmp_path_factory.mktemp("seq_ft")
    runs = {}
    for criterion in ("sequence_risk", "sequence_ranking"):
        args = finetune_args(toy_bin, baseline, root / criterion, criterion, 64, "--seq-combined-loss-alpha", "1")
        runs[criterion] = run_fairseq("train", args)
        flipped = finetune_args(toy_bin, baseline, root / (criterion + "_flip"), criterion, 64,
                                "--seq-combined-loss-alpha", "1")
        runs[criterion + "_flip"] = run_train_with_prelude(flipped, FLIP)
    return root, runs


def first_last(proc, column):
    epochs = epoch_logs(proc.stdout + proc.stderr)
    assert len(epochs) == 8, (proc.stdout + proc.stderr)[-3000:]
    assert len(inner_logs(proc.stdout + proc.stderr)) == 64
    return epochs[0][column], epochs[-1][column]


@pytest.mark.slow
def test_risk_alone_lowers_candidate_cost_and_flipped_sign_raises_it(finetuned):
    _, runs = finetuned
    first, last = first_last(runs["sequence_risk"], "seq_cost")
    assert last < first - 0.03, (first, last)  # measured 0.287 -> 0.218
    first_f, last_f = first_last(runs["sequence_risk_flip"], "seq_cost")
    assert last_f > first_f + 0.03, (first_f, last_f)  # measured 0.338 -> 0.968: the test can fail


@pytest.mark.slow
def test_ranking_alone_lowers_ranking_loss_not_mean_candidate_cost(finetuned):
    """BRIO's loss orders the candidates; it does not aim at their *mean* cost (seq_cost), and on the toy task
    A = 1 raises that mean (measured 0.29 -> 0.42) while the ranking loss falls. What is asserted: the loss it
    optimises falls, and with the sign flipped it rises."""
    _, runs = finetuned
    first, last = first_last(runs["sequence_ranking"], "seq_loss")
    assert last < first - 0.1, (first, last)  # measured 0.85 -> 0.57
    first_f, last_f = first_last(runs["sequence_ranking_flip"], "seq_loss")
    assert last_f > first_f + 0.1, (first_f, last_f)


@pytest.mark.slow
@pytest.mark.parametrize("criterion", ["sequence_risk", "sequence_ranking"])
def test_generate_works_unchanged_on_checkpoint(finetuned, toy_bin, criterion):
    root, _ = finetuned
    gen = run_fairseq("generate", [toy_bin, "--user-dir", USER_DIR, "--path", root / criterion / "checkpoint_last.pt",
                                   "--beam", "4", "--cpu", "--max-tokens", "500", "--gen-subset", "test"])
    assert len(re.findall(r"^H-\d+\t", gen.stdout, flags=re.M)) == 20, gen.stdout[-2000:]
    assert "BLEU4 = " in gen.stdout + gen.stderr


# ---------------------------------------------------------------- candidates

@pytest.mark.slow
def test_decode_has_no_graph_restores_mode_and_equals_sequence_generator(baseline, toy_bin):
    from fairseq.sequence_generator import SequenceGenerator

    from fairseq_eb.sequence import candidates as cand

    model, task = load_baseline(baseline, toy_bin)  # dropout 0.1: a decode in train mode would be random
    tgt = task.target_dictionary
    sample = valid_sample(task, 8)
    model.train()
    generator = cand.build_generator(model, tgt, cand.CandidateOptions(beam=4, max_len_b=12))
    assert model.training
    with torch.enable_grad():
        found = cand.decode(model, generator, sample, 4, tgt.pad(), tgt.eos())
        again = cand.decode(model, generator, sample, 4, tgt.pad(), tgt.eos())
    assert model.training and all(m.training for m in model.modules())
    for t in found[:3]:
        assert not t.requires_grad and t.grad_fn is None
    assert torch.equal(found.tokens, again.tokens)  # eval mode: no dropout in the search
    assert found.mask.shape == (8, 4) and found.mask.all()

    model.eval()
    reference = SequenceGenerator([model], tgt, beam_size=4, max_len_b=12).generate([model], sample)
    for b, hypos in enumerate(reference):
        assert len(hypos) == 4
        for k, hypo in enumerate(hypos):
            row = found.tokens[b * 4 + k]
            assert int(found.lengths[b * 4 + k]) == len(hypo["tokens"])
            assert torch.equal(row[:len(hypo["tokens"])], hypo["tokens"])
            assert row[len(hypo["tokens"]):].eq(tgt.pad()).all()
    # a model in eval mode stays in eval mode
    cand.decode(model, generator, sample, 4, tgt.pad(), tgt.eos())
    assert not model.training


@pytest.mark.slow
def test_sampled_decode_is_seeded_and_leaves_global_rng_alone(baseline, toy_bin):
    from fairseq_eb.sequence import candidates as cand

    model, task = load_baseline(baseline, toy_bin)
    tgt = task.target_dictionary
    sample = valid_sample(task, 8)
    generator = cand.build_generator(model, tgt, cand.CandidateOptions(beam=4, sampling=True, max_len_b=12))
    model.train()
    state = torch.get_rng_state()
    a = cand.decode(model, generator, sample, 4, tgt.pad(), tgt.eos(), seed=11)
    b = cand.decode(model, generator, sample, 4, tgt.pad(), tgt.eos(), seed=11)
    c = cand.decode(model, generator, sample, 4, tgt.pad(), tgt.eos(), seed=12)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.tokens, b.tokens)
    assert not torch.equal(a.tokens, c.tokens)
    assert model.training


# ---------------------------------------------------------------- the loss, recomputed independently

def label_smoothed(lprobs, target, eps):
    """fairseq's label-smoothed NLL of one sentence, written out: (1 - eps - eps_i)·nll + eps_i·Σ_v -log p_v."""
    eps_i = eps / (lprobs.size(-1) - 1)
    nll = -lprobs.gather(-1, target[:, None]).sum()
    smooth = -lprobs.sum()
    return (1.0 - eps - eps_i) * nll + eps_i * smooth


@pytest.mark.slow
@pytest.mark.parametrize("criterion", ["sequence_risk", "sequence_ranking"])
def test_loss_equals_independent_computation(baseline, toy_bin, criterion):
    from fairseq.sequence_generator import SequenceGenerator

    from fairseq_eb.criterions.sequence_level import SequenceRankingCriterion, SequenceRiskCriterion
    from fairseq_eb.scoring.rouge import rouge_l

    torch.manual_seed(0)
    model, task = load_baseline(baseline, toy_bin, dropout=0.0)
    tgt = task.target_dictionary
    pad, eos = tgt.pad(), tgt.eos()
    sample = valid_sample(task, 6)
    k, alpha, eps, margin, penalty = 4, 0.5, 0.1, 0.01, 1.0
    common = dict(seq_beam=k, seq_max_len_b=12, seq_combined_loss_alpha=alpha)
    if criterion == "sequence_risk":
        crit = SequenceRiskCriterion(task, False, eps, **common)
    else:
        crit = SequenceRankingCriterion(task, False, eps, **common, seq_rank_margin=margin,
                                        seq_length_penalty=penalty)
    model.train()
    loss, sample_size, log = crit(model, sample)
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)

    # independently: fairseq's generator, one forward per sentence / candidate on the unpadded source
    model.eval()
    hypos = SequenceGenerator([model], tgt, beam_size=k, max_len_b=12).generate([model], sample)
    model.train()
    src, target = sample["net_input"]["src_tokens"], sample["target"]

    def lprobs_of(i, y):
        s = src[i][src[i].ne(pad)][None]
        prev = torch.cat([y.new_tensor([eos]), y[:-1]])[None]
        out = model(s, torch.tensor([s.size(1)]), prev)
        return model.get_normalized_probs(out, log_probs=True)[0]

    token_total, seq_total, cost_total = 0.0, 0.0, 0.0
    for i in range(src.size(0)):
        ref = target[i][target[i].ne(pad)]
        token_total = token_total + label_smoothed(lprobs_of(i, ref), ref, eps)
        scores, costs, lengths = [], [], []
        for hypo in hypos[i][:k]:
            y = hypo["tokens"]
            scores.append(lprobs_of(i, y).gather(-1, y[:, None]).sum())
            costs.append(1.0 - rouge_l([str(t) for t in y[:-1].tolist()], [str(t) for t in ref[:-1].tolist()]))
            lengths.append(len(y))
        scores = torch.stack(scores)
        costs_t = torch.tensor(costs)
        if criterion == "sequence_risk":
            seq = (torch.softmax(scores, 0) * costs_t).sum()
        else:
            f = scores / torch.tensor(lengths, dtype=scores.dtype) ** penalty
            order = sorted(range(len(costs)), key=lambda j: costs[j])  # stable: ties by candidate index
            seq = scores.new_zeros(())
            for ri, a in enumerate(order):
                for rj, b in enumerate(order):
                    if ri < rj and costs[a] < costs[b]:
                        seq = seq + torch.relu(f[b] - f[a] + (rj - ri) * margin)
        seq_total = seq_total + seq
        cost_total += sum(costs) / len(costs)
    ntokens = sample["ntokens"]
    expected = (1 - alpha) * token_total + alpha * (ntokens / src.size(0)) * seq_total
    expected_grads = torch.autograd.grad(expected, list(model.parameters()), allow_unused=True)

    assert sample_size == ntokens
    torch.testing.assert_close(loss.detach(), expected.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(float(log["seq_loss"]), float(seq_total.detach()), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(float(log["seq_cost"]), cost_total, rtol=1e-5, atol=1e-5)
    assert float(seq_total.detach()) > 1e-3  # the sequence term is not vacuous on this batch
    for g, e in zip(grads, expected_grads):
        if g is None or e is None:
            assert (g is None or g.abs().max() == 0) and (e is None or e.abs().max() == 0)
        else:
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- resume

@pytest.mark.slow
def test_resume_with_sampling_logs_the_same_losses(toy_bin, baseline, tmp_path):
    extra = ["--seq-sampling", "--seq-combined-loss-alpha", "0.5"]
    first = run_fairseq("train", finetune_args(toy_bin, baseline, tmp_path / "ck", "sequence_risk", 5, *extra))
    resumed = run_fairseq("train", finetune_args(toy_bin, baseline, tmp_path / "ck", "sequence_risk", 11, *extra))
    straight = run_fairseq("train", finetune_args(toy_bin, baseline, tmp_path / "st", "sequence_risk", 11, *extra))
    log_resumed = resumed.stdout + resumed.stderr
    assert "@ 5 updates" in log_resumed, log_resumed[-2000:]  # mid-epoch (8 batches per epoch)
    assert set(inner_logs(first.stdout + first.stderr)) == {1, 2, 3, 4, 5}
    after, uninterrupted = inner_logs(log_resumed), inner_logs(straight.stdout + straight.stderr)
    assert set(after) == set(range(6, 12))
    for update in after:
        for column in ("loss", "nll_loss", "seq_loss", "seq_cost", "cand_len"):
            assert after[update][column] == uninterrupted[update][column], (update, column, after, uninterrupted)


# ---------------------------------------------------------------- data parallel

@pytest.mark.slow
@pytest.mark.parametrize("backend", ["legacy_ddp", "pytorch_ddp"])
def test_two_ranks_sampling_draw_different_candidates(toy_bin, baseline, tmp_path, monkeypatch, backend):
    monkeypatch.setenv("EB_OUT", str(tmp_path))
    args = finetune_args(toy_bin, baseline, tmp_path / "ck", "sequence_risk", 3, "--seq-sampling",
                         "--seq-combined-loss-alpha", "0.5", "--ddp-backend", backend)
    results = run_data_parallel_train(args, python_prelude=CPU_DDP + RECORD_DECODES, timeout=300)
    log0 = results[0].stdout + results[0].stderr
    inner = inner_logs(log0)
    assert set(inner) == {1, 2, 3} and all(0 <= c["seq_cost"] <= 1 for c in inner.values()), log0[-3000:]
    ranks = [[json.loads(line) for line in Path(tmp_path, f"rank{r}.jsonl").read_text().splitlines()]
             for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 3
    for a, b in zip(*ranks):
        assert a["seed"] is not None and a["seed"] != b["seed"]
        assert a["tokens"] != b["tokens"]
    assert (tmp_path / "ck" / "checkpoint_last.pt").exists()


def params_after_one_update(toy_bin, baseline, save_dir, criterion, mode):
    extra = ["--finetune-from-model", baseline, "--criterion", criterion]
    if criterion != "label_smoothed_cross_entropy":
        extra += ["--seq-beam", "4", "--seq-max-len-b", "12", "--seq-combined-loss-alpha", "0.5"]
    return sgd_update(toy_bin, save_dir, extra, mode)


@pytest.mark.slow
def test_beam_two_ranks_equal_one_process_with_update_freq(toy_bin, baseline, tmp_path):
    """Beam candidates are deterministic and the objective is a sum over micro-batches of per-batch terms
    (token CE + tokens/sentences·Σ sequence loss, each batch scaled by its own tokens/sentences), so one SGD
    update of 2 ranks x 1 batch equals 1 process x --update-freq 2 on the same batches, for both backends.
    (With --seq-sampling they differ by design: the seed is (update, rank, micro-batch), and rank 1's first
    micro-batch is not the single process's second.)"""
    single = params_after_one_update(toy_bin, baseline, tmp_path / "single", "sequence_risk", "single")
    plain = params_after_one_update(toy_bin, baseline, tmp_path / "plain", "label_smoothed_cross_entropy", "single")
    legacy = params_after_one_update(toy_bin, baseline, tmp_path / "legacy", "sequence_risk", "legacy_ddp")
    pytorch = params_after_one_update(toy_bin, baseline, tmp_path / "pytorch", "sequence_risk", "pytorch_ddp")
    assert max_diff(single, plain) > 1e-3  # the sequence term moves the update: the comparison can fail
    assert max_diff(single, legacy) <= 1e-5
    assert max_diff(single, pytorch) <= 1e-5


# ---------------------------------------------------------------- options

def parse_train(argv, capsys):
    from fairseq import options

    try:
        options.parse_args_and_arch(options.get_training_parser(), ["/nonexistent-data", *argv])
        code = None
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("criterion", ["sequence_risk", "sequence_ranking"])
@pytest.mark.parametrize("argv,message", [
    (["--seq-beam", "0"], "error: --seq-beam must be an integer >= 1 (candidates per source), got 0"),
    (["--seq-combined-loss-alpha", "1.5"], "error: --seq-combined-loss-alpha must be in [0, 1], got 1.5"),
    (["--seq-sampling-topk", "5"], "error: --seq-sampling-topk applies to sampled candidates only; add "
                                   "--seq-sampling or leave it out"),
    (["--seq-temperature", "0.5"], "error: --seq-temperature applies to sampled candidates only; add "
                                   "--seq-sampling or leave it out"),
    (["--seq-metric", "meteor"], "error: argument --seq-metric: invalid choice: 'meteor'"),
    (["--arch", "transformer_lm"], "decodes candidates from a source: it needs an encoder-decoder model such as "
                                   "--arch transformer; --arch transformer_lm is TransformerLanguageModel"),
], ids=["beam0", "alpha1.5", "topk-no-sampling", "temperature-no-sampling", "meteor", "transformer_lm"])
def test_bad_option_is_one_line_exit_2(capsys, criterion, argv, message):
    code, err = parse_train(["--arch", "transformer", "--criterion", criterion, *argv], capsys)
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert message in last, err[-1000:]
    if argv[0] != "--seq-metric":  # argparse's own choice error prints its usage first, as for any option
        assert len(err.strip().splitlines()) == 1, err
    assert parse_train(["--arch", "transformer", "--criterion", criterion], capsys)[0] is None


@pytest.mark.slow
def test_bad_option_stops_real_fairseq_train_before_training(toy_bin, baseline, tmp_path):
    proc = run_fairseq("train", finetune_args(toy_bin, baseline, tmp_path / "ck", "sequence_risk", 2,
                                              "--seq-combined-loss-alpha", "1.5"), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith("error: --seq-combined-loss-alpha must be in [0, 1], got 1.5")
    assert "train_inner" not in proc.stdout + proc.stderr


# ---------------------------------------------------------------- composition

@pytest.mark.slow
@pytest.mark.parametrize("criterion,extra", [
    ("sequence_risk", ["--task", "translation_with_replacement", "--replace-sample-prob", "0.5",
                       "--replace-token-prob", "0.3"]),
    ("sequence_ranking", ["--task", "translation_with_replacement", "--replace-sample-prob", "0.5",
                          "--replace-token-prob", "0.3", "--seq-include-reference"]),
    ("sequence_risk", ["--update-freq", "2", "--seq-sampling", "--seq-sampling-topk", "5"]),
], ids=["risk-replacement", "ranking-replacement-reference", "risk-update-freq-2"])
def test_composes_with_replacement_task_and_update_freq(toy_bin, baseline, tmp_path, criterion, extra):
    proc = run_fairseq("train", finetune_args(toy_bin, baseline, tmp_path / "ck", criterion, 4,
                                              "--seq-combined-loss-alpha", "0.5", *extra))
    log = proc.stdout + proc.stderr
    inner = inner_logs(log)
    assert set(inner) == {1, 2, 3, 4}, log[-3000:]
    for cols in inner.values():
        assert 0 <= cols["seq_cost"] <= 1 and cols["cand_len"] >= 1 and cols["loss"] == cols["loss"]
    if "translation_with_replacement" in extra:
        assert all("replaced" in cols for cols in inner.values()), log[-2000:]
