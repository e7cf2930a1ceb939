"""Compatibility shims between fairseq 0.12.x and current torch: the implementations behind the patch registry.

Which of them ``fairseq_eb.register()`` installs, and how to switch each off, is decided in
:mod:`fairseq_eb.patches` (listed by ``fairseq-eb-env``).

Why: fairseq checkpoints pickle ``argparse.Namespace`` and, when rank 0 broadcasts a resumed state to
the other data-parallel ranks, omegaconf containers. torch >= 2.6 loads with ``weights_only=True`` and
rejects those types. We allow-list exactly those types instead of switching safe loading off, so a
malicious checkpoint still cannot run code.

fairseq's ``data_utils.batch_by_size`` drops the last batch when its size is not a multiple of
``required_batch_size_multiple`` (upstream main since 2022-12, d871f616; every 0.12.3 build, not the 0.12.2
release): ``fairseq-generate`` then silently skips the longest test sentences and training skips them every
epoch. We wrap it so the tail is always batched too.

fairseq forms the training batches once, with a seed that includes the epoch the iterator is built in,
and then only reshuffles their order each epoch. An uninterrupted run builds it in epoch 1; a run resumed in
epoch k > 1 builds it anew in epoch k and trains on differently composed batches from there on, so
resuming changed the result (same sizes, other sentences: measured in ``tests/test_compat.py``). We build
the batches of a resumed run as epoch 1 would have.

A checkpoint that cannot be loaded (truncated, not a checkpoint, or refused by safe loading because it holds
objects no fairseq checkpoint holds) ended ``fairseq-train``/``fairseq-generate`` in a torch traceback whose
first line advises switching safe loading off. fairseq's loader is wrapped so that it raises
:class:`CheckpointLoadError` with one line naming the file, and a fairseq command that does not catch it
prints that line and exits with status 2, as for a bad option.

fairseq never destroys its process group. Since torch 2.x, a gloo rank that reaches interpreter shutdown
with the group alive can abort (SIGABRT, "terminate called without an active exception") after a training
that succeeded; we destroy the group at exit instead.

fairseq prefetches batches in a daemon thread (``BackgroundConsumer``, ``--data-buffer-size`` ahead). When
training stops before that buffer is full, the thread is still collating (torch code with the GIL released)
as the interpreter finalises; it then tries to retake the GIL, is unwound through a C++ frame and the process
aborts (SIGABRT, same message) after a training that succeeded. At exit we let it finish the batch at hand
and stop.
"""
from __future__ import annotations

import argparse
import atexit
import collections
import contextlib
import functools
import inspect
import io
import os
import pickle
import queue
import re
import sys
import threading
import time
import typing
from typing import Any, Callable, List, Optional, Sequence

import numpy as np


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
    try:  # rank 0 broadcasts a resumed state with tensors swapped for these placeholders
        from fairseq.distributed.utils import _TensorPlaceholder

        types.append(_TensorPlaceholder)
    except ImportError:  # pragma: no cover
        pass
    # omegaconf's metadata pickles these plain typing/builtin objects.
    types += [typing.Any, dict, list, int, collections.defaultdict]
    types += numpy_array_globals()
    return types


def numpy_array_globals() -> List[object]:
    """What a pickled plain NumPy array needs: fairseq's ``--eval-bleu`` keeps its n-gram counts as arrays in
    the metric meters that every checkpoint stores. Arrays of object dtype still need their contents allowed."""
    # NumPy 1.26 has a placeholder numpy._core without multiarray (for reading NumPy 2 pickles): the torch < 2.4
    # cells of the install matrix run on it
    core = np._core if int(np.__version__.split(".")[0]) >= 2 else np.core
    dtype_classes = [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)]
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, core.multiarray.scalar, *dtype_classes]


def complete_batches(batches: Sequence[Any], indices: Any, rebatch: Callable[[Any], Sequence[Any]]) -> List[Any]:
    """Append batches for the tail of ``indices`` that ``batches`` (contiguous splits) left out."""
    covered = sum(len(b) for b in batches)
    if covered >= len(indices):
        return list(batches)
    return list(batches) + list(rebatch(indices[covered:]))


