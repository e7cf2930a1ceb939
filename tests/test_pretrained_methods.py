"""The methods on pretrained-style models: exact GP against an independent double backprop on BART, lazy GP,
fairseq-eb-diagnose and sequence_ranking, on tiny ``bart_base``/``mbart_base`` models (docs/pretrained.md).

The data, the tiny architectures (``--layernorm-embedding --share-all-embeddings``, learned positions) and the
tasks are those of tests/test_pretrained_tasks.py.
"""
import contextlib
import json
import math
import re
from typing import Dict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tests.test_pretrained_tasks as pretrained
from tests.fairseq_tools import USER_DIR, keep_float64_softmax, run_fairseq
from tests.test_pretrained_tasks import BART, MULTI, TAGS, TASK_ARGS, TRAIN_COMMON, tiny

data = pretrained.data  # the binarised two-pair toy (a module-scoped fixture)

LS = 0.1


# ---------------------------------------------------------------- 1. exact GP vs an independent double backprop


@pytest.fixture
def float64_model(monkeypatch):
    """Softmaxes and BART's GELU (fairseq takes it in float32 too) stay in float64 for models built after this, so
    the criterion and the reference can be compared to ~1e-10."""
    import fairseq.modules

    keep_float64_softmax(monkeypatch)
    monkeypatch.setattr(fairseq.modules, "gelu", F.gelu)


class Given(nn.Module):
    """Stands in for an ``embed_tokens``: returns a tensor made by the test, for exactly the expected tokens."""

    def __init__(self, tokens: torch.Tensor, value: torch.Tensor) -> None:
        super().__init__()
        self.tokens, self.value, self.calls = tokens, value, 0

    def forward(self, tokens):
        assert torch.equal(tokens, self.tokens)
        self.calls += 1
        return self.value


@contextlib.contextmanager
def embeddings_given(model, e_src, e_dec, sample):
    """The model's own forward, with the encoder's and the decoder's token lookups replaced by ``e_src``/``e_dec``."""
    net = sample["net_input"]
    original = model.encoder.embed_tokens, model.decoder.embed_tokens
    assert original[0] is original[1]  # --share-all-embeddings: one module on both sides
    enc, dec = Given(net["src_tokens"], e_src), Given(net["prev_output_tokens"], e_dec)
    model.encoder.embed_tokens, model.decoder.embed_tokens = enc, dec
    try:
        yield
    finally:
        model.encoder.embed_tokens, model.decoder.embed_tokens = original
    assert enc.calls == 1 and dec.calls == 1


def math_attention():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)  # twice differentiable


def smoothed_ce(logits: torch.Tensor, target: torch.Tensor, pad: int) -> torch.Tensor:
    """Summed cross-entropy against the label-smoothed target distribution q: 1 - a on the gold token, a / (V - 1)
    on every other one (fairseq's parametrisation of --label-smoothing a), over the non-pad target positions."""
    lprobs = torch.log_softmax(logits, dim=-1)
    q = torch.full_like(lprobs, LS / (lprobs.size(-1) - 1))
    q.scatter_(-1, target.unsqueeze(-1), 1.0 - LS)
    return -(q * lprobs).sum(-1)[target.ne(pad)].sum()


