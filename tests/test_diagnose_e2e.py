"""fairseq-eb-diagnose on a tiny model trained by fairseq here (translation_with_replacement, --user-dir).

Checked against fairseq itself: the r = 0 NLL equals fairseq's cross-entropy criterion on the same
batches; the corrupted decoder inputs hold exactly fairseq's argmax tokens at the selected positions.
"""
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from fairseq_eb.diagnose import diagnose_batches, headline, loader, run_diagnosis
from fairseq_eb.diagnose.cli import main
from tests.fairseq_tools import TINY_MODEL, TRAIN_COMMON, USER_DIR, run_fairseq

pytestmark = pytest.mark.slow  # end-to-end trainings (CONTRIBUTING.md: the fast loop)


@pytest.fixture(scope="module")
def checkpoint(toy_bin, tmp_path_factory):
    save = tmp_path_factory.mktemp("diag") / "ck"
    run_fairseq("train", [toy_bin, "--user-dir", USER_DIR, "--task", "translation_with_replacement",
                          *TINY_MODEL, *TRAIN_COMMON, "--save-dir", save, "--max-update", "40"])
    return save / "checkpoint_best.pt"


@pytest.fixture(scope="module")
def loaded(checkpoint, toy_bin):
    return loader.load(str(checkpoint), str(toy_bin), "valid", cpu=True)


def batches(loaded, max_sentences=None, max_tokens=150):
    n, itr = loader.batches(loaded, max_sentences=max_sentences, max_tokens=max_tokens)
    out = list(itr)
    assert len(out) == n
    return out


def greedy(loaded):
    return lambda beam: loaded.task.build_generator([loaded.model], argparse_ns(beam))


def argparse_ns(beam):
    from argparse import Namespace

    return Namespace(beam=beam)


def test_rate_zero_equals_fairseqs_teacher_forced_nll(loaded):
    from fairseq.criterions.cross_entropy import CrossEntropyCriterion

    data = batches(loaded)
    assert len(data) > 1  # several batches, so the sums across batches are exercised
    crit = CrossEntropyCriterion(loaded.task, sentence_avg=False)
    loss, ntokens = 0.0, 0
    with torch.no_grad():
        for sample in data:
            batch_loss, _, log = crit(loaded.model, sample)
            loss, ntokens = loss + float(batch_loss), ntokens + log["ntokens"]
    out = diagnose_batches(loaded.model, loaded.task.target_dictionary, data, greedy(loaded),
                           rates=[0.0, 0.3], beams=[1])
    tf = out["teacher_forced"]
    assert tf["ntokens"] == ntokens
    assert math.isclose(tf["nll"], loss / ntokens, rel_tol=1e-6), (tf["nll"], loss / ntokens)
    for kind in ("own", "random"):
        zero = out["recovery"][kind][0]
        assert zero["rate"] == 0.0 and zero["changed_share"] == 0.0 and zero["next"]["n"] == 0
        assert math.isclose(zero["all"]["nll"], loss / ntokens, rel_tol=1e-6)  # nothing changed at r = 0
        assert zero["all"]["delta_nll"] == 0.0


