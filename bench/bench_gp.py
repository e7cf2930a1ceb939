"""Benchmark: step cost of ``label_smoothed_cross_entropy_with_gp`` relative to ``label_smoothed_cross_entropy``.

One run, one model, the same batches for every method. A *step* is what fairseq's ``train_step`` does
minus the optimizer: ``zero_grad`` + criterion forward + ``backward``. Methods are interleaved round by
round (so load from other processes hits all of them alike); the median wall time and the median CPU
time of the calling thread (``time.thread_time``, less sensitive to other processes on shared cores;
meaningful with ``--threads 1``) are reported.

Peak memory (CPU, no CUDA allocator stats): the autograd profiler with ``profile_memory=True`` reports
every allocation of torch's CPU allocator (attributed to the op that made it, net of frees inside the
op) and every free; the running sum over one step, in time order, gives the peak of *live tensor
bytes*, reported as the total at the peak (parameters + batch + gradients + activations; the analogue of
``torch.cuda.max_memory_allocated`` without optimizer state) and as the increase over the step's start.
"+ Adam state" adds the two fp32 moment buffers per parameter that fairseq's Adam keeps live, as a
GPU's ``max_memory_allocated`` in real training would. As a cross-check each method also runs in a
fresh subprocess that reports the rise of its RSS high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs``) over 3 steps, with glibc's mmap threshold fixed so freed tensors leave RSS.

Usage: OMP_NUM_THREADS=1 python bench/bench_gp.py [--steps 7] [--threads 1] [--json out.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List

import torch

METHODS = {
    "label_smoothed_cross_entropy": dict(gp_epsilon=0.0),
    "gp exact/lookups": dict(gp_epsilon=1.0, gp_method="exact", gp_over="lookups"),
    "gp exact/table": dict(gp_epsilon=1.0, gp_method="exact", gp_over="table"),
    "gp fgm/lookups": dict(gp_epsilon=1.0, gp_method="fgm", gp_over="lookups"),
}
MODEL = ["--arch", "transformer", "--encoder-layers", "3", "--decoder-layers", "3",
         "--encoder-embed-dim", "256", "--decoder-embed-dim", "256",
         "--encoder-ffn-embed-dim", "1024", "--decoder-ffn-embed-dim", "1024",
         "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
         "--share-all-embeddings", "--dropout", "0.1"]  # attention dropout: fairseq's default 0
VOCAB, BATCHES, BSZ = 8000, 4, 32


def build():
    from fairseq import options
    from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion
    from fairseq.data import Dictionary
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.tasks.translation import TranslationTask

    import fairseq_eb
    from fairseq_eb.criterions.label_smoothed_cross_entropy_with_gp import LabelSmoothedCrossEntropyWithGpCriterion

    fairseq_eb.register()  # the shims, as under --user-dir
    d = Dictionary()
    for i in range(VOCAB - d.nspecial):
        d.add_symbol(f"w{i}")
    d.finalize(padding_factor=8)
    args = options.parse_args_and_arch(options.get_training_parser(), ["/nonexistent", *MODEL, "--cpu"])
    task = TranslationTask(convert_namespace_to_omegaconf(args).task, d, d)
    torch.manual_seed(0)
    model = task.build_model(convert_namespace_to_omegaconf(args).model)
    model.train()
    crits = {}
    for name, kw in METHODS.items():
        if kw["gp_epsilon"] == 0:
            crits[name] = LabelSmoothedCrossEntropyCriterion(task, False, 0.1)
        else:
            crits[name] = LabelSmoothedCrossEntropyWithGpCriterion(task, False, 0.1, **kw)
    return d, model, crits


def batches(d) -> List[dict]:
    """Synthetic batches shaped like fairseq's collater: left-padded source, right-padded target."""
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(BATCHES):
        src_len = torch.randint(20, 41, (BSZ,), generator=g)
        tgt_len = torch.randint(10, 31, (BSZ,), generator=g)
        src = torch.full((BSZ, int(src_len.max())), d.pad())
        tgt = torch.full((BSZ, int(tgt_len.max())), d.pad())
        prev = tgt.clone()
        for i in range(BSZ):
            s = torch.randint(d.nspecial, len(d), (int(src_len[i]) - 1,), generator=g)
            t = torch.randint(d.nspecial, len(d), (int(tgt_len[i]) - 1,), generator=g)
            src[i, src.size(1) - len(s) - 1:-1] = s
            src[i, -1] = d.eos()
            tgt[i, :len(t)] = t
            tgt[i, len(t)] = d.eos()
            prev[i, 0] = d.eos()
            prev[i, 1:len(t) + 1] = t
        out.append({"id": torch.arange(BSZ), "nsentences": BSZ, "ntokens": int(tgt.ne(d.pad()).sum()), "target": tgt,
                    "net_input": {"src_tokens": src, "src_lengths": src.ne(d.pad()).sum(1),
                                  "prev_output_tokens": prev}})
    return out


def step(model, crit, sample) -> None:
    model.zero_grad(set_to_none=True)
    loss, _, _ = crit(model, sample)
    loss.backward()