def grads(model, loss) -> Dict[str, torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def bart_with_gp(data, name, *extra):
    task, sample = pretrained.setup(data, name, ["--criterion", "label_smoothed_cross_entropy_with_gp",
                                                 "--label-smoothing", str(LS), "--dropout", "0", *extra])
    args = task.args if hasattr(task, "args") else task.cfg
    torch.manual_seed(0)
    model = task.build_model(args).double()
    model.train()  # the penalty is training-time only; no dropout is on, so the two passes see the same model
    return task, sample, model, task.build_criterion(args)


@pytest.mark.parametrize("name,over,fused", [(BART, "lookups", True), (BART, "lookups", False), (BART, "table", False),
                                             (MULTI, "lookups", True)])
def test_exact_penalty_on_bart_matches_independent_double_backprop(data, float64_model, name, over, fused):
    eps = 0.7
    task, sample, model, crit = bart_with_gp(data, name, "--gp-method", "exact", "--gp-over", over,
                                             "--gp-epsilon", str(eps))
    assert type(model).__name__ == "BARTModel" and model.encoder.layernorm_embedding is not None
    assert type(model.encoder.embed_positions).__name__ == "LearnedPositionalEmbedding"
    table = model.encoder.embed_tokens.weight
    assert table is model.decoder.embed_tokens.weight is model.decoder.output_projection.weight
    pad, n = task.target_dictionary.pad(), sample["ntokens"]
    if over == "lookups":
        assert crit._plain_output_layer(model)  # BART's head qualifies for the fused output-layer gradient
    crit.fuse_output_layer = fused
    loss, sample_size, log = crit(model, sample)
    assert sample_size == n
    got = grads(model, loss)

    # Independent: the summed loss L written out from the model's logits, g = d(L/N)/d(embeddings) with
    # create_graph, objective N * (L/N + 0.5 * eps * ||g||^2) (docs/method.md 3.1-3.3), one backward.
    net = sample["net_input"]
    with math_attention():
        if over == "lookups":  # one row per source token and per decoder-input token, before scale/positions
            e_src = F.embedding(net["src_tokens"], table, padding_idx=pad)
            e_dec = F.embedding(net["prev_output_tokens"], table, padding_idx=pad)
            with embeddings_given(model, e_src, e_dec, sample):
                logits = model(**net)[0]
            wrt = [e_src, e_dec]
        else:  # the shared table itself: encoder and decoder lookups and the output projection
            logits = model(**net)[0]
            wrt = [table]
        summed = smoothed_ce(logits, sample["target"], pad)
        g = torch.autograd.grad(summed / n, wrt, create_graph=True)
        norm2 = sum(x.pow(2).sum() for x in g)
        expected = n * (summed / n + 0.5 * eps * norm2)
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(log["loss"], expected.detach(), rtol=1e-10, atol=0)
    torch.testing.assert_close(log["gp"] / n, norm2.detach(), rtol=1e-8, atol=0)
    want = grads(model, expected)
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-7, atol=1e-10, msg=lambda m: f"{key}: {m}")

    # the penalty matters: without it the gradients are visibly different, so the comparison above can fail
    plain = grads(model, smoothed_ce(model(**net)[0], sample["target"], pad))
    assert norm2 > 1e-2
    assert max((want[k] - plain[k]).abs().max().item() for k in want) > 1e-2 * max(
        plain[k].abs().max().item() for k in plain)


# ---------------------------------------------------------------- 2. lazy GP through fairseq-train

LAZY = {(BART, "bart_base"): "exact", (MULTI, "mbart_base"): "fgm"}  # task x architecture -> --gp-method


@pytest.fixture(scope="module")
def lazy_runs(data, tmp_path_factory):
    """fairseq-train, 4 updates with --gp-interval 2, per (task, architecture): its log and save directory.
    The checkpoints are also what fairseq-eb-diagnose is run on below."""
    runs = {}
    for (name, arch), method in LAZY.items():
        save = tmp_path_factory.mktemp("lazy")
        proc = run_fairseq("train", [data, "--user-dir", USER_DIR, *TASK_ARGS[name], *tiny(arch), *TRAIN_COMMON,
                                     "--criterion", "label_smoothed_cross_entropy_with_gp", "--label-smoothing", "0.1",
                                     "--gp-method", method, "--gp-interval", "2", "--max-update", "4",
                                     "--save-dir", save])
        runs[name, arch] = (proc.stdout + proc.stderr, save)
    return runs


def logged(line: str, key: str):
    """A column of a fairseq log line (``key=value`` or ``| key value``): float, None when absent or None."""
    found = re.search(rf"(?:\b{key}=|\| {key} )([^,| ]+)", line)
    return None if found is None or found.group(1) == "None" else float(found.group(1))