def test_corrupted_inputs_hold_the_models_argmax_at_selected_positions(loaded):
    data = batches(loaded)
    seen = []

    def hook(kind, rate, sample, selected, corrupted, predictions):
        seen.append((kind, rate, sample, selected.clone(), corrupted.clone()))

    out = diagnose_batches(loaded.model, loaded.task.target_dictionary, data, greedy(loaded),
                           rates=[0.0, 0.2, 0.5], beams=[1], inputs_hook=hook)
    pad = loaded.task.target_dictionary.pad()
    checked = 0
    by_rate = {}
    for kind, rate, sample, selected, corrupted in seen:
        prev = sample["net_input"]["prev_output_tokens"]
        assert not selected[:, 0].any() and not selected[prev.eq(pad)].any()  # never BOS (right-padded) nor PAD
        if kind != "own":
            continue
        with torch.no_grad():  # fairseq's own forward, independently of the tool
            argmax = loaded.model(**sample["net_input"])[0].argmax(-1)
        rows, cols = selected.nonzero(as_tuple=True)
        assert torch.equal(corrupted[rows, cols], argmax[rows, cols - 1])
        assert torch.equal(corrupted[~selected], prev[~selected])
        checked += len(rows)
        by_rate.setdefault(rate, []).append(selected)
    assert checked > 20
    for small, large in zip(by_rate[0.2], by_rate[0.5]):  # nested position sets across rates
        assert not (small & ~large).any()
    own = {r["rate"]: r for r in out["recovery"]["own"]}
    assert 0.35 < own[0.5]["selected_share"] < 0.65
    selected = sum(int(sel.sum()) for k, r, _, sel, _ in seen if (k, r) == ("own", 0.5))
    changed = sum(int(cor.ne(smp["net_input"]["prev_output_tokens"]).sum())
                  for k, r, smp, _, cor in seen if (k, r) == ("own", 0.5))
    assert own[0.5]["changed_share_of_selected"] == changed / selected
    assert own[0.5]["next"]["n"] == changed  # measured right after every changed input, nowhere else


def test_same_seed_same_result_other_seed_differs(loaded):
    data = batches(loaded, max_sentences=12)

    def run(seed):
        return diagnose_batches(loaded.model, loaded.task.target_dictionary, data, greedy(loaded),
                                rates=[0.3], beams=[1], seed=seed)["recovery"]

    first, again, other = run(1), run(1), run(2)
    assert first == again
    assert first != other


def test_run_diagnosis_bounded_and_shares_sum_to_one(checkpoint, toy_bin):
    result = run_diagnosis(str(toy_bin), str(checkpoint), beams=[1, 3], corrupt_rates=[0, 0.3],
                           max_sentences=15, cpu=True)
    assert result["n_sentences"] == 15 and result["n_sentences_in_split"] == 40
    assert [b["beam"] for b in result["beams"]] == [1, 3]
    for row in result["beams"]:
        for kind in ("raw", "normalized"):
            sm = row["search_vs_model"][kind]
            assert sm["n"] == 15
            assert math.isclose(sm["search_error"] + sm["model_error"] + sm["tie"], 1.0)
        assert 0.0 <= row["repeat_share"] <= 1.0 and 0.0 <= row["empty_share"] <= 1.0
        assert set(row["scores"]) >= {"rouge-1", "rouge-2", "rouge-l", "bleu"}
    # references: the split's targets, first 15 lines (the toy targets are plain words)
    refs = (toy_bin.parent / "raw" / "valid.tgt").read_text().splitlines()[:15]
    from fairseq_eb.diagnose import repeated_ngram_share

    assert result["references"]["repeat_share"] == repeated_ngram_share(refs, 2)
    json.dumps(result)  # JSON-ready
    head = headline(result, 0.3)
    own = next(r for r in result["recovery"]["own"] if r["rate"] == 0.3)
    assert head["delta_nll_own"] == own["next"]["delta_nll"] == own["next"]["nll"] - own["next"]["nll_clean"]
    assert head["repeat_share"][3] == result["beams"][1]["repeat_share"] and set(head["model_error"]) == {1, 3}
    # the position-wise jump partitions the same steps
    assert sum(b["n"] for b in own["next_by_position"]) == own["next"]["n"] > 0
    with pytest.raises(KeyError):
        headline(result, 0.2)


