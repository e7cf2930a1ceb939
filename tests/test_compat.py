"""The torch/fairseq compatibility shims installed by ``fairseq_eb.register()`` (the --user-dir entry)."""
import argparse
import io
import os
import subprocess
import sys
import typing

import numpy as np
import pytest
import torch

import fairseq_eb
from fairseq_eb.compat import checkpoint_safe_globals, complete_batches, tail_completing

fairseq_eb.register()


@pytest.mark.skipif(not hasattr(torch.serialization, "add_safe_globals"),
                    reason="torch < 2.4 has no safe-globals list: the safe_globals patch does not apply")
def test_namespace_and_omegaconf_load_with_weights_only():
    from omegaconf import OmegaConf

    state = {"args": argparse.Namespace(lr=[0.1], arch="transformer"),
             "cfg": OmegaConf.create({"common": {"seed": 3}, "task": {"data": "x", "langs": [1, 2]}}),
             "model": {"w": torch.ones(2)}}
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)  # safe loading stays ON
    assert loaded["args"].arch == "transformer" and loaded["cfg"].task.langs[1] == 2


def test_safe_loading_still_rejects_arbitrary_globals():
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    buf = io.BytesIO()
    torch.save({"x": Evil()}, buf)
    buf.seek(0)
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(buf, weights_only=True)


NUMPY_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"  # renamed in NumPy 2


def test_allow_list_is_exactly_the_checkpoint_types():
    """Only data types (no functions an exploit could call), and no more than fairseq checkpoints hold."""
    names = {getattr(t, "__module__", "") + "." + getattr(t, "__qualname__", repr(t))
             for t in checkpoint_safe_globals() if t is not typing.Any}
    assert names == {
        "argparse.Namespace", "omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig",
        "omegaconf.base.ContainerMetadata", "omegaconf.base.Metadata", "omegaconf.nodes.AnyNode",
        "omegaconf.base.Node", "fairseq.distributed.utils._TensorPlaceholder", "builtins.dict", "builtins.list",
        "builtins.int", "collections.defaultdict",
        # plain NumPy arrays and scalars (fairseq's --eval-bleu meters): their two reconstruction functions
        # only build arrays/scalars of the allowed dtypes
        "numpy.ndarray", "numpy.dtype", f"{NUMPY_CORE}.multiarray._reconstruct", f"{NUMPY_CORE}.multiarray.scalar",
        "numpy.dtypes.Float64DType", "numpy.dtypes.Float32DType", "numpy.dtypes.Int64DType",
        "numpy.dtypes.Int32DType", "numpy.dtypes.BoolDType",
    }
    functions = {"_reconstruct", "scalar"}
    assert all(isinstance(t, type) or t.__name__ in functions for t in checkpoint_safe_globals() if t is not typing.Any)


