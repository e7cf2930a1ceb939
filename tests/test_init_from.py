"""``recipe.table`` / ``recipe.sweep`` ``--init-from CHECKPOINT`` (fairseq_eb/recipe/init_from.py).

Tiny checkpoints made here with the real ``fairseq-train``: a ``bart_base``-style model (``--layernorm-embedding``,
shared embeddings, learned positions) trained on the toy corpus, and a ``transformer`` pre-trained with fairseq's
``denoising`` task on data made by ``prep.finetune`` (the recipe's own pre-training, whose dictionary lists
``<mask>``). Checked: the options read from a checkpoint rebuild its architecture (the recipe run's model loads the
checkpoint's weights strictly), the recipe fine-tunes from it end to end without its own pre-training, dictionary
mismatches and unreadable checkpoints are one line and exit 2.
"""
import json
import shutil
from pathlib import Path
from typing import List

import pytest
import torch

from fairseq_eb.recipe import init_from
from fairseq_eb.recipe.configs import _transformer, get_config
from fairseq_eb.recipe.table import build_parser, main, make_specs, pretrain_spec, validate
from tests.fairseq_tools import TRAIN_COMMON, USER_DIR, run_fairseq

TINY_BART = ["--arch", "bart_base", "--encoder-layers", "1", "--decoder-layers", "1",
             "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
             "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
             "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
             "--layernorm-embedding", "--share-all-embeddings", "--max-source-positions", "64",
             "--max-target-positions", "64"]


@pytest.fixture(scope="module")
def bart_ckpt(toy_bin, tmp_path_factory) -> Path:
    """A 1-layer, 32-dim BART trained for 1 update on the toy corpus (its own directory, no dict.txt)."""
    save = tmp_path_factory.mktemp("bart")
    run_fairseq("train", [toy_bin, "--user-dir", USER_DIR, "--task", "translation", *TINY_BART, *TRAIN_COMMON,
                          "--criterion", "label_smoothed_cross_entropy", "--max-update", "1", "--dropout", "0.3",
                          "--save-dir", save])
    return save / "checkpoint_best.pt"


def recipe_args(data: Path, out: Path, *extra: str) -> List[str]:
    return ["--data", str(data), "--out", str(out), "--config", "tiny", "--methods", "baseline", "--seeds", "1",
            "--beams", "1", "--device", "cpu", "--no-floor", *extra]


def parsed(argv: List[str]):
    return validate(build_parser().parse_args(argv))


def copy_data(toy_bin: Path, to: Path) -> Path:
    shutil.copytree(toy_bin, to / "bin")
    return to


def build_model(data_bin: Path, train_options: List[str]) -> torch.nn.Module:
    """The model fairseq-train builds from these options, on this data (nothing trains)."""
    from fairseq import options, tasks

    args = options.parse_args_and_arch(options.get_training_parser(), [str(data_bin), "--user-dir", USER_DIR,
                                                                       *train_options])
    return tasks.setup_task(args).build_model(args)


def shapes(weights) -> dict:
    return {k: tuple(v.shape) for k, v in weights.items()}


