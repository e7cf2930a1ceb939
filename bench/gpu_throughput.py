"""Benchmark: training throughput of the recipe's methods when several runs share one GPU.

Why: a lent GPU comes for minutes, and a study's update budget must be one that its slowest method (the
exact penalty, double backprop) finishes in that time. This launches the recipe's own ``fairseq-train``
commands (``fairseq_eb.recipe``, a named configuration, every method × seed at once, as
``recipe.table --jobs N`` would) for a short budget without validation or checkpoints, and reports each
run's updates per second after the warm-up (fairseq's ``ups`` of the last logged interval).

Usage: python bench/gpu_throughput.py --data DIR [--config converged] [--methods baseline rr gp]
       [--seeds 1 2 3] [--updates 300] [--json out.json]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fairseq_eb.recipe.configs import get_config
from fairseq_eb.recipe.run_steps import RunSpec

UPS = re.compile(r"\bups=([0-9.]+)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="prepared data directory (DIR/bin)")
    ap.add_argument("--config", default="converged")
    ap.add_argument("--methods", nargs="+", default=["baseline", "rr", "gp"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--updates", type=int, default=300, help="updates per run (ups is read at the last log line)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    cfg = get_config(args.config)
    short = ["--max-update", str(args.updates), "--disable-validation", "--no-save", "--log-interval",
             str(max(1, args.updates // 3))]
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        for m in args.methods:
            for s in args.seeds:
                spec = RunSpec(method=m, seed=s, data_dir=args.data, run_dir=Path(tmp) / f"{m}{s}", cfg=cfg,
                               beams=[1], tokenize="word", device_args=[], extra_train_args=short)
                log = open(Path(tmp) / f"{m}{s}.log", "w")
                procs.append((m, s, log, subprocess.Popen(spec.train_command(), stdout=log, stderr=subprocess.STDOUT,
                                                          env=dict(os.environ, OMP_NUM_THREADS="1"))))
        rates = {}
        for m, s, log, p in procs:
            rc = p.wait()
            log.close()
            text = Path(log.name).read_text()
            found = UPS.findall(text)
            if rc != 0 or not found:
                print(text[-3000:], file=sys.stderr)
                raise SystemExit(f"{m} seed {s}: exit {rc}, no ups logged")
            rates.setdefault(m, []).append(float(found[-1]))
        wall = time.time() - start
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"{len(procs)} concurrent runs of config {args.config} on {device}, {args.updates} updates each, "
          f"{wall:.0f} s wall in all")
    summary = {m: {"ups_median": statistics.median(r), "ups": r} for m, r in rates.items()}
    for m, r in summary.items():
        print(f"  {m:10s} ups (last interval, per run): {' '.join(f'{x:.1f}' for x in r['ups'])} "
              f"| median {r['ups_median']:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device, "config": args.config, "runs": len(procs),
                                               "updates": args.updates, "wall_s": wall, "methods": summary},
                                              indent=1) + "\n")


if __name__ == "__main__":
    main()