def _tail_dropping_batch_by_size(indices, num_tokens_fn, num_tokens_vec=None, max_tokens=None, max_sentences=None,
                                 required_batch_size_multiple=1, fixed_shapes=None):
    """A stand-in for the faulty compiled kernel: batches of ``max_sentences``, rounded down to the
    multiple, and the last incomplete multiple silently dropped."""
    mult = required_batch_size_multiple
    size = max(mult, max_sentences // mult * mult)
    full = len(indices) // mult * mult
    return [np.asarray(indices[i:min(i + size, full)]) for i in range(0, full, size)]


@pytest.mark.parametrize("n,mult", [(101, 8), (16, 8), (5, 8), (30, 1)])
def test_wrapper_batches_the_tail_the_kernel_drops(n, mult):
    indices = np.arange(100, 100 + n, dtype=np.int64)
    dropped = _tail_dropping_batch_by_size(indices, len, max_sentences=12, required_batch_size_multiple=mult)
    assert sum(map(len, dropped)) == n // mult * mult  # the stand-in really drops the tail
    batches = tail_completing(_tail_dropping_batch_by_size)(indices, len, max_sentences=12,
                                                            required_batch_size_multiple=mult)
    assert np.concatenate(batches).tolist() == indices.tolist()  # all, in order, once
    assert all(0 < len(b) <= 12 for b in batches)
    assert [b.tolist() for b in batches[:len(dropped)]] == [b.tolist() for b in dropped]


def test_fairseq_batch_by_size_is_wrapped_and_keeps_the_tail():
    from fairseq.data import data_utils

    assert getattr(data_utils.batch_by_size, "_fairseq_eb_complete", False)
    rng = np.random.RandomState(0)
    sizes = rng.randint(3, 12, size=101)
    indices = np.argsort(sizes, kind="stable").astype(np.int64)
    for mult in (1, 8):
        batches = data_utils.batch_by_size(indices, lambda i: sizes[i], max_tokens=200,
                                           required_batch_size_multiple=mult, num_tokens_vec=sizes[indices])
        flat = np.concatenate(batches)
        assert sorted(flat.tolist()) == list(range(101))
        for b in batches:
            assert len(b) * sizes[b].max() <= 200


def test_complete_batches_appends_only_missing_tail():
    idx = np.arange(10)
    assert len(complete_batches([idx[:5], idx[5:]], idx, lambda t: [t])) == 2
    out = complete_batches([idx[:8]], idx, lambda t: [t])
    assert out[-1].tolist() == [8, 9]


EXIT_PROBE = """
import atexit, sys
import torch, torch.distributed as dist
# registered before the plugin's handler, so it runs after it (atexit is last-in, first-out)
atexit.register(lambda: print("group alive at exit:", dist.is_initialized(), flush=True))
import fairseq  # noqa: F401
import fairseq_eb  # noqa: F401  (fairseq already imported: registers like --user-dir)
dist.init_process_group("gloo", init_method="tcp://127.0.0.1:{port}", rank=0, world_size=1)
t = torch.ones(3)
dist.all_reduce(t)
if sys.argv[1] == "fail":
    raise RuntimeError("rank failed")
"""


@pytest.mark.parametrize("outcome,alive", [("ok", False), ("fail", True)])
def test_gloo_group_destroyed_at_normal_exit_only(outcome, alive):
    """A finished rank destroys its gloo group before interpreter teardown (which could abort it); a failed
    rank leaves it alone, as a destroy could block on ranks still inside a collective."""
    from tests.fairseq_tools import free_port

    code = EXIT_PROBE.format(port=free_port())
    r = subprocess.run([sys.executable, "-c", code, outcome], capture_output=True, text=True, timeout=120)
    assert f"group alive at exit: {alive}" in r.stdout, r.stdout + r.stderr[-2000:]
    assert (r.returncode == 0) == (outcome == "ok"), r.stderr[-2000:]


SLOW_PREFETCH_TRAIN = """
import atexit, sys, threading, torch
import fairseq.data.iterators as iterators
import fairseq.data.language_pair_dataset as lpd
# registered before the plugin's handler (imported by --user-dir below), so it runs after it
atexit.register(lambda: print("prefetch threads alive at exit:", sum(
    isinstance(t, iterators.BackgroundConsumer) for t in threading.enumerate()), flush=True))
collate = lpd.LanguagePairDataset.collater
def slow_collate(self, samples, *a, **k):
    m = torch.randn(500, 500)
    for _ in range(15):  # matrix products release the GIL: the prefetcher spends its time in C++
        m = m @ m / 25
    return collate(self, samples, *a, **k)
lpd.LanguagePairDataset.collater = slow_collate
from fairseq_cli.train import cli_main
sys.argv = ["fairseq-train", *sys.argv[1:]]
cli_main()
"""


def test_training_that_stops_while_batches_are_prefetched_exits_cleanly(toy_bin, tmp_path):
    """Training stops after one update while fairseq's prefetch thread is still collating batches (slowed down
    here); without the exit hook the interpreter's teardown aborted the process (SIGABRT) in 6 of 6 runs."""
    from tests.fairseq_tools import TINY_MODEL, USER_DIR

    args = [str(toy_bin), *TINY_MODEL, "--user-dir", USER_DIR, "--optimizer", "sgd", "--lr", "1", "--cpu",
            "--max-tokens", "200", "--num-workers", "0", "--max-update", "1", "--disable-validation",
            "--no-epoch-checkpoints", "--save-dir", str(tmp_path), "--criterion", "cross_entropy"]
    r = subprocess.run([sys.executable, "-c", SLOW_PREFETCH_TRAIN, *args], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "prefetch threads alive at exit: 0" in r.stdout, r.stdout[-2000:]


@pytest.mark.slow
def test_stop_prefetch_threads_ends_a_consumer_mid_collation():
    import queue
    import time

    from fairseq.data.iterators import BackgroundConsumer

    from fairseq_eb.compat import stop_prefetch_threads

    def batches():
        while True:
            time.sleep(0.05)
            yield torch.zeros(2)

    buffer = queue.Queue(3)
    consumer = BackgroundConsumer(buffer, batches(), None, None)
    consumer.daemon = True
    consumer.start()
    time.sleep(0.3)
    assert consumer.is_alive()  # an endless source with a full buffer: it would wait forever
    assert stop_prefetch_threads(timeout=10) == 1
    assert not consumer.is_alive()
    assert stop_prefetch_threads() == 0  # nothing left to stop


def _toy_pairs(n: int = 300, seed: int = 0):
    """A LanguagePairDataset with many equal lengths, so batch composition depends on the ordering seed."""
    from fairseq.data import Dictionary, LanguagePairDataset

    vocab = Dictionary()
    for i in range(20):
        vocab.add_symbol(f"w{i}")
    rng = np.random.RandomState(seed)
    src = [torch.tensor(rng.randint(4, 24, size=rng.randint(2, 7)).tolist() + [vocab.eos()]) for _ in range(n)]
    tgt = [s[:3].clone() for s in src]
    return LanguagePairDataset(src, np.array([len(s) for s in src]), vocab, tgt, np.array([len(t) for t in tgt]),
                               vocab, shuffle=True)


def _batches(get_batch_iterator, epoch: int):
    from fairseq.tasks import FairseqTask

    task, dataset = FairseqTask(None), _toy_pairs()
    iterator = get_batch_iterator(task, dataset, max_tokens=40, seed=3, epoch=epoch)
    return iterator, [b.tolist() for b in iterator.frozen_batches]


def test_iterator_built_in_a_later_epoch_has_the_first_epochs_batches():
    from fairseq.tasks import FairseqTask

    wrapped = FairseqTask.get_batch_iterator
    assert getattr(wrapped, "_fairseq_eb_first_epoch", False)
    _, first = _batches(wrapped, 1)
    resumed, later = _batches(wrapped, 3)
    assert later == first
    assert resumed.epoch == 3 and resumed.next_epoch_idx == 3  # the resumed run still stands in epoch 3
    _, unpatched = _batches(wrapped.__wrapped__, 3)  # fairseq's own: other sentences in the batches
    assert sorted(map(len, unpatched)) == sorted(map(len, first)) and unpatched != first


@pytest.mark.slow
def test_resume_after_the_first_epoch_continues_the_uninterrupted_run(toy_bin, tmp_path):
    """fairseq alone trains a run resumed in epoch 2 on differently composed batches from there on."""
    import re

    from tests.fairseq_tools import TINY_MODEL, TRAIN_COMMON, USER_DIR, run_fairseq

    def train(save_dir, updates):
        proc = run_fairseq("train", [toy_bin, "--user-dir", USER_DIR, "--task", "translation",
                                     "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
                                     "--dropout", "0.1", *TINY_MODEL, *TRAIN_COMMON, "--save-dir", save_dir,
                                     "--max-update", str(updates)])
        log = proc.stdout + proc.stderr
        return {int(u): (e, loss) for e, loss, u in
                re.findall(r"epoch (\d+):.*?loss=([\d.]+).*?num_updates=(\d+)", log)}, log

    train(tmp_path / "ck", 11)
    resumed, log = train(tmp_path / "ck", 16)
    straight, _ = train(tmp_path / "straight", 16)
    assert "@ 11 updates" in log and min(resumed) == 12 and resumed[12][0] == "002", (sorted(resumed), log[-2000:])
    assert {u: resumed[u] for u in range(12, 17)} == {u: straight[u] for u in range(12, 17)}