def refused(argv: List[str], capsys) -> str:
    """Run the table recipe; assert exit 2 and one line on stderr; return it."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --init-from "), err
    return err[0]


# ---------------------------------------------------------------- options (pure)

def test_model_options_rebuild_the_recorded_values():
    values = {"encoder_embed_dim": 32, "decoder_embed_dim": 48, "encoder_layers": 1, "layernorm_embedding": True,
              "share_all_embeddings": True, "dropout": 0.3, "attention_dropout": 0.2, "activation_fn": "relu"}
    options = init_from.model_options("bart_base", values)
    assert options[:2] == ["--arch", "bart_base"]
    built = init_from.resolve("bart_base", options[2:])
    for key in ("encoder_embed_dim", "decoder_embed_dim", "encoder_layers", "layernorm_embedding", "activation_fn"):
        assert built[key] == values[key], key
    assert "--layernorm-embedding" not in options  # bart_base's own default: not repeated
    assert "--dropout" not in options and "--attention-dropout" not in options  # the configuration's
    assert init_from.model_options("transformer", {"share_all_embeddings": True, "encoder_layers": 6}) == [
        "--arch", "transformer", "--share-all-embeddings"]
    with pytest.raises(ValueError, match="layernorm_embedding=False, which architecture bart_base cannot be told"):
        init_from.model_options("bart_base", {"layernorm_embedding": False})
    with pytest.raises(ValueError, match="'no_such_arch' is not registered"):
        init_from.model_options("no_such_arch", {})


def test_model_config_reads_old_and_new_checkpoints():
    from argparse import Namespace

    from omegaconf import OmegaConf

    old = {"args": Namespace(arch="bart_base", encoder_layers=2, lr=[0.1]), "model": {}}  # bart.base's layout
    assert init_from.model_config(old) == ("bart_base", {"arch": "bart_base", "encoder_layers": 2, "lr": [0.1]})
    new = {"cfg": OmegaConf.create({"model": {"_name": "transformer_lm", "decoder": {"embed_dim": 8}}}), "model": {}}
    assert init_from.model_config(new) == ("transformer_lm", {"_name": "transformer_lm", "decoder_embed_dim": 8})
    with pytest.raises(ValueError, match="--init-from x.pt: holds no model configuration"):
        init_from.model_config({"cfg": None, "model": {}}, Path("x.pt"))


def test_strip_model_options_keeps_the_training_options():
    rest = ["--optimizer", "adam", "--lr", "0.001", "--dropout", "0.1", "--attention-dropout", "0.1",
            "--eval-bleu-args", '{"beam": 1}', "--max-tokens", "500", "--patience", "-1"]
    assert init_from.strip_model_options(_transformer(2, 128, 512, 4) + rest) == rest
    assert init_from.strip_model_options(rest[:4] + ["--arch=transformer", "--encoder-layers=3"] + rest[4:]) == rest
    tiny = get_config("tiny").train_args
    stripped = init_from.strip_model_options(tiny)
    assert len(stripped) == len(tiny) - len(_transformer(1, 32, 64, 2)) and "--dropout" in stripped


# ---------------------------------------------------------------- a bart_base checkpoint

@pytest.mark.slow
def test_options_read_from_a_bart_checkpoint_build_its_model(bart_ckpt, toy_bin, tmp_path):
    args = parsed(recipe_args(toy_bin.parent, tmp_path / "out", "--init-from", str(bart_ckpt)))
    assert args.init.arch == "bart_base"
    assert args.init.model_options[:2] == ("--arch", "bart_base")
    assert {"--encoder-layers", "--encoder-embed-dim", "--max-source-positions"} <= set(args.init.model_options)
    assert "--dropout" not in args.init.model_options  # the checkpoint's 0.3: the configuration decides
    (spec,) = make_specs(args)
    train = spec.train_options()
    assert "transformer" not in train and "--encoder-normalize-before" not in train  # config `tiny`'s model: gone
    assert train[train.index("--dropout") + 1] == "0.1" and train[train.index("--lr") + 1] == "0.001"
    assert spec.init_checkpoint == bart_ckpt and spec.settings()["init"]["init_from_sha256"] == args.init.sha256
    # the run's model, as fairseq-train builds it from these options, loads the checkpoint's weights strictly
    model = build_model(toy_bin, train)
    assert model.cfg.layernorm_embedding and model.cfg.share_all_embeddings and model.cfg.encoder_learned_pos
    weights = torch.load(bart_ckpt, map_location="cpu", weights_only=False)["model"]
    assert shapes(model.state_dict()) == shapes(weights)
    model.load_state_dict(weights, strict=True)


@pytest.mark.slow
def test_recipe_fine_tunes_from_the_checkpoint_end_to_end(bart_ckpt, toy_bin, tmp_path, capsys):
    data, out = toy_bin.parent, tmp_path / "out"
    assert main(recipe_args(data, out, "--init-from", str(bart_ckpt))) == 0
    console = capsys.readouterr().out
    assert f"every run fine-tunes from --init-from {bart_ckpt} (--arch bart_base" in console
    run = out / "runs" / "baseline" / "default" / "seed1"
    log = (run / "train.log").read_text()
    assert f"--finetune-from-model {bart_ckpt}" in log.splitlines()[0]
    assert f"loading pretrained model from {bart_ckpt}" in log and f"Loaded checkpoint {bart_ckpt}" in log
    trained = torch.load(run / "checkpoints" / "checkpoint_best.pt", map_location="cpu", weights_only=False)
    start = torch.load(bart_ckpt, map_location="cpu", weights_only=False)
    model_cfg = trained["cfg"]["model"]
    assert model_cfg.arch == "bart_base" and model_cfg.layernorm_embedding and model_cfg.share_all_embeddings
    assert model_cfg.dropout == 0.1  # the configuration's regularisation
    assert {k: v.shape for k, v in trained["model"].items()} == {k: v.shape for k, v in start["model"].items()}
    results = json.loads((out / "results.json").read_text())
    assert results["init_from"]["arch"] == "bart_base" and results["pretrain"] is None
    assert results["identity"]["init_from"] == init_from.sha256_file(bart_ckpt)
    assert "fine-tuned from `--init-from" in (out / "table.md").read_text()

    # another checkpoint (same architecture, other weights) is another experiment and other runs
    other = tmp_path / "other" / "model.pt"
    other.parent.mkdir()
    start["model"]["encoder.layernorm_embedding.bias"] += 1.0
    torch.save(start, other)
    assert main(recipe_args(data, out, "--init-from", str(other))) == 2
    assert "holds results of another experiment (init_from differ)" in capsys.readouterr().err
    (out / "results.json").unlink()
    assert main(recipe_args(data, out, "--init-from", str(other))) == 2
    assert "other settings" in capsys.readouterr().err


@pytest.mark.slow
def test_a_pretraining_configuration_skips_its_pretraining(bart_ckpt, toy_bin, tmp_path):
    """`finetune` pre-trains first; with --init-from it does not (nor needs DATA/pretrain-bin)."""
    argv = recipe_args(toy_bin.parent, tmp_path / "out")
    argv[argv.index("tiny")] = "finetune"
    with pytest.raises(FileNotFoundError, match="missing pretrain-bin"):
        pretrain_spec(parsed(argv))  # without --init-from: its own pre-training, whose data is missing here
    args = parsed(argv + ["--init-from", str(bart_ckpt)])
    assert pretrain_spec(args) is None
    (spec,) = make_specs(args)
    command = spec.train_command()
    assert command[command.index("--finetune-from-model") + 1] == str(bart_ckpt)
    assert command[command.index("--arch") + 1] == "bart_base" and command.count("--arch") == 1
    assert command[command.index("--lr") + 1] == "0.0005"  # finetune's own training options stay


# ---------------------------------------------------------------- the recipe's own pre-training as the user's model

@pytest.mark.slow
def test_a_denoising_pretraining_of_prep_finetune_data_is_accepted(tmp_path):
    """prep.finetune lists <mask> in the dictionary file: rows and symbols agree, and the derived options are the
    configuration's own model (what `finetune` fine-tunes from its own pre-training)."""
    from fairseq_eb.prep.binarize import binarize
    from fairseq_eb.prep.finetune import prepare

    parent = tmp_path / "parent"
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    (parent / "raw").mkdir(parents=True)
    for split, n in (("train", 60), ("valid", 6), ("test", 5)):
        rows = [[words[(i + j) % len(words)] for j in range(3 + i % 5)] for i in range(n)]
        (parent / "raw" / f"{split}.src").write_text("".join(" ".join(r) + "\n" for r in rows))
        (parent / "raw" / f"{split}.tgt").write_text("".join(" ".join(r[:2]) + "\n" for r in rows))
    binarize(parent, vocab_size=30)
    ft = tmp_path / "ft"
    prepare(parent, ft, train_subset=30, valid_subset=6, seed=1, pretrain_valid=5)
    model = _transformer(1, 32, 64, 2)
    save = tmp_path / "pretrain"
    run_fairseq("train", [ft / "pretrain-bin", "--user-dir", USER_DIR, "--task", "denoising", "--mask", "0.3",
                          "--tokens-per-sample", "32", "--sample-break-mode", "eos", *model, *TRAIN_COMMON,
                          "--criterion", "cross_entropy", "--max-update", "1", "--save-dir", save])
    ckpt = save / "checkpoint_best.pt"
    user = init_from.setup(ckpt, ft)
    rows = init_from.embedding_rows(torch.load(ckpt, map_location="cpu", weights_only=False))
    assert rows["src"] == len((ft / "bin" / "dict.src.txt").read_text().splitlines()) + 4  # <mask> in the file
    task = ["--task", "translation", "--cpu"]
    derived, configured = (build_model(ft / "bin", [*o, *task]) for o in (user.model_options, model))
    assert shapes(derived.state_dict()) == shapes(configured.state_dict())
    derived.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["model"], strict=True)