def test_cli_writes_json_markdown_png(checkpoint, toy_bin, tmp_path):
    refs = tmp_path / "refs.txt"
    refs.write_text((toy_bin.parent / "raw" / "valid.tgt").read_text())
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "fairseq_eb.diagnose", str(toy_bin), "--path", str(checkpoint), "--out", str(out),
         "--beams", "1", "2", "--corrupt-rates", "0", "0.3", "--max-sentences", "8", "--cpu",
         "--ref-file", str(refs), "--position-bin", "2"],
        capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| beam | ROUGE-L |" in proc.stdout and "batch 1/" in proc.stderr
    assert "**Error recovery along the output** (rate 0.3)" in proc.stdout and "| 2–3 |" in proc.stdout
    result = json.loads((out / "diagnose.json").read_text())
    assert result["n_sentences"] == 8 and result["options"]["ref_file"] == str(refs)
    assert (out / "diagnose.md").read_text() == proc.stdout
    assert (out / "diagnose.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- bad input: exit 2, one line naming the option ---------------------------------------------------

def error_of(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("fairseq-eb-diagnose: error: ")
    return err[-1]


@pytest.mark.parametrize("extra,message", [
    (["--beams", "1", "0"], "--beams must be integers >= 1, got [1, 0]"),
    (["--corrupt-rates", "0", "1.5"], "--corrupt-rates must be numbers in [0, 1], got [0.0, 1.5]"),
    (["--max-sentences", "0"], "--max-sentences must be an integer >= 1, got 0"),
    (["--position-bin", "0"], "--position-bin must be an integer >= 1, got 0"),
    (["--subset", "nosuch"], "--subset nosuch: no such split in"),
])
def test_bad_options(checkpoint, toy_bin, tmp_path, capsys, extra, message):
    line = error_of([str(toy_bin), "--path", str(checkpoint), "--out", str(tmp_path), "--cpu", *extra], capsys)
    assert message in line


def test_bad_checkpoints(checkpoint, toy_bin, tmp_path, capsys):
    assert "no such checkpoint file" in error_of([str(toy_bin), "--path", str(tmp_path / "none.pt"),
                                                  "--out", str(tmp_path)], capsys)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert "cannot load it as a fairseq checkpoint" in error_of([str(toy_bin), "--path", str(junk),
                                                                 "--out", str(tmp_path)], capsys)
    short = tmp_path / "short.txt"
    short.write_text("one line\n")
    assert "--ref-file" in error_of([str(toy_bin), "--path", str(checkpoint), "--out", str(tmp_path), "--cpu",
                                     "--ref-file", str(short)], capsys)


def test_language_model_checkpoint_is_refused(toy_bin, tmp_path, capsys):
    """A checkpoint that is not seq2seq (a fairseq transformer_lm trained here on the toy targets)."""
    lm = tmp_path / "lm"
    lm.mkdir()
    os.symlink(toy_bin / "dict.tgt.txt", lm / "dict.txt")
    for split in ("train", "valid"):
        for ext in ("bin", "idx"):
            os.symlink(toy_bin / f"{split}.src-tgt.tgt.{ext}", lm / f"{split}.{ext}")
    run_fairseq("train", [lm, "--task", "language_modeling", "--arch", "transformer_lm", "--decoder-layers", "1",
                          "--decoder-embed-dim", "16", "--decoder-ffn-embed-dim", "32",
                          "--decoder-attention-heads", "2", "--tokens-per-sample", "16", "--optimizer", "adam",
                          "--lr", "1e-3", "--max-tokens", "200", "--max-update", "1", "--cpu",
                          "--save-dir", tmp_path / "ck", "--no-epoch-checkpoints", "--num-workers", "0"])
    line = error_of([str(lm), "--path", str(tmp_path / "ck" / "checkpoint_last.pt"), "--out", str(tmp_path),
                     "--cpu"], capsys)
    assert "TransformerLanguageModel) is not an encoder-decoder (seq2seq) model" in line


def test_beams_error_from_the_command_line_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fairseq_eb.diagnose", str(tmp_path), "--path", "x.pt",
                           "--out", str(tmp_path), "--beams", "0"], capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "fairseq-eb-diagnose: error: --beams must be integers >= 1, got [0]"