def profiled_peak(model, crit, sample) -> Dict[str, float]:
    from torch.autograd import profiler

    model.zero_grad(set_to_none=True)
    start_live = sum(p.numel() * p.element_size() for p in model.parameters())
    start_live += sum(t.numel() * t.element_size() for t in sample["net_input"].values() if torch.is_tensor(t))
    with profiler.profile(profile_memory=True) as prof:
        step(model, crit, sample)
    events = []
    for e in prof.function_events:
        delta = e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        if delta:
            events.append((e.time_range.start, delta))
    events.sort()
    cur = peak = 0
    for _, delta in events:
        cur += delta
        peak = max(peak, cur)
    return {"peak_increase_mb": peak / 2**20, "peak_total_mb": (start_live + peak) / 2**20}


def run_timing(steps: int) -> Dict[str, dict]:
    d, model, crits = build()
    data = batches(d)
    for name, crit in crits.items():  # warm-up: one step per method and batch
        for sample in data[:2]:
            step(model, crit, sample)
    times: Dict[str, List[float]] = {name: [] for name in crits}
    cpu: Dict[str, List[float]] = {name: [] for name in crits}
    for r in range(steps):
        for name, crit in crits.items():
            sample = data[r % len(data)]
            t0, c0 = time.perf_counter(), time.thread_time()
            step(model, crit, sample)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.thread_time() - c0)
    result = {}
    for name, crit in crits.items():
        mem = profiled_peak(model, crit, data[0])
        result[name] = {"median_s": statistics.median(times[name]), "times_s": times[name],
                        "cpu_median_s": statistics.median(cpu[name]), "cpu_s": cpu[name], **mem}
    adam_mb = 2 * sum(p.numel() * 4 for p in model.parameters()) / 2**20
    for name in crits:
        result[name]["peak_total_adam_mb"] = result[name]["peak_total_mb"] + adam_mb
    result["_meta"] = {"ntokens_per_batch": [s["ntokens"] for s in data],
                       "src_tokens_per_batch": [int(s["net_input"]["src_lengths"].sum()) for s in data],
                       "params": sum(p.numel() for p in model.parameters()),
                       "threads": torch.get_num_threads(), "torch": torch.__version__}
    return result


def _status_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def rss_child(name: str) -> None:
    """Subprocess body: warm up, reset the RSS high-water mark, report its rise over 3 steps of one method.

    Run with ``MALLOC_MMAP_THRESHOLD_`` fixed (see main) so glibc returns freed tensor memory to the OS
    and RSS follows live memory instead of the allocator's cache.
    """
    import gc

    d, model, crits = build()
    data = batches(d)
    crit = crits[name]
    step(model, crit, data[1])
    model.zero_grad(set_to_none=True)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:  # Linux >= 4.0: "5" resets VmHWM to the current RSS
        f.write("5")
    before = _status_kb("VmRSS")
    for sample in data[:3]:
        step(model, crit, sample)
    print(json.dumps({"rss_before_kb": before, "hwm_after_kb": _status_kb("VmHWM")}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=7, help="timed steps per method")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--json", default=None, help="also write the raw figures here")
    ap.add_argument("--no-rss", action="store_true", help="skip the per-method RSS subprocesses")
    ap.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.rss_child:
        rss_child(args.rss_child)
        return
    result = run_timing(args.steps)
    if not args.no_rss:
        for name in METHODS:
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MALLOC_MMAP_THRESHOLD_="131072")
            out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--rss-child", name],
                                 env=env, capture_output=True, text=True, check=True).stdout
            rss = json.loads(out.strip().splitlines()[-1])
            result[name]["rss_peak_increase_mb"] = (rss["hwm_after_kb"] - rss["rss_before_kb"]) / 1024
    base = result["label_smoothed_cross_entropy"]
    meta = result["_meta"]
    print(f"model: 3+3 layers, d=256, ffn 1024, 4 heads, shared vocab {VOCAB}, {meta['params']/1e6:.2f}M params; "
          f"batches of {BSZ} sentences, target tokens {meta['ntokens_per_batch']}, "
          f"source tokens {meta['src_tokens_per_batch']}; torch {meta['torch']}, {meta['threads']} thread(s)")
    header = ("| method | step wall time (median) | × time | step CPU time (median) | × CPU | peak live tensors "
              "| × peak | + Adam state | × peak | step's peak increase | × increase |")
    if not args.no_rss:
        header += " RSS peak increase | × RSS |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in METHODS:
        r = result[name]
        line = (f"| {name} | {r['median_s']*1000:.0f} ms | {r['median_s']/base['median_s']:.2f} | "
                f"{r['cpu_median_s']*1000:.0f} ms | {r['cpu_median_s']/base['cpu_median_s']:.2f} | "
                f"{r['peak_total_mb']:.0f} MiB | {r['peak_total_mb']/base['peak_total_mb']:.2f} | "
                f"{r['peak_total_adam_mb']:.0f} MiB | {r['peak_total_adam_mb']/base['peak_total_adam_mb']:.2f} | "
                f"{r['peak_increase_mb']:.0f} MiB | {r['peak_increase_mb']/base['peak_increase_mb']:.2f} |")
        if not args.no_rss:
            rss = r["rss_peak_increase_mb"]
            line += f" {rss:.0f} MiB | {rss / base['rss_peak_increase_mb']:.2f} |"
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
