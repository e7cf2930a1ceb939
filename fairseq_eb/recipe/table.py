"""``python -m fairseq_eb.recipe.table``: the reference experiment (docs/method.md §6) as one resumable command.

For each method and seed: fairseq-train (checkpoint_best.pt = lowest validation loss), fairseq-generate
on the test split at each beam size, score with :mod:`fairseq_eb.scoring`; then mean ± std over seeds as
a Markdown table in the reference layout, a JSON with every number, and a PNG plot. Re-running the same
command skips every finished step, so an interrupted recipe just continues.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from fairseq_eb.choices import check_choice
from fairseq_eb.recipe import aggregate, floor
from fairseq_eb.recipe.configs import CONFIGS, get_config
from fairseq_eb.recipe.methods import METHODS, check_methods
from fairseq_eb.recipe.runner import echo
from fairseq_eb.recipe.runs import RunSpec, SettingsMismatch, check_settings, execute
from fairseq_eb.scoring.metrics import METRIC_TITLES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fairseq_eb.recipe.table",
        description="Train baseline / RR / GP / RR+GP for several seeds, decode at several beam sizes, "
        "score and print a mean ± std table (resumable: finished steps are skipped).",
    )
    p.add_argument("--data", required=True, type=Path,
                   help="prepared data directory: DIR/bin (fairseq-preprocess output, langs src/tgt), "
                   "optional DIR/spm.model (to detokenise) and DIR/raw/{valid,test}.{src,tgt} (for the floor)")
    p.add_argument("--out", required=True, type=Path, help="output directory (runs/, table.md, results.json, plot.png)")
    p.add_argument("--config", default="demo", help=f"named configuration: {', '.join(CONFIGS)} (default demo)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), help=f"any of {' '.join(METHODS)} (default all)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2], help="training seeds (default 1 2)")
    p.add_argument("--beams", nargs="+", type=int, default=[1, 2, 3], help="beam sizes (default 1 2 3)")
    p.add_argument("--tokenize", default="word", help="scoring tokenisation: word (spaces) or char (Chinese)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained in parallel (default 1)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads per run (default: CPU cores // jobs, at least 1)")
    p.add_argument("--device", default="auto", help="auto (GPU if available), cpu or cuda")
    p.add_argument("--train-args", default="", help="extra fairseq-train options for every run, one string")
    p.add_argument("--name", default="", help="data name in the table (default: the data directory's name)")
    p.add_argument("--no-floor", action="store_true", help="skip the first-K-source-words floor")
    return p


def validate(args: argparse.Namespace) -> None:
    """Fail early, naming the option and its valid values."""
    get_config(args.config)
    args.methods = check_methods(args.methods)
    check_choice("--tokenize", args.tokenize, floor.TOKENIZE_CHOICES)
    check_choice("--device", args.device, ("auto", "cpu", "cuda"))
    if not args.beams or any(b < 1 for b in args.beams):
        raise ValueError(f"--beams must be integers >= 1, got {args.beams}")
    if not args.seeds:
        raise ValueError("--seeds needs at least one seed")
    if args.jobs < 1 or args.threads < 0:
        raise ValueError(f"--jobs must be >= 1 and --threads >= 0, got {args.jobs} and {args.threads}")
    for needed in ("dict.src.txt", "train.src-tgt.src.bin", "valid.src-tgt.src.bin", "test.src-tgt.src.bin"):
        if not (args.data / "bin" / needed).exists():
            raise FileNotFoundError(
                f"--data {args.data}: missing bin/{needed}; prepare the data first "
                "(python -m fairseq_eb.prep.binarize --data DIR ...)")
    args.beams = sorted(set(args.beams))
    args.seeds = list(dict.fromkeys(args.seeds))


def device_args(device: str) -> List[str]:
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return ["--cpu"] if device == "cpu" else []


def compute_floor(args: argparse.Namespace) -> Optional[Dict[str, object]]:
    """The first-K floor, cached in OUT/floor.json; None when skipped or DIR/raw is missing."""
    raw = args.data / "raw"
    if args.no_floor:
        return None
    if not all((raw / f).exists() for f in ("valid.src", "valid.tgt", "test.src", "test.tgt")):
        echo(f"[floor] {raw}/{{valid,test}}.{{src,tgt}} not found: no trivial floor in the table")
        return None
    cache = args.out / "floor.json"
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved.get("tokenize") == args.tokenize and saved.get("data") == str(args.data.resolve()):
            return saved
    from fairseq_eb.scoring import score

    k, scores, by_k = floor.choose_and_score(raw, args.tokenize, score)
    result = {"k": k, "scores": scores, "valid_rouge_l_by_k": by_k, "tokenize": args.tokenize,
              "data": str(args.data.resolve())}
    cache.write_text(json.dumps(result, indent=1) + "\n")
    echo(f"[floor] first {k} source {'words' if args.tokenize == 'word' else 'characters'} "
         f"(K chosen on valid): test ROUGE-L {scores['rouge-l']:.2f}")
    return result


def make_specs(args: argparse.Namespace) -> List[RunSpec]:
    cfg = get_config(args.config)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    dev = device_args(args.device)
    extra = shlex.split(args.train_args)
    specs = [RunSpec(method=m, seed=s, data_dir=args.data, run_dir=args.out / "runs" / m / f"seed{s}", cfg=cfg,
                     beams=args.beams, tokenize=args.tokenize, device_args=dev, extra_train_args=extra,
                     threads=threads)
             for s in args.seeds for m in args.methods]
    # seed by seed (an interrupted table still has whole seeds), most expensive method first within a seed
    # (GP's double backward) so parallel workers finish at about the same time
    order = {s: i for i, s in enumerate(args.seeds)}
    return sorted(specs, key=lambda sp: (order[sp.seed], -cfg.cost.get(sp.method, 1.0)))


def run_all(specs: Sequence[RunSpec], jobs: int) -> Dict[RunSpec, Dict[str, object]]:
    """Execute the runs, ``jobs`` at a time; every failure is reported, then the first is re-raised."""
    results, errors = {}, []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(execute, sp): sp for sp in specs}
        for fut in as_completed(futures):
            sp = futures[fut]
            try:
                results[sp] = fut.result()
            except Exception as exc:  # keep the other runs going; report all at the end
                errors.append(exc)
                echo(f"[{sp.tag}] FAILED: {exc}", sys.stderr)
    if errors:
        raise errors[0]
    return results


def write_outputs(args, specs, results, floor_result, wall_s: float) -> str:
    """table.md, results.json and plot.png under OUT; returns the Markdown text."""
    from fairseq_eb.recipe.plot import plot_summary

    scores: Dict[str, Dict[int, Dict[int, Dict[str, float]]]] = {}
    for sp, res in results.items():
        for beam, sc in res["scores"].items():
            scores.setdefault(sp.method, {}).setdefault(beam, {})[sp.seed] = sc
    metrics = [k for k, _ in METRIC_TITLES]
    summary = aggregate.summarise(scores, metrics)
    labels = METHODS
    name = args.name or args.data.resolve().name
    floor_scores = floor_result["scores"] if floor_result else None
    floor_label = (f"first {floor_result['k']} source {'words' if args.tokenize == 'word' else 'chars'}"
                   if floor_result else "")
    seeds_txt = ", ".join(map(str, args.seeds))
    md = [f"# {name}: {' vs '.join(labels[m] for m in args.methods)} (config `{args.config}`, "
          f"seeds {seeds_txt}, test split, mean ± std over seeds, scores × 100, {args.tokenize}-level)", "",
          aggregate.reference_table(summary, args.methods, labels, args.beams, name), "",
          aggregate.long_table(summary, args.methods, labels, args.beams, floor_scores, floor_label), ""]
    if floor_result:
        md.append(f"Trivial floor: the first {floor_result['k']} source tokens (K chosen on valid) score "
                  f"ROUGE-L {floor_scores['rouge-l']:.2f} on test.")
    train_walls = [res["train"].get("wall_s", 0.0) for res in results.values()]
    md.append(f"Recipe wall time this invocation: {wall_s / 60:.1f} min; training wall per run "
              f"(when it ran): {', '.join(f'{w / 60:.1f}' for w in train_walls)} min.")
    text = "\n".join(md) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(text)
    plot_summary(summary, args.methods, labels, args.beams, args.out / "plot.png",
                 f"{name} — config {args.config}, seeds {seeds_txt}", floor_scores)
    cfg = get_config(args.config)
    payload = {
        "data": str(args.data.resolve()), "name": name, "config": args.config, "config_description": cfg.description,
        "methods": args.methods, "seeds": args.seeds, "beams": args.beams, "tokenize": args.tokenize,
        "summary": summary, "floor": floor_result, "wall_s": round(wall_s, 1),
        "runs": {f"{sp.method}/seed{sp.seed}": {"train": res["train"], "scores": res["scores"],
                                               "train_command": " ".join(map(shlex.quote, sp.train_command()))}
                 for sp, res in sorted(results.items(), key=lambda kv: (kv[0].method, kv[0].seed))},
    }
    (args.out / "results.json").write_text(json.dumps(payload, indent=1) + "\n")
    return text


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        validate(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    start = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    floor_result = compute_floor(args)
    specs = make_specs(args)
    try:
        for sp in specs:  # before any work: refuse to mix runs made with other settings
            check_settings(sp)
    except SettingsMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    echo(f"[recipe] {len(specs)} runs ({', '.join(args.methods)} × seeds {args.seeds}), config {args.config}, "
         f"{args.jobs} in parallel × {specs[0].threads} threads; logs under {args.out / 'runs'}")
    results = run_all(specs, args.jobs)
    text = write_outputs(args, specs, results, floor_result, time.time() - start)
    echo("\n" + text)
    echo(f"[recipe] wrote {args.out / 'table.md'}, {args.out / 'results.json'}, {args.out / 'plot.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