# ---------------------------------------------------------------- dictionaries and unreadable checkpoints

@pytest.mark.slow
def test_a_dictionary_of_another_size_is_one_line_naming_both_files(bart_ckpt, toy_bin, tmp_path, capsys):
    data = copy_data(toy_bin, tmp_path / "data")
    lines = (data / "bin" / "dict.src.txt").read_text().splitlines()
    for side in ("src", "tgt"):
        (data / "bin" / f"dict.{side}.txt").write_text("".join(f"{x}\n" for x in lines + ["extra 1"]))
    out = tmp_path / "out"
    message = refused(recipe_args(data, out, "--init-from", str(bart_ckpt)), capsys)
    assert message == (
        f"error: --init-from {bart_ckpt}: its encoder.embed_tokens.weight has {len(lines) + 4} rows but "
        f"{data / 'bin' / 'dict.src.txt'} makes a dictionary of {len(lines) + 5} symbols (4 specials + "
        f"{len(lines) + 1} lines); first differing line unknown: no dict.txt next to the checkpoint to compare "
        "lines with; binarise the data with the checkpoint's dictionary (python -m fairseq_eb.prep.binarize --dict "
        "DICT --spm-model SPM)")
    assert not out.exists()


@pytest.mark.slow
def test_a_dict_txt_next_to_the_checkpoint_must_list_the_data_s_symbols(bart_ckpt, toy_bin, tmp_path, capsys):
    ckpt = tmp_path / "bart" / "model.pt"  # as bart.base ships: model.pt with its dict.txt
    ckpt.parent.mkdir()
    shutil.copyfile(bart_ckpt, ckpt)
    lines = (toy_bin / "dict.src.txt").read_text().splitlines()
    (ckpt.parent / "dict.txt").write_text("".join(f"{x}\n" for x in lines))
    data = toy_bin.parent
    init_from.setup(ckpt, data)  # the same lines: accepted
    swapped = lines[:5] + [lines[6], lines[5]] + lines[7:]
    (ckpt.parent / "dict.txt").write_text("".join(f"{x}\n" for x in swapped))
    message = refused(recipe_args(data, tmp_path / "out", "--init-from", str(ckpt)), capsys)
    a, b = swapped[5].split()[0], lines[5].split()[0]
    assert message.startswith(
        f"error: --init-from {ckpt}: its dictionary {ckpt.parent / 'dict.txt'} ({len(lines)} lines) and "
        f"{toy_bin / 'dict.src.txt'} ({len(lines)} lines) differ first at line 6: {a!r} vs {b!r}; ")
    # a line the checkpoint's dict.txt lacks is refused too (unless it is a last <mask>: the test below)
    (ckpt.parent / "dict.txt").write_text("".join(f"{x}\n" for x in lines[:-1]))
    message = refused(recipe_args(data, tmp_path / "out", "--init-from", str(ckpt)), capsys)
    assert f"at line {len(lines)}: '(end of file)' vs {lines[-1].split()[0]!r}" in message


