"""Benchmark: how the gradient penalty's step cost relative to the plain step grows with sequence length.

Same model as ``bench/bench_gp.py`` (fairseq transformer 3+3, d=256, 8k shared vocabulary), batches of
4,096 target tokens whose source and target sentences all have length ``T`` (``bsz = 4096 / T``). For every
``T`` the plain criterion, the exact penalty (``--gp-over lookups``) and FGM run interleaved round by
round in one process on the same batch, the exact penalty twice: with the blockwise attention
(``--gp-attention blockwise``, the CPU default) and with SDPA's math backend (``--gp-attention math``, the CUDA
default and the implementation before issue 11). The table gives each one's median
step time (``zero_grad`` + criterion forward + ``backward``; on CPU the calling thread's CPU time,
less sensitive to other processes on shared cores) and profiled peak of live tensor bytes
(``bench_gp.profiled_peak``; on
CUDA ``torch.cuda.max_memory_allocated``) as ratios to the plain step of the same ``T``.

Usage: OMP_NUM_THREADS=1 python bench/bench_gp_length.py [--lengths 32 128 512] [--steps 3] [--threads 1]
       [--cuda] [--json out.json]
"""
import argparse
import copy
import json
import os
import statistics
import sys
import time
from typing import Dict, List

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_gp  # noqa: E402  (model, criteria and the CPU peak-memory profiler)

TOKENS = 4096
METHODS = ["label_smoothed_cross_entropy", "gp exact/lookups", "gp fgm/lookups", "gp exact/lookups, math attention"]  # noqa: E501
_STEP = bench_gp.step  # profiled_peak calls bench_gp.step, which peak() redirects here
MATH = METHODS[-1]  # --gp-attention math: SDPA's math backend for the penalty's forward (before issue 11)


def step(model, crits, name, sample) -> None:
    return _STEP(model, crits[name], sample)


def with_attentions(crits: dict) -> dict:
    """The exact penalty twice: blockwise attention (the CPU default) and SDPA's math backend (the CUDA
    default), whatever the device (``--gp-attention``)."""
    crits[METHODS[1]].gp_attention = "blockwise"
    crits[MATH] = copy.copy(crits[METHODS[1]])
    crits[MATH].gp_attention = "math"
    return crits


def batch(d, length: int, device: torch.device) -> dict:
    """One fairseq-collater-shaped batch of ``TOKENS // length`` sentences, source and target of ``length``."""
    g = torch.Generator().manual_seed(length)
    bsz = TOKENS // length
    src = torch.randint(d.nspecial, len(d), (bsz, length), generator=g)
    src[:, -1] = d.eos()
    tgt = torch.randint(d.nspecial, len(d), (bsz, length), generator=g)
    tgt[:, -1] = d.eos()
    prev = torch.cat([torch.full((bsz, 1), d.eos()), tgt[:, :-1]], dim=1)
    sample = {"id": torch.arange(bsz), "nsentences": bsz, "ntokens": int(tgt.numel()), "target": tgt,
              "net_input": {"src_tokens": src, "src_lengths": torch.full((bsz,), length), "prev_output_tokens": prev}}
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in sample.items()} | {
        "net_input": {k: v.to(device) for k, v in sample["net_input"].items()}}


def peak(model, crits, name, sample, cuda: bool) -> float:
    """Peak live tensor bytes of one step, in MiB."""
    if not cuda:
        original = bench_gp.step
        bench_gp.step = lambda model, crit, sample: step(model, crits, name, sample)
        try:
            return bench_gp.profiled_peak(model, None, sample)["peak_total_mb"]
        finally:
            bench_gp.step = original
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step(model, crits, name, sample)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def measure(length: int, steps: int, model, crits, d, device) -> Dict[str, dict]:
    cuda = device.type == "cuda"
    sample = batch(d, length, device)
    for name in METHODS:  # warm-up
        step(model, crits, name, sample)
    times: Dict[str, List[float]] = {name: [] for name in METHODS}
    cpu: Dict[str, List[float]] = {name: [] for name in METHODS}
    for _ in range(steps):
        for name in METHODS:
            if cuda:
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.thread_time()
            step(model, crits, name, sample)
            if cuda:
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.thread_time() - c0)
    return {name: {"median_s": statistics.median(times[name]), "times_s": times[name],
                   "cpu_median_s": statistics.median(cpu[name]), "cpu_s": cpu[name],
                   "peak_mb": peak(model, crits, name, sample, cuda)} for name in METHODS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[32, 128, 512])
    ap.add_argument("--steps", type=int, default=3, help="timed steps per method and length")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--cuda", action="store_true", help="run on the GPU (fused SDPA kernels, CUDA peak memory)")
    ap.add_argument("--json", default=None, help="also write the raw figures here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.cuda else "cpu")
    d, model, crits = bench_gp.build()
    crits = with_attentions(crits)
    model.to(device)
    results = {T: measure(T, args.steps, model, crits, d, device) for T in args.lengths}
    print(f"model: 3+3 layers, d=256, vocab {bench_gp.VOCAB}; {TOKENS} target tokens per batch; "
          f"torch {torch.__version__}, "
          f"{'cuda ' + torch.cuda.get_device_name() if args.cuda else f'CPU, {torch.get_num_threads()} thread(s)'}, "
          f"median of {args.steps} steps")
    clock = "median_s" if args.cuda else "cpu_median_s"  # CPU: time of the calling thread (shared cores)
    print(f"time = {'wall' if args.cuda else 'thread CPU'} time of a step; ratios to the plain step of the same T")
    print("| T (bsz) | plain time | plain peak | exact, blockwise time | blockwise peak | fgm/lookups time | fgm peak "
          "| exact, math attention time | math peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for T, r in results.items():
        base = r[METHODS[0]]
        cells = [f"{T} ({TOKENS // T})", f"{base[clock] * 1000:.0f} ms", f"{base['peak_mb']:.0f} MiB"]
        for name in METHODS[1:]:
            cells += [f"{r[name][clock] / base[clock]:.2f}×", f"{r[name]['peak_mb'] / base['peak_mb']:.2f}×"]
        print("| " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({str(T): r for T, r in results.items()}, f, indent=1)


if __name__ == "__main__":
    main()
