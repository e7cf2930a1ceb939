"""Checkpoint selection from the training log, the sweep's grid and choice, and the fine-tuning data preparer."""
import json
from pathlib import Path

import pytest

from fairseq_eb.recipe import selection, sweep

_V = ("2026-11-25 | INFO | valid | epoch {e:03d} | valid on 'valid' subset | loss {loss} | nll_loss 6.9 | bleu {bleu} "
      "| num_updates {u}")
_S = ("2026-11-25 | INFO | fairseq.checkpoint_utils | Saved checkpoint {{d}}/checkpoint_{e}_{u}.pt "
      "(epoch {e} @ {u} updates, score {bleu})")
LOG = "\n".join([
    _V.format(e=1, loss=7.5, bleu=1.2, u=80), _S.format(e=1, u=80, bleu=1.2),
    _V.format(e=2, loss=7.1, bleu=3.4, u=160), _S.format(e=2, u=160, bleu=3.4),
    _V.format(e=3, loss=7.0, bleu=3.4, u=240), _S.format(e=3, u=240, bleu=3.4),
    _V.format(e=3, loss=7.05, bleu=2.0, u=320),
]) + "\n"


def test_parse_and_best():
    text = LOG.format(d="/ck")
    vals = selection.parse_validations(text)
    assert [v.num_updates for v in vals] == [80, 160, 240, 320]
    assert vals[1].loss == 7.1 and vals[1].bleu == 3.4
    assert selection.best(vals, "loss").num_updates == 240
    assert selection.best(vals, "bleu").num_updates == 160  # the earliest of equals, as fairseq keeps it
    assert selection.parse_saved(text)[240] == "/ck/checkpoint_3_240.pt"
    # a resumed run repeats an update: its last record counts
    again = text + text.splitlines()[0].replace("loss 7.5", "loss 6.0") + "\n"
    assert selection.best(selection.parse_validations(again), "loss").num_updates == 80
    with pytest.raises(ValueError, match="--eval-bleu"):
        selection.best([selection.Validation(1, 1.0, None)], "bleu")


def test_select_copies_the_lowest_loss_checkpoint_and_cleans_up(tmp_path):
    ck = tmp_path / "checkpoints"
    ck.mkdir()
    for name in ("checkpoint_1_80.pt", "checkpoint_2_160.pt", "checkpoint_3_240.pt", "checkpoint_best.pt",
                 "checkpoint_last.pt"):
        (ck / name).write_text(name)
    log = tmp_path / "train.log"
    log.write_text(LOG.format(d=ck))
    result = selection.select(ck, log)
    assert (ck / "checkpoint_best_loss.pt").read_text() == "checkpoint_3_240.pt"
    assert sorted(p.name for p in ck.iterdir()) == ["checkpoint_best.pt", "checkpoint_best_loss.pt",
                                                     "checkpoint_last.pt"]
    assert result["loss"]["num_updates"] == 240 and result["bleu"]["num_updates"] == 160 and not result["same"]
    assert json.loads((tmp_path / "selection.json").read_text()) == result
    assert selection.select(ck, log) == result  # idempotent


def test_sweep_grid_and_choice():
    rr = sweep.grid("rr", 1000)
    assert len(rr) == 18 and len({v["variant"] for v in rr}) == 18
    warm = next(v for v in rr if v["variant"] == "vocab-pt0.2-warm")
    assert warm["args"] == ["--replace-pool", "vocab", "--replace-sample-prob", "0.5", "--replace-token-prob",
                            "0.2", "--replace-warmup-updates", "500"]
    assert [v["variant"] for v in sweep.grid("gp", 1000, ["eps0.1", "fgm-eps1.0"])] == ["eps0.1", "fgm-eps1.0"]
    assert sweep.grid("baseline", 1000, ["eps0.1"]) == [{"variant": "default", "args": []}]
    ss = {v["variant"]: v["args"] for v in sweep.grid("ss", 2400)}
    assert sorted(ss) == ["conf0.7-rand0.9", "conf0.9-rand0", "conf0.9-rand0.95", "pos-exponential", "pos-sigmoid",
                          "pt0.1-ramp-half", "pt0.1-ramp-quarter", "pt0.3-imit0.5", "pt0.3-imit1.0", "pt0.3-ramp-half",
                          "pt0.3-ramp-quarter"]
    assert ss["conf0.9-rand0.95"][-4:] == ["--replace-confidence-threshold", "0.9", "--replace-random-above", "0.95"]
    assert ss["pos-sigmoid"][-4:] == ["--replace-schedule-updates", "1200", "--replace-position-schedule", "sigmoid"]
    assert ss["pt0.1-ramp-quarter"][-6:] == ["--replace-token-prob", "0.1", "--replace-schedule", "inverse_sigmoid",
                                             "--replace-schedule-updates", "600"]
    assert ss["pt0.3-ramp-half"][1] == "model" and ss["pt0.3-ramp-half"][-1] == "1200"
    lazy = sweep.grid("gp_lazy", 2400)
    assert [(v["variant"], v["args"]) for v in lazy] == [(f"every{k}", ["--gp-interval", str(k)]) for k in (2, 4, 8)]

    def run(method, variant, scores):
        spec = type("Spec", (), {"method": method, "run_dir": Path(f"/o/runs/{method}/{variant}/seed1"),
                                 "variant_args": [variant]})()
        return spec, {"scores": {b: {"rouge-l": s} for b, s in zip((1, 2), scores)}}

    results = dict([run("rr", "a", (10, 12)), run("rr", "b", (11, 12)), run("rr", "c", (12, 11)),
                    run("gp", "x", (5, 5))])
    chosen = sweep.choose(results, [1, 2])
    assert chosen["rr"]["variant"] == "b" and chosen["rr"]["args"] == ["b"]  # 11.5 = c's 11.5: grid order wins
    assert chosen["rr"]["valid_rouge_l"] == pytest.approx(11.5) and chosen["gp"]["variant"] == "x"
    table = sweep.sweep_table(results, ["rr", "gp"], [1, 2], chosen)
    assert "| RR | `b` | 11.00 | 12.00 | 11.50 | **yes** |" in table
    # a translation configuration chooses by BLEU; "default" names the configuration's own settings
    for _, res in results.items():
        for b, sc in res["scores"].items():
            sc["bleu-cased"] = -sc["rouge-l"]
    by_bleu = sweep.choose(results, [1, 2], "bleu-cased")
    assert by_bleu["rr"]["variant"] == "a" and by_bleu["rr"]["valid_bleu-cased"] == pytest.approx(-11.0)
    assert "valid BLEU beam 1" in sweep.sweep_table(results, ["rr"], [1, 2], by_bleu, "bleu-cased")
    assert sweep.selection_metric("long") == "bleu-cased" and sweep.selection_metric("finetune") == "rouge-l"
    assert [v["variant"] for v in sweep.grid("rr", 1000, ["default", "target-pt0.1"])] == ["default", "target-pt0.1"]
    assert sweep.grid("ss", 1000, ["default"]) == [{"variant": "default", "args": []}]


