"""The penalty under fairseq's default --ddp-backend pytorch_ddp: 2 ranks (gloo, CPU) vs legacy_ddp vs 1 process.

One SGD update with lr 1 and no momentum, so parameters after the update are ``init - gradient``; the same
global batch everywhere (2 ranks x 1 batch = 1 process x --update-freq 2), dropout 0. Evidence for
docs/ddp.md. fairseq's pytorch_ddp passes ``device_ids=[device_id]``, which PyTorch refuses for a CPU module,
so on CPU the ranks use a DistributedDataParallel that drops ``device_ids`` (``CPU_DDP``); the reducer,
whose hooks are the question, is the same.
"""
import pytest
import torch

from tests.fairseq_tools import TINY_MODEL, USER_DIR, run_data_parallel_train, run_fairseq

pytestmark = pytest.mark.slow  # end-to-end trainings (CONTRIBUTING.md: the fast loop)

CPU_DDP = """
import torch
import fairseq.models.distributed_fairseq_model as dfm
class CpuDistributedDataParallel(torch.nn.parallel.DistributedDataParallel):
    def __init__(self, module, device_ids=None, output_device=None, **kwargs):
        super().__init__(module, **kwargs)
dfm.DistributedDataParallel = CpuDistributedDataParallel
"""

ONE_SGD_UPDATE = [*TINY_MODEL, "--user-dir", USER_DIR, "--optimizer", "sgd", "--lr", "1.0", "--max-tokens", "200",
                  "--cpu", "--log-format", "simple", "--no-progress-bar", "--num-workers", "0", "--seed", "3",
                  "--no-epoch-checkpoints", "--dropout", "0", "--max-update", "1", "--disable-validation",
                  "--label-smoothing", "0.1"]
GP = ["--criterion", "label_smoothed_cross_entropy_with_gp", "--gp-epsilon", "1"]


def params_after_one_update(toy_bin, save_dir, extra, mode):
    args = [toy_bin, *ONE_SGD_UPDATE, *extra, "--save-dir", save_dir]
    if mode == "single":
        run_fairseq("train", [*args, "--update-freq", "2"])
    else:
        run_data_parallel_train([*args, "--ddp-backend", mode], python_prelude=CPU_DDP, timeout=300)
    return torch.load(save_dir / "checkpoint_last.pt", weights_only=False)["model"]


def max_diff(a, b):
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def plain_update(toy_bin, tmp_path_factory):
    return params_after_one_update(toy_bin, tmp_path_factory.mktemp("plain"), ["--criterion",
                                   "label_smoothed_cross_entropy"], "single")


@pytest.mark.parametrize("method,over", [("exact", "lookups"), ("exact", "table"), ("fgm", "lookups"),
                                         ("fgm", "table")])
def test_pytorch_ddp_gradients_equal_legacy_ddp_and_one_process(toy_bin, tmp_path, plain_update, method, over):
    extra = [*GP, "--gp-method", method, "--gp-over", over]
    single = params_after_one_update(toy_bin, tmp_path / "single", extra, "single")
    legacy = params_after_one_update(toy_bin, tmp_path / "legacy", extra, "legacy_ddp")
    pytorch = params_after_one_update(toy_bin, tmp_path / "pytorch", extra, "pytorch_ddp")
    assert max_diff(single, plain_update) > 1e-3  # the penalty moves the update: the comparison can fail
    assert max_diff(single, legacy) <= 1e-6
    assert max_diff(single, pytorch) <= 1e-6


def test_pytorch_ddp_with_accumulation_model_pool_and_lazy_penalty(toy_bin, tmp_path):
    """--update-freq 2 (DDP's no_sync on the first micro-batch), the model pool's no-grad forward through the
    DDP wrapper and a lazy penalty: pytorch_ddp must equal legacy_ddp (same per-rank draws) over 3 updates."""
    extra = [*GP, "--gp-interval", "2", "--update-freq", "2", "--max-update", "3", "--task",
             "translation_with_replacement", "--replace-pool", "model", "--replace-sample-prob", "1",
             "--replace-token-prob", "0.5", "--lr", "0.1"]
    legacy = params_after_one_update(toy_bin, tmp_path / "legacy", extra, "legacy_ddp")
    pytorch = params_after_one_update(toy_bin, tmp_path / "pytorch", extra, "pytorch_ddp")
    assert max_diff(legacy, pytorch) <= 1e-6