def tail_completing(original: Callable[..., Sequence[Any]]) -> Callable[..., List[Any]]:
    """Wrap a ``batch_by_size`` implementation so that the indices it leaves out at the end are batched too.

    The tail is re-batched with ``required_batch_size_multiple=1``: it is shorter than one multiple.
    """

    @functools.wraps(original)
    def batch_by_size(indices, num_tokens_fn, num_tokens_vec=None, max_tokens=None, max_sentences=None,
                      required_batch_size_multiple=1, fixed_shapes=None):
        def call(idx, vec, mult):
            return original(idx, num_tokens_fn, num_tokens_vec=vec, max_tokens=max_tokens,
                            max_sentences=max_sentences, required_batch_size_multiple=mult,
                            fixed_shapes=fixed_shapes)

        batches = call(indices, num_tokens_vec, required_batch_size_multiple)
        if fixed_shapes is not None:
            return batches
        indices = np.asarray(indices, dtype=np.int64)
        covered = sum(len(b) for b in batches)
        tail_vec = None if num_tokens_vec is None else np.asarray(num_tokens_vec)[covered:]
        return complete_batches(batches, indices, lambda tail: call(tail, tail_vec, 1))

    batch_by_size._fairseq_eb_complete = True
    return batch_by_size


def first_epoch_batches(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``FairseqTask.get_batch_iterator`` so that an iterator first built in epoch k > 1 holds the
    batches an iterator built in epoch 1 holds.

    Only where fairseq would keep one iterator for the whole run (the iterator cache is on, the dataset
    allows reuse, batches are not rebuilt per epoch): there an uninterrupted run trains every epoch on the
    batches of epoch 1. Everything else (sharded data, ``--rebuild-batches``, validation) is unchanged.
    """
    signature = inspect.signature(original)

    @functools.wraps(original)
    def get_batch_iterator(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        call = bound.arguments
        epoch, dataset = call["epoch"], call["dataset"]
        kept_for_the_run = (
            not call["disable_iterator_cache"]
            and not call.get("update_epoch_batch_itr", False)
            and not getattr(getattr(self, "cfg", None), "rebuild_batches", False)
            and self.can_reuse_epoch_itr(dataset)
            and dataset not in self.dataset_to_epoch_iter
        )
        if epoch <= 1 or not kept_for_the_run:
            return original(*bound.args, **bound.kwargs)
        call["epoch"] = 1
        iterator = original(*bound.args, **bound.kwargs)
        iterator.epoch = epoch  # where the resumed run stands (its state_dict is loaded next)
        dataset.set_epoch(epoch)
        return iterator

    get_batch_iterator._fairseq_eb_first_epoch = True
    return get_batch_iterator


class CheckpointLoadError(ValueError):
    """A checkpoint file that cannot be loaded; the message is one line naming the file and why."""


def checkpoint_load_message(path: str, error: BaseException) -> str:
    """One line for a failed ``torch.load`` of ``path``: refused by safe loading, or truncated / no checkpoint.

    Why not torch's own text: its first line advises ``weights_only=False``, i.e. running the file's code.
    """
    text = str(error)
    if isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in text:
        found = re.search(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) ([\w.]+)", text)
        if found:
            return (f"checkpoint {path}: refused by safe loading: it holds {found.group(1)}, which no fairseq "
                    "checkpoint holds, and nothing in it was run; load only checkpoints you made or trust")
        return f"checkpoint {path}: not a torch checkpoint (safe loading found no checkpoint in it)"
    first = text.strip().splitlines()[0] if text.strip() else "the file ended early"
    first = first.split(". This is an internal miniz error")[0][:200]
    return f"checkpoint {path}: truncated or not a torch checkpoint ({type(error).__name__}: {first})"


def one_line_checkpoint_errors(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``checkpoint_utils.load_checkpoint_to_cpu``: load failures become :class:`CheckpointLoadError`."""

    @functools.wraps(original)
    def load_checkpoint_to_cpu(path, *args, **kwargs):
        try:
            return original(path, *args, **kwargs)
        except (pickle.UnpicklingError, EOFError, OSError, RuntimeError) as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise CheckpointLoadError(checkpoint_load_message(str(path), e)) from None

    load_checkpoint_to_cpu._fairseq_eb_one_line = True
    return load_checkpoint_to_cpu


def exit_2_on_checkpoint_errors() -> None:
    """An uncaught :class:`CheckpointLoadError` prints ``PROG: error: MESSAGE`` and exits 2, like argparse.

    Hydra's entry point (``fairseq-hydra-train``) catches exceptions itself and prints them its own way.
    """
    previous_hook = sys.excepthook

    def hook(kind, value, traceback) -> None:
        if isinstance(value, CheckpointLoadError):
            print(f"{os.path.basename(sys.argv[0] or 'fairseq')}: error: {value}", file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)  # an excepthook cannot choose the exit status otherwise
        previous_hook(kind, value, traceback)

    sys.excepthook = hook


def wrap_once(module: str, owner: str, name: str, wrap: Callable[[Any], Any], marker: str) -> None:
    """Replace ``module.owner.name`` (``owner`` may be empty) by ``wrap`` of it, unless already wrapped."""
    import importlib

    try:
        target = importlib.import_module(module)
    except ImportError:  # pragma: no cover - fairseq-free use of the package
        return
    target = getattr(target, owner) if owner else target
    if not getattr(getattr(target, name), marker, False):
        setattr(target, name, wrap(getattr(target, name)))


def _add_component_options(parser: argparse.ArgumentParser, args: List[str]) -> None:
    """Add the chosen task's and registry components' (criterion, optimizer, ...) options to ``parser``."""
    from fairseq.dataclass.utils import gen_parser_from_dataclass
    from fairseq.registry import REGISTRIES
    from fairseq.tasks import TASK_REGISTRY

    known, _ = parser.parse_known_args(args)
    adders = []
    if getattr(known, "task", None) in TASK_REGISTRY:
        adders.append(TASK_REGISTRY[known.task].add_args)
    for name, registry in REGISTRIES.items():
        cls = registry["registry"].get(getattr(known, name, None))
        if cls is not None and hasattr(cls, "add_args"):
            adders.append(cls.add_args)
        elif cls is not None and hasattr(cls, "__dataclass"):
            adders.append(lambda p, dc=cls.__dataclass: gen_parser_from_dataclass(p, dc()))
    for add in adders:
        try:
            add(parser)
        except argparse.ArgumentError:  # already added by fairseq's own discovery
            pass


def complete_cli_help() -> None:
    """Make ``fairseq-train --task X --criterion Y --help`` list X's and Y's options.

    Why: fairseq parses the command line once *before* adding task/model/criterion options, and
    ``--help`` exits in that first pass, so plugin options (and fairseq's own) never show. The plugin is
    imported while fairseq builds its parser, before it parses; when help is asked for, we let
    fairseq's own option discovery run once without ``--help`` so the help printed next is complete.
    """
    if "-h" not in sys.argv[1:] and "--help" not in sys.argv[1:]:
        return
    from fairseq import options

    original = options.parse_args_and_arch
    if getattr(original, "_fairseq_eb_help", False):
        return

    @functools.wraps(original)
    def parse_args_and_arch(parser, input_args=None, parse_known=False, suppress_defaults=False,
                            modify_parser=None):
        args = sys.argv[1:] if input_args is None else input_args
        stripped = [a for a in args if a not in ("-h", "--help")]
        try:  # adds the options; may then stop at a missing data path or --arch: help still improves
            with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                original(parser, input_args=stripped, parse_known=True, modify_parser=modify_parser)
        except (SystemExit, Exception):
            _add_component_options(parser, stripped)
        return original(parser, input_args=input_args, parse_known=parse_known,
                        suppress_defaults=suppress_defaults, modify_parser=modify_parser)

    parse_args_and_arch._fairseq_eb_help = True
    options.parse_args_and_arch = parse_args_and_arch


def numpy_compat_namespace() -> None:
    """Restore ``numpy.compat.long`` (removed in NumPy 2) for fairseq's ``TokenBlockDataset``.

    Why: fairseq's language-modelling and ``denoising`` datasets build their block index with
    ``np.compat.long``; on NumPy >= 2 they fail with an AttributeError before training starts.
    """
    if hasattr(np, "compat"):
        return
    import types

    np.compat = types.SimpleNamespace(long=int, unicode=str)


def destroy_gloo_group_at_exit() -> None:
    """Destroy a live gloo process group when the process exits normally.

    Why: gloo's worker threads can still hold tensors when the interpreter tears down, and destroying
    them then aborts the rank (pytorch/pytorch#190489); seen as one data-parallel rank exiting with -6
    after fairseq-train had finished. ``atexit`` runs while the interpreter is intact. After an uncaught
    exception the group is left alone: the other ranks may still be blocked in a collective, and a
    destroy could then hang instead of exiting. NCCL groups are left to fairseq as before.
    """
    failed = []
    previous_hook = sys.excepthook

    def note_failure(*exc_info: Any) -> None:
        failed.append(True)
        previous_hook(*exc_info)

    def destroy() -> None:
        import torch.distributed as dist

        if failed or not dist.is_available() or not dist.is_initialized():
            return
        if dist.get_backend() == "gloo":
            dist.destroy_process_group()

    sys.excepthook = note_failure
    atexit.register(destroy)


def stop_prefetch_threads(timeout: float = 30.0) -> int:
    """Stop fairseq's batch-prefetching threads; return how many were still running.

    Each thread finishes the batch it is collating, hands it over (we drain its queue so ``put`` never
    blocks) and ends. Bounded by ``timeout`` seconds in all: a thread stuck in a data-loader worker is left as
    it is. Relies on ``BackgroundConsumer``'s ``_queue``/``_max_len`` (fairseq 0.12); absent, nothing is done.
    """
    iterators = sys.modules.get("fairseq.data.iterators")
    consumer_type = getattr(iterators, "BackgroundConsumer", None)
    if consumer_type is None:
        return 0
    running = [t for t in threading.enumerate()
               if isinstance(t, consumer_type) and t.is_alive() and hasattr(t, "_queue") and hasattr(t, "_max_len")]
    deadline = time.monotonic() + timeout
    for thread in running:
        thread._max_len = 0  # the loop breaks after its next put
        while thread.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                while True:
                    thread._queue.get_nowait()
            thread.join(0.01)
    return len(running)


def batch_by_size_drops_tail() -> Optional[bool]:
    """Whether this fairseq's own ``batch_by_size`` leaves out the tail after the last full multiple (None: unknown).

    Probed on 10 equal-length indices in batches of 4 with ``required_batch_size_multiple=4``: fairseq 0.12.2
    returns 4 + 4 + 2 indices, main since 2022-12 (ve-fairseq, fairseq-fixed) only 4 + 4.
    """
    try:
        from fairseq.data import data_utils
    except Exception:  # pragma: no cover - fairseq missing or broken
        return None
    kernel = data_utils.batch_by_size
    if getattr(kernel, "_fairseq_eb_complete", False):
        kernel = kernel.__wrapped__
    indices, sizes = np.arange(10, dtype=np.int64), np.full(10, 2, dtype=np.int64)
    try:
        batches = kernel(indices, lambda i: 2, num_tokens_vec=sizes, max_sentences=4, required_batch_size_multiple=4)
    except Exception:  # pragma: no cover - a kernel with another signature
        return None
    return sum(len(b) for b in batches) < len(indices)


def apply() -> None:
    """Install the load-stage patches that are switched on and apply here (see :mod:`fairseq_eb.patches`)."""
    from fairseq_eb import patches

    patches.apply("load")