def test_one_more_row_is_accepted_only_where_the_model_drops_the_mask(tmp_path):
    (tmp_path / "data" / "bin").mkdir(parents=True)
    for side in ("src", "tgt"):
        (tmp_path / "data" / "bin" / f"dict.{side}.txt").write_text("a 3\nb 2\nc 1\n")
    ckpt = tmp_path / "ck" / "model.pt"
    ckpt.parent.mkdir()
    rows = {"src": 8, "tgt": 8}  # 4 specials + 3 lines + bart's appended <mask>
    init_from.check_dictionary(ckpt, rows, tmp_path / "data", "bart_base")
    with pytest.raises(ValueError, match=r"one row more is a denoising pre-training's appended <mask>: architecture "
                       r"transformer does not drop it on loading, so list '<mask> 0' as the last line"):
        init_from.check_dictionary(ckpt, rows, tmp_path / "data", "transformer")
    init_from.check_dictionary(ckpt, {"src": 7, "tgt": 7}, tmp_path / "data", "transformer")
    with pytest.raises(ValueError, match="decoder.embed_tokens.weight has 9 rows"):
        init_from.check_dictionary(ckpt, {"src": 7, "tgt": 9}, tmp_path / "data", "transformer")
    (ckpt.parent / "dict.txt").write_text("a 3\nb 2\n")
    (tmp_path / "data" / "bin" / "dict.src.txt").write_text("a 3\nb 2\n<mask> 0\n")
    (tmp_path / "data" / "bin" / "dict.tgt.txt").write_text("a 3\nb 2\n<mask> 0\n")
    init_from.check_dictionary(ckpt, {"src": 7, "tgt": 7}, tmp_path / "data", "bart_base")


@pytest.mark.slow
def test_missing_or_truncated_checkpoints_are_one_line(bart_ckpt, toy_bin, tmp_path, capsys):
    data, out = toy_bin.parent, tmp_path / "out"
    missing = tmp_path / "nowhere.pt"
    assert refused(recipe_args(data, out, "--init-from", str(missing)), capsys) == (
        f"error: --init-from {missing}: no such file")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(bart_ckpt.read_bytes()[:4096])
    message = refused(recipe_args(data, out, "--init-from", str(truncated)), capsys)
    assert message.startswith(f"error: --init-from {truncated}: truncated or not a torch checkpoint (")
    not_a_model = tmp_path / "state.pt"
    torch.save({"weights": torch.zeros(2)}, not_a_model)
    assert refused(recipe_args(data, out, "--init-from", str(not_a_model)), capsys).startswith(
        f"error: --init-from {not_a_model}: not a fairseq checkpoint (")
    assert not out.exists()


def test_the_sweep_takes_init_from_too(tmp_path, capsys):
    from fairseq_eb.recipe.sweep import main as sweep_main

    missing = tmp_path / "nowhere.pt"
    (tmp_path / "d" / "bin").mkdir(parents=True)
    for needed in ("dict.src.txt", "train.src-tgt.src.bin", "valid.src-tgt.src.bin", "test.src-tgt.src.bin"):
        (tmp_path / "d" / "bin" / needed).write_text("")
    assert sweep_main(["--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"), "--init-from", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"error: --init-from {missing}: no such file"
