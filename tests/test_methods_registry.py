"""The method registry (fairseq_eb.recipe.methods): every record is complete and the recipe reads it."""
from fairseq_eb.recipe import sweep
from fairseq_eb.recipe.configs import CONFIGS
from fairseq_eb.recipe.methods import METHODS, OPTION_SETS, REGISTRY, STAGE_METHODS, method_args, methods_help
from fairseq_eb.recipe.table import build_parser


def test_every_record_is_complete():
    assert list(METHODS) == list(REGISTRY) and len(set(METHODS.values())) == len(METHODS)
    for name, m in REGISTRY.items():
        assert m.name == name and m.summary and m.cost >= 1.0
        assert m.reference in REGISTRY
        assert set(m.task_options) | set(m.criterion_options) <= set(OPTION_SETS)
        assert (m.cost == 1.0) == (not m.cost_note)
    assert STAGE_METHODS == ("mle_more", "mrt", "rank")


def test_the_options_are_the_records():
    cfg = CONFIGS["long"]
    assert method_args("gp_lazy", cfg) == [
        "--task", "translation", "--criterion", "label_smoothed_cross_entropy_with_gp",
        "--gp-epsilon", "1.0", "--gp-method", "fgm", "--gp-interval", "4"]
    assert method_args("mle_more", cfg)[:2] == ["--task", "translation"] and "--lr" in method_args("mle_more", cfg)
    for args in (method_args(m, c) for m in REGISTRY for c in CONFIGS.values() if not REGISTRY[m].stage):
        assert args.count("--replace-token-prob") <= 1 and args.count("--gp-epsilon") <= 1


def test_sweep_and_help_read_the_registry():
    assert set(sweep.GRIDS) == {n for n, m in REGISTRY.items() if m.grid is not None}
    names = [v for g in sweep.GRIDS.values() for v in g]
    assert len(names) == len(set(names))  # --variants selects by name across methods
    help_text = next(a.help for a in build_parser()._actions if "--methods" in a.option_strings)
    assert methods_help() in help_text and all(m.summary in help_text for m in REGISTRY.values())
