"""The torch/fairseq compatibility shims installed when the plugin is imported."""
import argparse
import io

import numpy as np
import pytest
import torch

import fairseq_eb  # noqa: F401  (applies the shims)
from fairseq_eb.compat import checkpoint_safe_globals, complete_batches


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
    assert print not in checkpoint_safe_globals()


def test_batch_by_size_keeps_the_tail():
    from fairseq.data import data_utils

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