def test_finetune_prep_subsets_and_pretraining_text(toy_bin, tmp_path):
    from fairseq_eb.prep import finetune

    assert finetune.seeded_subset(10, 3, 1) == finetune.seeded_subset(10, 3, 1)
    assert finetune.seeded_subset(10, 3, 1) != finetune.seeded_subset(10, 3, 2)
    assert finetune.seeded_subset(5, 9, 1) == list(range(5))
    parent = toy_bin.parent
    import sentencepiece as spm

    # the toy corpus has no SentencePiece model: give it a tiny one and its dictionary
    spm.SentencePieceTrainer.train(input=str(parent / "raw" / "train.src"), model_prefix=str(tmp_path / "spm"),
                                   vocab_size=30, minloglevel=2, hard_vocab_limit=False)
    fake = tmp_path / "parent"
    (fake / "bin").mkdir(parents=True)
    import shutil

    shutil.copytree(parent / "raw", fake / "raw")
    shutil.copy(tmp_path / "spm.model", fake / "spm.model")
    sp = spm.SentencePieceProcessor(model_file=str(fake / "spm.model"))
    pieces = [sp.id_to_piece(i) for i in range(3, sp.get_piece_size())]
    (fake / "bin" / "dict.src.txt").write_text("".join(f"{p} 1\n" for p in pieces))
    out = tmp_path / "ft"
    manifest = finetune.prepare(fake, out, train_subset=50, valid_subset=10, seed=3, pretrain_valid=20)
    assert manifest["counts"]["train"] == 50 and manifest["counts"]["valid"] == 10 and manifest["counts"]["test"] == 20
    train_src = (out / "raw" / "train.src").read_text().splitlines()
    parent_src = (parent / "raw" / "train.src").read_text().splitlines()
    assert train_src == [parent_src[i] for i in finetune.seeded_subset(len(parent_src), 50, 3)]
    assert (out / "bin" / "dict.src.txt").read_text().splitlines()[-1] == "<mask> 0"
    assert (out / "pretrain-bin" / "train.bin").exists() and (out / "pretrain-bin" / "dict.txt").exists()
    # training-split text only: both sides of the parent's training pairs, minus the held-out lines
    lines = [line for part in ("train", "valid") for line in (out / "pretrain-text" / part).read_text().splitlines()]
    assert len(lines) == 2 * len(parent_src) and manifest["counts"]["pretrain_valid_lines"] == 20
    mtime = (out / "bin" / "train.src-tgt.src.bin").stat().st_mtime_ns
    finetune.prepare(fake, out, train_subset=50, valid_subset=10, seed=3, pretrain_valid=20)  # up to date
    assert (out / "bin" / "train.src-tgt.src.bin").stat().st_mtime_ns == mtime
    with pytest.raises(finetune.PrepError, match="must be >= 1"):
        finetune.prepare(fake, tmp_path / "x", train_subset=0, valid_subset=10, seed=3)


def test_select_without_eval_bleu_uses_fairseqs_best(tmp_path):
    ck = tmp_path / "checkpoints"
    ck.mkdir()
    (ck / "checkpoint_best.pt").write_text("best")
    log = tmp_path / "train.log"
    log.write_text("x | valid | epoch 001 | valid on 'valid' subset | loss 7.5 | nll_loss 6.9 | num_updates 80\n")
    result = selection.select(ck, log)
    assert result["same"] and result["bleu"] is None and result["loss"]["num_updates"] == 80
    assert (ck / "checkpoint_best_loss.pt").read_text() == "best"


def test_sweep_bad_options_fail_early(tmp_path, capsys):
    (tmp_path / "bin").mkdir()
    for needed in ("dict.src.txt", "train.src-tgt.src.bin", "valid.src-tgt.src.bin", "test.src-tgt.src.bin"):
        (tmp_path / "bin" / needed).write_text("")
    base = ["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--config", "tiny"]
    assert sweep.main(base + ["--variants", "nope"]) == 2
    assert "--variants: unknown ['nope']" in capsys.readouterr().err
    assert sweep.main(base + ["--methods", "gp", "--variants", "target-pt0.1"]) == 2
    assert "--variants selects no variant of ['gp']" in capsys.readouterr().err
    assert sweep.main(base + ["--chosen", str(tmp_path / "x.json")]) == 2
    assert "--chosen" in capsys.readouterr().err