@pytest.mark.slow
@pytest.mark.parametrize("name,arch", list(LAZY))
def test_lazy_penalty_trains_pretrained_models(lazy_runs, name, arch):
    log, save = lazy_runs[name, arch]
    inner = {int(logged(line, "num_updates")): line for line in re.findall(r"\| train_inner \|.*", log)}
    assert sorted(inner) == [1, 2, 3, 4]
    # fairseq logs update u (update_num u, penalised when u % 2 == 0) on the line num_updates = u + 1
    for update, line in inner.items():
        gp = logged(line, "gp")
        if update % 2 == 1:
            assert gp is not None and math.isfinite(gp) and gp > 0, line
        else:
            assert gp is None, line  # no gp value on an unpenalised update (docs/schedules.md)
        for key in ("loss", "nll_loss", "gnorm"):
            assert math.isfinite(logged(line, key)), line
    epoch_lines = re.findall(r"\| (?:train|valid) \|.*", log)
    assert epoch_lines and not any(re.search(r"\b(nan|inf)\b", line) for line in epoch_lines)
    assert (save / "checkpoint_last.pt").is_file()


# ---------------------------------------------------------------- 3. fairseq-eb-diagnose on those checkpoints

DIAGNOSED = {BART: (BART, "bart_base"), MULTI: (MULTI, "mbart_base")}


