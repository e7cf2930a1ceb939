"""Compatibility shims between fairseq 0.12.x and current torch, applied once at plugin import.

Why: fairseq checkpoints pickle ``argparse.Namespace`` and, when rank 0 broadcasts a resumed state to
the other data-parallel ranks, omegaconf containers. torch >= 2.6 loads with ``weights_only=True`` and
rejects those types. We allow-list exactly those types instead of switching safe loading off, so a
malicious checkpoint still cannot run code.
"""
from __future__ import annotations

import argparse
import collections
import typing
from typing import List

import torch

_APPLIED = False


def checkpoint_safe_globals() -> List[object]:
    """Types that fairseq checkpoints (and fairseq's rank-0 state broadcast) contain besides tensors."""
    types: List[object] = [argparse.Namespace]
    try:
        import omegaconf
        from omegaconf import base, dictconfig, listconfig, nodes

        types += [
            dictconfig.DictConfig,
            listconfig.ListConfig,
            base.ContainerMetadata,
            base.Metadata,
            nodes.AnyNode,
            omegaconf.base.Node,
        ]
    except ImportError:  # pragma: no cover - omegaconf comes with fairseq
        pass
    # omegaconf's metadata pickles these plain typing/builtin objects.
    types += [typing.Any, dict, list, int, collections.defaultdict]
    return types


def apply() -> None:
    """Install the shims (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is not None:  # torch < 2.4 has no safe loading by default: nothing to do
        add(checkpoint_safe_globals())
    _APPLIED = True
