"""Every named recipe configuration, with every method and every committed sweep choice, is a command line
fairseq accepts: a typo in a config must fail here in seconds, not after hours of someone else's training."""
import json
from pathlib import Path

import pytest
from fairseq import options

from fairseq_eb.recipe.configs import CONFIGS
from fairseq_eb.recipe.methods import METHODS, method_args, option_set
from fairseq_eb.recipe.table import load_chosen
from fairseq_eb.user_dir import user_dir

RESULTS = Path(__file__).resolve().parent.parent / "examples" / "results"


def _parse(argv):
    parser = options.get_training_parser()
    return options.parse_args_and_arch(parser, ["/nonexistent", "--user-dir", user_dir(), "--cpu", *argv])


def _flag(argv, name):
    return argv[len(argv) - 1 - argv[::-1].index(name) + 1]  # the last occurrence wins, as in argparse


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_every_config_and_method_parses(config):
    cfg = CONFIGS[config]
    for method in METHODS:
        argv = list(cfg.train_args) + method_args(method, cfg)
        args = _parse(argv)
        assert args.task == _flag(argv, "--task") and args.criterion == _flag(argv, "--criterion")
        assert args.max_update == int(_flag(argv, "--max-update"))
        assert args.lr == [float(_flag(argv, "--lr"))]
        assert args.dropout == float(_flag(argv, "--dropout"))
        if "--eval-bleu" in argv:
            assert args.eval_bleu and args.best_checkpoint_metric == "bleu" and args.maximize_best_checkpoint_metric
            assert json.loads(args.eval_bleu_args)["beam"] == 1
        if method in ("rr", "ss"):
            assert args.replace_token_prob == float(_flag(argv, "--replace-token-prob"))
    if cfg.pretrain_args:  # the one-off denoising pre-training (fairseq_eb.recipe.pretrain)
        args = _parse(list(cfg.pretrain_args))
        assert args.task == "denoising" and args.max_update == int(_flag(list(cfg.pretrain_args), "--max-update"))


def test_config_rr_warmup_fits_its_budget():
    """A warm-up longer than the run would silently train RR at a fraction of its rate."""
    for cfg in CONFIGS.values():
        rr = list(option_set("replacement", cfg))
        if "--replace-warmup-updates" in rr:
            assert int(_flag(rr, "--replace-warmup-updates")) < int(_flag(list(cfg.train_args), "--max-update"))


@pytest.mark.parametrize("chosen", sorted(RESULTS.glob("**/chosen.json")), ids=lambda p: str(p.relative_to(RESULTS)))
def test_committed_sweep_choices_parse_with_their_config(chosen):
    config = json.loads(chosen.read_text())["config"]
    cfg = CONFIGS[config]
    for method, choice in load_chosen(chosen).items():
        argv = list(cfg.train_args) + method_args(method, cfg) + list(choice["args"])
        args = _parse(argv)
        if "--gp-epsilon" in choice["args"]:
            assert args.gp_epsilon == float(_flag(list(choice["args"]), "--gp-epsilon"))


def test_ss_grid_parses_with_finetune():
    """Every scheduled-sampling variant of the sweep (docs/method.md §2.5 included) is a valid command line."""
    from fairseq_eb.recipe import sweep

    cfg = CONFIGS["finetune"]
    for v in sweep.grid("ss", 1200):
        argv = list(cfg.train_args) + method_args("ss", cfg) + list(v["args"])
        args = _parse(argv)
        assert args.replace_pool == "model" and args.replace_token_prob == float(_flag(argv, "--replace-token-prob"))


@pytest.mark.parametrize("method", ["mrt", "rank"])
def test_sequence_stage_grids_parse_with_finetune(method):
    """Every sweep variant of the sequence-level stages is a valid fairseq-train command line of `finetune`, and
    the stage's own budget overrides the configuration's (the last occurrence wins)."""
    from fairseq_eb.recipe import sweep

    cfg = CONFIGS["finetune"]
    variants = sweep.grid(method, 1200)
    assert len(variants) == 8
    for v in variants:
        argv = list(cfg.train_args) + method_args(method, cfg) + list(v["args"])
        args = _parse(argv)
        assert args.criterion == {"mrt": "sequence_risk", "rank": "sequence_ranking"}[method]
        assert args.max_update == 400 and args.lr == [1e-4] and args.seq_beam == int(_flag(argv, "--seq-beam"))
        assert args.seq_combined_loss_alpha == float(_flag(argv, "--seq-combined-loss-alpha"))