def numbers(tree):
    """Every number in a JSON-like tree."""
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in numbers(v)]
    if isinstance(tree, list):
        return [x for v in tree for x in numbers(v)]
    return [tree] if isinstance(tree, (int, float)) and not isinstance(tree, bool) else []


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DIAGNOSED))
def test_diagnose_on_pretrained_checkpoint_keeps_language_tags_out(data, lazy_runs, name, tmp_path, monkeypatch,
                                                                   capsys):
    from fairseq.sequence_generator import SequenceGenerator

    from fairseq_eb.diagnose import runner
    from fairseq_eb.diagnose.cli import main

    inputs, decoded, texts, dictionary = [], [], {}, {}
    real_batches, real_generate, real_curve = runner.diagnose_batches, SequenceGenerator.generate, runner.beam_curve

    def batches(model, tgt_dict, *args, **kwargs):
        dictionary["d"] = tgt_dict
        return real_batches(model, tgt_dict, *args, **kwargs, inputs_hook=lambda *seen: inputs.append(seen))

    def generate(self, models, sample, **kwargs):
        hypos = real_generate(self, models, sample, **kwargs)
        decoded.append((self.beam_size, self.eos, sample, [h[0] for h in hypos]))
        return hypos

    def curve(sentences, beams, refs, *args, **kwargs):
        texts.update(sentences=sentences, refs=refs)
        return real_curve(sentences, beams, refs, *args, **kwargs)

    monkeypatch.setattr(runner, "diagnose_batches", batches)
    monkeypatch.setattr(SequenceGenerator, "generate", generate)
    monkeypatch.setattr(runner, "beam_curve", curve)
    _, save = lazy_runs[DIAGNOSED[name]]
    out = tmp_path / "out"
    main([str(data), "--path", str(save / "checkpoint_last.pt"), "--out", str(out), "--beams", "1", "2",
          "--corrupt-rates", "0", "0.5", "--cpu", "--no-progress"])
    assert "| beam | ROUGE-L |" in capsys.readouterr().out
    result = json.loads((out / "diagnose.json").read_text())

    targets = ["ro_RO"] if name == BART else ["ro_RO", "de_DE"]  # MULTI's valid split holds both pairs
    assert result["n_sentences"] == 8 * len(targets)
    assert all(math.isfinite(x) for x in numbers(result))
    assert result["teacher_forced"]["ntokens"] > 0 and 0 <= result["teacher_forced"]["accuracy"] <= 1

    d = dictionary["d"]
    structure = torch.tensor(sorted({d.index(t) for t in TAGS[name]} | {d.bos(), d.eos(), d.pad()}))
    # corrupted decoder inputs: a tag (or EOS) is never selected, replaced, nor put in place of a word
    changed_words = {"own": 0, "random": 0}
    for kind, rate, sample, selected, corrupted, _ in inputs:
        prev = sample["net_input"]["prev_output_tokens"]
        held = torch.isin(prev, structure)
        if name == MULTI:
            assert torch.isin(prev[:, 1], structure).all()  # </s> __xx__ y1 ..: the tag is inside the span
        assert not selected[held].any()
        assert torch.equal(corrupted[held], prev[held])
        changed = corrupted.ne(prev)
        assert not torch.isin(corrupted[changed], structure).any()
        changed_words[kind] += int(changed.sum())
    assert changed_words["own"] > 0 and changed_words["random"] > 0  # the checks above saw replacements

    # decoding: with the target-language tag as the task does it (mBART: the tag is the generator's EOS;
    # multilingual: each sentence's own tag forced as prefix), and scored with the decoder input it was made with
    tag_eos = d.index("[ro_RO]") if name == BART else d.eos()
    scores = {1: [], 2: []}
    for beam, eos, sample, best in decoded:
        assert eos == tag_eos
        for i, hypo in enumerate(best):
            if name == BART:
                assert hypo["tokens"][-1] == tag_eos
            else:
                assert hypo["tokens"][0] == sample["target"][i, 0] and torch.isin(hypo["tokens"][:1], structure).all()
            scores[beam].append(float(hypo["positional_scores"].sum()))
    if name == MULTI:
        assert {d[int(s["target"][i, 0])] for _, _, s, best in decoded for i in range(len(best))} == {
            "__ro_RO__", "__de_DE__"}
    for row in result["beams"]:
        assert len(scores[row["beam"]]) == result["n_sentences"]
        assert row["search_vs_model"]["raw"]["n"] == result["n_sentences"]
        assert row["search_vs_model"]["mean_logprob_hyp"] == pytest.approx(
            sum(scores[row["beam"]]) / len(scores[row["beam"]]), rel=1e-4, abs=1e-4)

    # texts scored: references are the data's target lines, tags and EOS stripped; hypotheses carry none either
    raw = data.parent / "raw"
    lines = [line for t in targets for line in (raw / f"valid.en_XX-{t}.{t}").read_text().splitlines()]
    assert sorted(texts["refs"].values()) == sorted(lines)
    for sentence in texts["sentences"].values():
        assert sentence["ref"] in lines
        for beam, hyp in sentence["hyps"].items():
            assert not set(hyp.split()) & set(TAGS[name] + ["<s>", "</s>", "<pad>"])
            assert sentence["hyp_tokens"][beam] == len(hyp.split())


# ---------------------------------------------------------------- 4. sequence_ranking on BART


@pytest.mark.slow
def test_sequence_ranking_trains_on_bart(data, tmp_path):
    train = run_fairseq("train", [data, "--user-dir", USER_DIR, *TASK_ARGS[BART], *tiny("bart_base"), *TRAIN_COMMON,
                                  "--criterion", "sequence_ranking", "--seq-beam", "2", "--seq-max-len-b", "10",
                                  "--save-dir", tmp_path])
    lines = re.findall(r"\| train_inner \|.*", train.stdout + train.stderr)
    assert len(lines) == 3
    for line in lines:
        seq_loss, seq_cost, cand_len = (logged(line, k) for k in ("seq_loss", "seq_cost", "cand_len"))
        assert seq_loss is not None and math.isfinite(seq_loss) and seq_loss >= 0, line  # a hinge: >= 0
        assert seq_cost is not None and 0 <= seq_cost <= 1, line  # 1 - ROUGE-L / 100
        assert cand_len is not None and 0 < cand_len <= 11, line  # at most --seq-max-len-b tokens + EOS
        assert math.isfinite(logged(line, "loss")), line
