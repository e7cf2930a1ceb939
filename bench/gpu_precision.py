"""GPU check: the plugin's methods under fairseq's mixed precision (``--fp16``, ``--amp``) against fp32.

Why: the exact penalty differentiates twice through fp16 activations and a custom attention, FGM adds a
perturbation in the embeddings' dtype, and the model pool decodes with the half-precision model; none of it
can be checked on a CPU. Each method × precision trains the recipe's configuration for a few hundred
updates (same seed, same batches) with fairseq's own trainer; the check passes when every run finishes,
its loss is finite, its loss-scale overflows stay few, and its final loss (and penalty) is within a
tolerance of the fp32 run's.

Usage: python bench/gpu_precision.py --data DIR [--config converged] [--updates 200] [--json out.json]
"""
import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from fairseq_eb.recipe.configs import get_config
from fairseq_eb.recipe.run_steps import RunSpec

# (label, recipe method, the method's own extra options)
CASES = [
    ("gp-exact", "gp", ["--gp-method", "exact"]),
    ("gp-fgm", "gp", ["--gp-method", "fgm"]),
    ("rr", "rr", []),
    ("ss-model-pool", "ss", ["--replace-schedule", "constant"]),
]
PRECISIONS = {"fp32": [], "fp16": ["--fp16"], "amp": ["--amp"]}
INNER = re.compile(r"train_inner \|.*")


def field(line: str, name: str) -> float:
    m = re.search(rf"\b{name}=([-0-9.e+naif]+)", line)
    return float(m.group(1)) if m else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--config", default="converged")
    ap.add_argument("--updates", type=int, default=200)
    ap.add_argument("--rel-tol", type=float, default=0.05, help="allowed |loss - fp32 loss| / fp32 loss")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    cfg = get_config(args.config)
    short = ["--max-update", str(args.updates), "--disable-validation", "--no-save",
             "--log-interval", str(max(1, args.updates // 4))]
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, method, extra in CASES:
            for prec, flags in PRECISIONS.items():
                spec = RunSpec(method=method, seed=1, data_dir=args.data, run_dir=Path(tmp) / f"{label}-{prec}",
                               cfg=cfg, beams=[1], tokenize="word", device_args=[], variant_args=extra,
                               extra_train_args=short + flags)
                log = Path(tmp) / f"{label}-{prec}.log"
                runs[(label, prec)] = (log, subprocess.Popen(spec.train_command(), stdout=open(log, "w"),
                                                             stderr=subprocess.STDOUT))
        results, failures = {}, []
        for (label, prec), (log, proc) in runs.items():
            rc = proc.wait()
            text = log.read_text()
            inner = INNER.findall(text)
            last = inner[-1] if inner else ""
            res = {"rc": rc, "loss": field(last, "loss"), "gp": field(last, "gp"),
                   "overflows": text.count("gradient overflow detected"),
                   "traceback": "Traceback" in text}
            results[f"{label}/{prec}"] = res
            if rc != 0 or res["traceback"] or not math.isfinite(res["loss"]):
                failures.append(f"{label}/{prec}: exit {rc}, loss {res['loss']}")
                print(text[-2500:], file=sys.stderr)
    print(f"config {args.config}, {args.updates} updates, seed 1; last logged interval")
    print(f"{'case':16s} {'prec':5s} {'loss':>8s} {'vs fp32':>8s} {'gp':>10s} {'overflows':>9s}")
    for (label, prec) in runs:
        r, ref = results[f"{label}/{prec}"], results[f"{label}/fp32"]
        rel = abs(r["loss"] - ref["loss"]) / ref["loss"] if math.isfinite(ref["loss"]) else float("nan")
        r["rel_to_fp32"] = rel
        if prec != "fp32" and not rel <= args.rel_tol:
            failures.append(f"{label}/{prec}: loss {r['loss']:.3f} vs fp32 {ref['loss']:.3f}")
        print(f"{label:16s} {prec:5s} {r['loss']:8.3f} {rel:8.3f} {r['gp']:10.4g} {r['overflows']:9d}")
    if args.json:
        Path(args.json).write_text(json.dumps({"config": args.config, "updates": args.updates, "results": results,
                                               "failures": failures}, indent=1) + "\n")
    print("FAIL:\n  " + "\n  ".join(failures) if failures else "ok: every method trains under fp16 and amp")


if __name__ == "__main__":
    main()
