"""The table recipe's `ss` (model pool, rising schedule) and `gp_lazy` (lazy penalty) methods on the tiny config."""
import json

import pytest

from fairseq_eb.recipe.configs import CONFIGS
from fairseq_eb.recipe.methods import METHODS, REGISTRY, check_methods, method_args, option_set
from fairseq_eb.recipe.table import main


def test_new_methods_options():
    assert check_methods(["gp_lazy", "ss", "baseline"]) == ["baseline", "ss", "gp_lazy"]
    assert METHODS["ss"] == "SS" and METHODS["gp_lazy"] == "GP-lazy"
    for cfg in CONFIGS.values():
        ss, lazy, gp = method_args("ss", cfg), method_args("gp_lazy", cfg), method_args("gp", cfg)
        assert ss[:2] == ["--task", "translation_with_replacement"]
        assert ss[ss.index("--replace-pool") + 1] == "model"
        assert ss[ss.index("--replace-schedule") + 1] == "inverse_sigmoid"
        assert ss[-2:] == ["--criterion", "label_smoothed_cross_entropy"]
        assert lazy == gp + list(option_set("lazy", cfg)) and "--gp-interval" in lazy
        assert REGISTRY["ss"].cost > 1 and REGISTRY["gp_lazy"].cost > 1


@pytest.mark.slow
def test_tiny_table_with_ss_and_gp_lazy(toy_bin, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--data", str(toy_bin.parent), "--out", str(out), "--config", "tiny", "--methods", "ss", "gp_lazy",
                 "--seeds", "1", "--beams", "1", "--jobs", "2", "--device", "cpu", "--name", "toy"]) == 0
    log = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["methods"] == ["ss", "gp_lazy"]
    for method in ("ss", "gp_lazy"):
        assert 0.0 <= results["summary"][method]["1"]["rouge-l"]["mean"] <= 100.0
    assert "--replace-pool model" in results["runs"]["ss/seed1"]["train_command"]
    assert "--gp-interval 4" in results["runs"]["gp_lazy/seed1"]["train_command"]
    ss_log = (out / "runs" / "ss" / "default" / "seed1" / "train.log").read_text()
    assert "replaced=" in ss_log and "selected=" in ss_log
    assert "| toy | 1 | SS / GP-lazy |" in (out / "table.md").read_text(), log[-2000:]


@pytest.mark.slow
def test_tiny_sweep_over_ss_and_gp_lazy_variants(toy_bin, tmp_path):
    """The sweep's model-pool and lazy-penalty grids reach fairseq: the chosen settings are the variants run."""
    from fairseq_eb.recipe import sweep

    out = tmp_path / "out"
    assert sweep.main(["--data", str(toy_bin.parent), "--out", str(out), "--config", "tiny", "--methods", "ss",
                       "gp_lazy", "--variants", "pt0.1-ramp-quarter", "every2", "--beams", "1", "--jobs", "2",
                       "--device", "cpu", "--name", "toy"]) == 0
    chosen = json.loads((out / "sweep" / "chosen.json").read_text())["chosen"]
    assert chosen["ss"]["variant"] == "pt0.1-ramp-quarter" and chosen["gp_lazy"]["variant"] == "every2"
    assert chosen["ss"]["args"][-2:] == ["--replace-schedule-updates", "2"]  # a quarter of tiny's 8 updates
    ss_log = (out / "runs" / "ss" / "pt0.1-ramp-quarter" / "seed1" / "train.log").read_text()
    assert "'replace_token_prob': 0.1" in ss_log and "'replace_schedule_updates': 2" in ss_log  # fairseq's config
    lazy_log = (out / "runs" / "gp_lazy" / "every2" / "seed1" / "train.log").read_text()
    assert "'gp_interval': 2" in lazy_log
