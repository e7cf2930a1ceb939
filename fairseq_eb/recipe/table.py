"""``python -m fairseq_eb.recipe.table``: the reference experiment (docs/method.md §6) as one resumable command.

For each method and seed: fairseq-train (after the configuration's one pre-training, if it has one), two
checkpoint selections (valid BLEU of beam-1 decoding, the main one, and valid loss; see
:mod:`fairseq_eb.recipe.selection`), fairseq-generate on the test split at each beam size, score with
:mod:`fairseq_eb.scoring`; then mean ± std over seeds as Markdown tables, a JSON with every number, and a PNG
plot. Method settings tuned by :mod:`fairseq_eb.recipe.sweep` (on valid) come in with ``--chosen``.
Re-running the same command skips every finished step, so an interrupted recipe just continues.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from fairseq_eb import atomic
from fairseq_eb.choices import check_choice
from fairseq_eb.recipe import aggregate, curves, floor, init_from, translation_report
from fairseq_eb.recipe import progress as progress_mod
from fairseq_eb.recipe.checkpoints import DamagedCheckpoint
from fairseq_eb.recipe.configs import CONFIGS, get_config
from fairseq_eb.recipe.data_files import DamagedData, check_binarized
from fairseq_eb.recipe.input_checks import check_floor_cache, check_run_options, load_chosen_checked
from fairseq_eb.recipe.logged_command import StepFailed, Stopped, echo, resume_children, stop_children
from fairseq_eb.recipe.methods import METHODS, STAGE_METHODS, check_methods, check_stage_methods, reference_of
from fairseq_eb.recipe.pretrain import PretrainSpec, check_pretrain_data
from fairseq_eb.recipe.run_steps import (
    RunSpec,
    SettingsMismatch,
    check_settings,
    data_fingerprint,
    execute,
    generated_path,
    train,
)
from fairseq_eb.recipe.selection import SELECTIONS, NonFiniteValidation, Validation
from fairseq_eb.runlock import RunLock, RunLocked
from fairseq_eb.scoring import intervals
from fairseq_eb.scoring.metrics import METRIC_TITLES

# variant name of a method run with the configuration's own settings
DEFAULT_VARIANT = "default"


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
    p.add_argument("--methods", nargs="+", default=[m for m in METHODS if m not in STAGE_METHODS],
                   help=f"any of {' '.join(METHODS)} (default: all but the stage methods {' '.join(STAGE_METHODS)}, "
                   "which continue the baseline for the configuration's stage budget)")
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
    p.add_argument("--chosen", type=Path, default=None,
                   help="chosen.json of a sweep (python -m fairseq_eb.recipe.sweep): each method's settings tuned "
                   "on valid replace the configuration's defaults")
    p.add_argument("--test-subset", default="test",
                   help="the split decoded and scored (default test; e.g. ood, an extra test set of prep.ddtp)")
    p.add_argument("--runs", type=Path, default=None, metavar="DIR",
                   help="where the runs live (default OUT/runs): a second --out can score the same runs on another "
                   "--test-subset without training again")
    p.add_argument("--init-from", type=Path, default=None, metavar="CHECKPOINT",
                   help="fine-tune every run from this fairseq checkpoint (e.g. bart.base/model.pt): its architecture "
                   "and model options replace the configuration's, its dictionary must be DATA/bin's, and the "
                   "configuration's own pre-training is skipped (fairseq_eb/recipe/init_from.py)")
    return p


def validate(args: argparse.Namespace) -> None:
    """Fail early, naming the option and its valid values."""
    cfg = get_config(args.config)
    args.methods = check_methods(args.methods)
    check_stage_methods(args.methods, cfg)
    check_choice("--tokenize", args.tokenize, floor.TOKENIZE_CHOICES)
    check_choice("--device", args.device, ("auto", "cpu", "cuda"))
    if not args.beams or any(b < 1 for b in args.beams):
        raise ValueError(f"--beams must be integers >= 1, got {args.beams}")
    if not args.seeds or any(s < 0 for s in args.seeds):
        raise ValueError(f"--seeds must be integers >= 0 (at least one), got {args.seeds}")
    if args.chosen is not None and not args.chosen.is_file():
        raise FileNotFoundError(f"--chosen {args.chosen}: no such file (a sweep writes OUT/sweep/chosen.json)")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} exists and is not a directory")
    if args.jobs < 1 or args.threads < 0:
        raise ValueError(f"--jobs must be >= 1 and --threads >= 0, got {args.jobs} and {args.threads}")
    for needed in ("dict.src.txt", "train.src-tgt.src.bin", "valid.src-tgt.src.bin",
                   f"{args.test_subset}.src-tgt.src.bin"):
        if not (args.data / "bin" / needed).exists():
            raise FileNotFoundError(
                f"--data {args.data}: missing bin/{needed}; prepare the data first "
                "(python -m fairseq_eb.prep.binarize --data DIR ...)")
    check_binarized(args.data / "bin")  # a truncated .bin/.idx: one line now, not a crash inside a training
    args.beams = sorted(set(args.beams))
    args.seeds = list(dict.fromkeys(args.seeds))
    # read once here: every run's model options and --finetune-from-model come from it (make_specs)
    args.init = init_from.setup(args.init_from, args.data) if getattr(args, "init_from", None) else None


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
    test = args.test_subset
    if not all((raw / f).exists() for f in ("valid.src", "valid.tgt", f"{test}.src", f"{test}.tgt")):
        echo(f"[floor] {raw}/{{valid,{test}}}.{{src,tgt}} not found: no trivial floor in the table")
        return None
    cache = args.out / "floor.json"
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved.get("tokenize") == args.tokenize and saved.get("data") == str(args.data.resolve()):
            return saved
    from fairseq_eb.scoring import score

    k, scores, by_k = floor.choose_and_score(raw, args.tokenize, score, test)
    result = {"k": k, "scores": scores, "valid_rouge_l_by_k": by_k, "tokenize": args.tokenize,
              "data": str(args.data.resolve())}
    if get_config(args.config).scores == "translation":  # a translation's floor: the source copied unchanged
        from fairseq_eb.scoring.translation import translation_scores

        result["copy_source"] = translation_scores(floor.read_lines(raw / f"{test}.src"),
                                                   floor.read_lines(raw / f"{test}.tgt"))
    atomic.write_json(cache, result)
    echo(f"[floor] first {k} source {'words' if args.tokenize == 'word' else 'characters'} "
         f"(K chosen on valid): test ROUGE-L {scores['rouge-l']:.2f}")
    return result


def load_chosen(path: Optional[Path]) -> Dict[str, Dict[str, object]]:
    """method -> {"variant": name, "args": [...]} from a sweep's chosen.json (empty without one); a malformed
    file is a ValueError naming it (fairseq_eb.recipe.input_checks)."""
    return {} if path is None else load_chosen_checked(path)


def pretrain_spec(args: argparse.Namespace) -> Optional[PretrainSpec]:
    """The configuration's one pre-training (run alone, on every core), or None when it has none or every run
    fine-tunes from ``--init-from``."""
    cfg = get_config(args.config)
    user = getattr(args, "init", None)
    if user is not None:
        echo(f"[recipe] every run fine-tunes from --init-from {user.checkpoint} ({' '.join(user.model_options)})"
             + ("; the configuration's own pre-training is skipped" if cfg.pretrain_args else ""))
        return None
    if not cfg.pretrain_args:
        return None
    check_pretrain_data(args.data)
    return PretrainSpec(data_dir=args.data, run_dir=args.out / "pretrain", cfg=cfg,
                        device_args=device_args(args.device), threads=args.threads or (os.cpu_count() or 1))


def init_fields(spec: Optional[PretrainSpec]) -> Dict[str, object]:
    """RunSpec fields that make every run fine-tune from the pre-training (and part of its identity)."""
    return {} if spec is None else {"init_checkpoint": spec.checkpoint, "init_settings": spec.settings()}


def make_specs(args: argparse.Namespace, variants: Optional[Dict[str, List[Dict[str, object]]]] = None,
               subset: Optional[str] = None, selections: Optional[Sequence[str]] = None,
               init: Optional[Dict[str, object]] = None, diagnose: bool = True) -> List[RunSpec]:
    """One RunSpec per method × variant × seed, under OUT/runs/<method>/<variant>/seed<S>.

    ``variants``: method -> [{"variant", "args"}]; a method without an entry runs the configuration's own
    settings (variant ``default``). The same directory serves a sweep (valid) and a table (test).
    With ``--init-from`` (``args.init``), the checkpoint's model options replace the configuration's and every run
    fine-tunes from it (:mod:`fairseq_eb.recipe.init_from`).
    """
    cfg = get_config(args.config)
    user = getattr(args, "init", None)
    if user is not None:
        cfg, init = user.config(cfg), user.run_fields()
    subset = subset or getattr(args, "test_subset", "test")
    selections = selections or cfg.selections
    runs_dir = getattr(args, "runs", None) or args.out / "runs"
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    dev = device_args(args.device)
    extra = shlex.split(args.train_args)
    variants = variants or {}
    specs = []
    for s in args.seeds:
        for m in args.methods:
            for v in variants.get(m, [{"variant": DEFAULT_VARIANT, "args": []}]):
                specs.append(RunSpec(method=m, seed=s, data_dir=args.data,
                                     run_dir=runs_dir / m / str(v["variant"]) / f"seed{s}", cfg=cfg,
                                     beams=args.beams, tokenize=args.tokenize, device_args=dev,
                                     extra_train_args=extra, threads=threads, variant_args=tuple(v["args"]),
                                     subset=subset, selections=tuple(selections), diagnose=diagnose,
                                     **(init or {})))
    # seed by seed (an interrupted table still has whole seeds), most expensive method first within a seed
    # (GP's double backward) so parallel workers finish at about the same time
    specs = [_continuing(sp, specs) if sp.method in STAGE_METHODS else sp for sp in specs]
    order = {s: i for i, s in enumerate(args.seeds)}
    return sorted(specs, key=lambda sp: (order[sp.seed], -cfg.cost.get(sp.method, 1.0)))


def _continuing(stage: RunSpec, specs: Sequence[RunSpec]) -> RunSpec:
    """A stage run starts from the main-selection checkpoint of the same seed's baseline run (part of its
    identity: another baseline makes another stage run)."""
    base = next(sp for sp in specs if sp.method == "baseline" and sp.seed == stage.seed)
    return dataclasses.replace(stage, init_checkpoint=base.checkpoint, init_settings={"continues": base.settings()})


def identity(args: argparse.Namespace, chosen: Dict[str, Dict[str, object]]) -> Dict[str, object]:
    """What makes two invocations the same experiment (methods, seeds and beams may grow)."""
    ident = {"data": data_fingerprint(args.data), "config": args.config, "tokenize": args.tokenize,
             "train_args": args.train_args, "device": args.device, "chosen": chosen}
    if getattr(args, "test_subset", "test") != "test":  # only then: the identity of earlier results is unchanged
        ident["test_subset"] = args.test_subset
    if getattr(args, "init", None) is not None:  # the user's checkpoint, by content
        ident["init_from"] = args.init.sha256
    return ident


def check_identity(args: argparse.Namespace, ident: Dict[str, object]) -> None:
    """Refuse to overwrite another experiment's table, JSON, floor and plot in ``--out``."""
    path = args.out / "results.json"
    if not path.exists():
        return
    saved = json.loads(path.read_text()).get("identity")
    if saved is None:
        raise SettingsMismatch(f"{path} was written by another version of the recipe; use a new --out directory")
    differ = sorted(k for k in set(saved) | set(ident) if saved.get(k) != json.loads(json.dumps(ident)).get(k))
    if differ:
        raise SettingsMismatch(f"{args.out} holds results of another experiment ({', '.join(differ)} differ); "
                               "use a new --out directory, or delete its results.json to replace them")


def run_all(specs: Sequence[RunSpec], jobs: int) -> Dict[RunSpec, Dict[str, object]]:
    """Execute the runs, ``jobs`` at a time, stage runs after the runs they continue; every failure is reported,
    then the first is re-raised."""
    results, errors = {}, []
    for phase in ([sp for sp in specs if sp.method not in STAGE_METHODS],
                  [sp for sp in specs if sp.method in STAGE_METHODS]):
        if errors:
            break
        pool = ThreadPoolExecutor(max_workers=jobs)
        try:
            futures = {pool.submit(execute, sp): sp for sp in phase}
            for fut in as_completed(futures):
                sp = futures[fut]
                try:
                    results[sp] = fut.result()
                except Stopped:
                    pass
                except Exception as exc:  # keep the other runs going; report all at the end
                    errors.append(exc)
                    echo(f"[{sp.tag}] FAILED: {exc}", sys.stderr)
        except BaseException:  # a signal: stop the children first, or the workers never finish
            stop_children()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    if errors:
        raise errors[0]
    return results


def collect(results, selection: str) -> Dict[str, Dict[int, Dict[int, Dict[str, float]]]]:
    """scores[method][beam][seed] of one checkpoint selection."""
    scores: Dict[str, Dict[int, Dict[int, Dict[str, float]]]] = {}
    for sp, res in results.items():
        for beam, sc in res["by_selection"].get(selection, {}).items():
            scores.setdefault(sp.method, {}).setdefault(int(beam), {})[sp.seed] = sc
    return scores


def diagnostics(results) -> Dict[str, Dict[str, object]]:
    """method -> {"delta_nll_own": (mean, std), "model_error": (mean, std)} over seeds (runs that were diagnosed)."""
    values: Dict[str, Dict[str, List[float]]] = {}
    for sp, res in results.items():
        head = res.get("diagnosis")
        if not head:
            continue
        values.setdefault(sp.method, {}).setdefault("delta_nll_own", []).append(float(head["delta_nll_own"]))
        model_error = head["model_error"].get(1, head["model_error"].get("1"))
        values[sp.method].setdefault("model_error", []).append(float(model_error))
    return {m: {k: aggregate.mean_std(v) for k, v in d.items()} for m, d in values.items()}


def selection_note(config: str) -> str:
    """Which checkpoint the main selection is: the configuration decides (``--eval-bleu`` or not)."""
    if "--eval-bleu" in get_config(config).train_args:
        return "Checkpoints selected by the validation BLEU of beam-1 decoding (fairseq `--eval-bleu`)."
    return (f"Checkpoints selected by validation loss (config `{config}` has no `--eval-bleu`: "
            "`checkpoint_best.pt` is fairseq's lowest-loss checkpoint).")


def reference_repetition(args) -> float:
    """% of the test references that repeat a word bigram (what natural titles do)."""
    from fairseq_eb.diagnose.repetition import repeated_ngram_share

    refs = args.data / "raw" / f"{getattr(args, 'test_subset', 'test')}.tgt"
    if not refs.exists():
        return float("nan")
    return 100.0 * repeated_ngram_share(refs.read_text(encoding="utf-8").splitlines(), 2, args.tokenize)


def paired_intervals(args, results, selection: str = "bleu") -> Dict[str, Dict[int, Dict[str, object]]]:
    """method -> beam -> the two 95% intervals of its ROUGE-L gain over the baseline (one checkpoint selection),
    on the seeds both have (:mod:`fairseq_eb.scoring.intervals`); per-sentence scores come from the test
    decodings."""
    import numpy as np

    from fairseq_eb.scoring import read_generate_output, rouge_l_per_sentence

    runs = {(sp.method, sp.seed): sp for sp in results}
    spm = args.data / "spm.model"
    cache: Dict[tuple, np.ndarray] = {}

    def per_sentence(method: str, seed: int, beam: int) -> np.ndarray:
        if (method, seed, beam) not in cache:
            path = generated_path(runs[method, seed], beam, selection)
            hyps, refs = read_generate_output(str(path), spm_model=str(spm) if spm.exists() else None)
            cache[method, seed, beam] = np.array(rouge_l_per_sentence(hyps, refs, args.tokenize))
        return cache[method, seed, beam]

    out: Dict[str, Dict[int, Dict[str, object]]] = {}
    for m in args.methods:
        ref = reference_of(m)
        seeds = [s for s in args.seeds if (m, s) in runs and (ref, s) in runs]
        if m == "baseline" or not seeds:
            continue
        for beam in args.beams:
            rows = [per_sentence(m, s, beam) - per_sentence(ref, s, beam) for s in seeds]
            boot = intervals.sentence_bootstrap(np.stack(rows))
            seed_ci = intervals.seed_interval([float(r.mean()) for r in rows])
            out.setdefault(m, {})[beam] = {"seeds": seeds, "seed_interval": seed_ci, "bootstrap": boot,
                                           "verdict": intervals.verdict(seed_ci, (boot["lo"], boot["hi"]))}
    return out


def intervals_markdown(found: Dict[str, Dict[int, Dict[str, object]]], methods: Sequence[str],
                       beams: Sequence[int]) -> List[str]:
    """The "how sure" table under the paired differences (empty without a method paired with the baseline)."""
    if not found:
        return []
    n = next(iter(next(iter(found.values())).values()))["bootstrap"]["sentences"]
    lines = [f"How sure: 95% intervals of that difference. *seeds*: Student t over the per-seed differences "
             f"(training randomness, this test set); *sentences*: paired bootstrap over the {n:,} test sentences, "
             f"{intervals.BOOTSTRAP_SAMPLES:,} resamples (which sentences the test set holds, these trainings). "
             "A gain or loss is established only when both intervals lie on one side of 0.", "",
             "| method | " + " | ".join(f"beam {b}" for b in beams) + " |", "|" + "---|" * (1 + len(beams))]
    for m in methods:
        if m in found:
            cells = [intervals.interval_cell(found[m][b]["seed_interval"], found[m][b]["bootstrap"]) for b in beams]
            lines.append(f"| {METHODS[m]} | " + " | ".join(cells) + " |")
    return lines + [""]


def validation_curves(args, results) -> str:
    """curves.md: every run's validation curve and whether it ended by early stopping (recipe.curves)."""
    max_update = curves.max_update_of(get_config(args.config).train_args)
    rows = []
    for sp, res in sorted(results.items(), key=lambda kv: (args.methods.index(kv[0].method), kv[0].seed)):
        validations = [Validation(**v) for v in res["selection"].get("validations", [])]
        selected = (res["selection"].get("bleu") or res["selection"].get("loss") or {}).get("num_updates")
        log = sp.run_dir / "train.log"
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        rows.append(curves.Curve(METHODS[sp.method], sp.seed, validations, selected,
                                 curves.ended_by(text, validations, max_update)))
    metric = "bleu" if any(v.bleu is not None for c in rows for v in c.validations) else "loss"
    return (f"# Validation curves (config `{args.config}`, up to {max_update:,} updates)\n\n"
            + curves.curves_markdown(rows, metric))


def selection_warnings(results) -> List[str]:
    """The recipe's warnings about its checkpoint selections (:func:`fairseq_eb.recipe.noise.warnings_for`)."""
    from fairseq_eb.recipe.noise import warnings_for

    out: List[str] = []
    for sp, res in sorted(results.items(), key=lambda kv: (kv[0].method, kv[0].seed)):
        chosen = res["selection"].get("bleu")
        if not chosen:
            continue
        validations = [Validation(**v) for v in res["selection"].get("validations", [])]
        out += warnings_for(f"{METHODS[sp.method]} seed {sp.seed}", validations, int(chosen["num_updates"]),
                            res.get("noise"), sp.method == "baseline")
    return out


def noise_markdown(results) -> List[str]:
    """How noisy the valid-BLEU selection was: per method, the paired-bootstrap standard error of the valid BLEU
    difference between the selected checkpoint and its neighbour, and how many validations were that close."""
    rows: Dict[str, List[Dict[str, object]]] = {}
    for sp, res in results.items():
        if res.get("noise"):
            rows.setdefault(sp.method, []).append(res["noise"])
    if not rows:
        return []
    n = next(iter(rows.values()))[0]["sentences"]
    lines = ["", "## How noisy is the selection?", "",
             f"Valid BLEU (beam 1, {n:,} sentences) of the selected checkpoint minus that of its neighbouring "
             "validation, with the standard error of that difference from a paired bootstrap over the valid "
             "sentences (1,000 resamples, fairseq_eb.recipe.noise); *close* = other validations within 1.96 "
             "standard errors of the best (a selection among them is a coin toss).", "",
             "| method | runs | difference | se of the difference | se of one checkpoint's BLEU | close (mean) |",
             "|---|---|---|---|---|---|"]
    for m in METHODS:
        if m in rows:
            r = rows[m]
            def mean(key: str) -> float:
                return sum(float(x[key]) for x in r) / len(r)
            close = sum(len(x["close_to_best"]) for x in r) / len(r)
            lines.append(f"| {METHODS[m]} | {len(r)} | {mean('diff'):+.2f} | {mean('se_diff'):.2f} | "
                         f"{mean('se_a'):.2f} | {close:.1f} |")
    warnings = selection_warnings(results)
    if warnings:
        lines += ["", "Warnings:", *[f"- {w}" for w in warnings]]
    return lines + [""]


def translation_sections(args, results, summaries, floor_result) -> Tuple[List[str], Dict[str, object]]:
    """The translation report (:mod:`fairseq_eb.recipe.translation_report`) of every checkpoint selection decoded."""
    from fairseq_eb.scoring import read_generate_output

    runs = {(sp.method, sp.seed): sp for sp in results}
    spm = args.data / "spm.model"
    titles = {"bleu": "Checkpoints selected by the valid BLEU of beam-1 decoding",
              "loss": "Checkpoints selected by validation loss",
              "avg": f"Average of the last {get_config(args.config).average_last} checkpoints"}
    copy = (floor_result or {}).get("copy_source")
    md = ["## Translation scores", "",
          "sacreBLEU " + ", ".join(f"{k}: `{v}`" for k, v in (copy or {}).get("signatures", {}).items()) + ".", ""]
    record: Dict[str, object] = {"summary": {}, "copy_source": copy}
    for sel, summary in summaries.items():
        def load(method: str, seed: int, beam: int, sel: str = sel):
            path = generated_path(runs[method, seed], beam, sel)
            return read_generate_output(str(path), spm_model=str(spm) if spm.exists() else None)

        stats = translation_report.SentenceStats(load)
        lines, rec = translation_report.report(summary, stats, list(runs), args.methods, METHODS, args.beams,
                                               titles.get(sel, sel), copy)
        md += lines
        record["summary"][sel] = {m: {b: {k: summary[m][b][k] for k in translation_report.SUMMARY_KEYS}
                                      for b in args.beams} for m in args.methods}
        record[sel] = rec
    return md, record


def write_outputs(args, results, floor_result, wall_s: float, ident: Dict[str, object],
                  chosen: Dict[str, Dict[str, object]], pretrain: Optional[Dict[str, object]] = None) -> str:
    """table.md, curves.md, results.json and plot.png under OUT; returns the table's Markdown text."""
    from fairseq_eb.recipe.plot import plot_summary

    cfg = get_config(args.config)
    translation = cfg.scores == "translation"
    metrics = [k for k, _ in METRIC_TITLES] + ["repeat-2"] + (translation_report.SUMMARY_KEYS if translation else [])
    summaries = {sel: aggregate.summarise(collect(results, sel), metrics) for sel in SELECTIONS
                 if results and all(sel in res["by_selection"] for res in results.values())}
    summary = summaries["bleu"]
    labels = METHODS
    name = args.name or args.data.resolve().name
    floor_scores = floor_result["scores"] if floor_result else None
    floor_label = (f"first {floor_result['k']} source {'words' if args.tokenize == 'word' else 'chars'}"
                   if floor_result else "")
    seeds_txt = ", ".join(map(str, args.seeds))
    settings = [f"- {labels[m]}: {' '.join(chosen[m]['args']) or 'the configuration defaults'} "
                f"(variant `{chosen[m]['variant']}`, chosen on valid)" for m in args.methods if m in chosen]
    subset = getattr(args, "test_subset", "test")
    md = [f"# {name}: {' vs '.join(labels[m] for m in args.methods)} (config `{args.config}`, "
          f"seeds {seeds_txt}, {subset} split, mean ± std over seeds, scores × 100, {args.tokenize}-level)", "",
          selection_note(args.config), "",
          *([f"Every run fine-tuned from `--init-from {args.init.checkpoint}` (`{' '.join(args.init.model_options)}`, "
             f"sha256 {args.init.sha256[:12]}…); the configuration's model options and pre-training were not used.",
             ""] if getattr(args, "init", None) is not None else []),
          aggregate.reference_table(summary, args.methods, labels, args.beams, name), "",
          aggregate.long_table(summary, args.methods, labels, args.beams, floor_scores, floor_label), "",
          "ROUGE-L of each method minus the baseline's, paired by seed (mean ± std of the per-seed differences; "
          f"a method that changes nothing still goes up in all {len(args.seeds)} seeds 1 time in "
          f"{2 ** len(args.seeds)}):",
          "", aggregate.paired_table(summary, args.methods, labels, args.beams), ""]
    found = paired_intervals(args, results)
    md += intervals_markdown(found, args.methods, args.beams)
    if settings:
        md += ["Method settings tuned on valid (`--chosen`):", *settings, ""]
    md += ["## Exposure-bias diagnostics", "",
           aggregate.diagnostics_table(summary, diagnostics(results), args.methods, labels, args.beams), "",
           "repeated 2-gram = % of test outputs that repeat a word bigram (references: "
           f"{reference_repetition(args):.2f}%); ΔNLL = increase of the gold token's NLL (nats) right after a "
           "decoder input replaced by the model's own argmax (r = 0.3 of the inputs) vs gold inputs, on the first "
           "200 valid sentences; model err. = share of those sentences whose reference the model scores below its "
           "own beam-1 output (fairseq-eb-diagnose, docs/diagnose.md).", ""]
    if "loss" in summaries:
        md += ["## Checkpoints selected by validation loss (teacher-forced)", "",
               aggregate.long_table(summaries["loss"], args.methods, labels, args.beams, floor_scores, floor_label),
               ""]
        same = sum(1 for res in results.values() if res["selection"].get("same"))
        md.append(f"Both selections picked the same checkpoint in {same} of {len(results)} runs.")
    found_avg = {}
    if "avg" in summaries:
        k = get_config(args.config).average_last
        found_avg = paired_intervals(args, results, "avg")
        md += ["", f"## Average of the last {k} checkpoints (no selection by a noisy validation)", "",
               f"The weights of the run's last {k} interval checkpoints averaged (fairseq_eb.recipe.averaging): the "
               "same rule for every method and seed, so no validation noise decides it.", "",
               aggregate.long_table(summaries["avg"], args.methods, labels, args.beams, floor_scores, floor_label),
               "", "ROUGE-L of each method minus the baseline's, paired by seed:", "",
               aggregate.paired_table(summaries["avg"], args.methods, labels, args.beams), ""]
        md += intervals_markdown(found_avg, args.methods, args.beams)
    translation_record = None
    if translation:
        sections, translation_record = translation_sections(args, results, summaries, floor_result)
        md += sections
    md += noise_markdown(results)
    if floor_result:
        md.append(f"Trivial floor: the first {floor_result['k']} source tokens (K chosen on valid) score "
                  f"ROUGE-L {floor_scores['rouge-l']:.2f} on test.")
    train_walls = [res["train"].get("wall_s", 0.0) for res in results.values()]
    cpu_note = f"; pre-training {pretrain['wall_s'] / 60:.1f} min" if pretrain and "wall_s" in pretrain else ""
    md.append(f"Recipe wall time this invocation: {wall_s / 60:.1f} min; training wall per run "
              f"(when it ran): {', '.join(f'{w / 60:.1f}' for w in train_walls)} min{cpu_note}.")
    md.append("Validation curves of every run (early stopping or budget end): `curves.md`.")
    text = "\n".join(md) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(args.out / "table.md", text)
    warnings = selection_warnings(results)
    atomic.write_text(args.out / "curves.md", validation_curves(args, results)
                      + "".join(f"\nWarning: {w}\n" for w in warnings))
    for w in warnings:
        echo(f"[recipe] warning: {w}", sys.stderr)
    plot_summary(summary, args.methods, labels, args.beams, args.out / "plot.png",
                 f"{name} — config {args.config}, seeds {seeds_txt}", floor_scores)
    payload = {
        "identity": ident, "data": str(args.data.resolve()), "name": name, "config": args.config,
        "config_description": cfg.description, "methods": args.methods, "seeds": args.seeds, "beams": args.beams,
        "tokenize": args.tokenize, "chosen": chosen, "summary": summary, "summary_by_selection": summaries,
        "floor": floor_result, "pretrain": pretrain, "wall_s": round(wall_s, 1),
        "init_from": args.init.record() if getattr(args, "init", None) is not None else None,
        "diagnostics": diagnostics(results),
        "paired_rouge_l": {m: {b: aggregate.paired_delta(summary, m, b) for b in args.beams}
                           for m in args.methods if m != "baseline"},
        "intervals_rouge_l": found, "intervals_rouge_l_avg": found_avg, "translation": translation_record,
        "test_subset": subset,
        "runs": {f"{sp.method}/seed{sp.seed}": {"train": res["train"], "diagnosis": res.get("diagnosis"), "selection": {
                     k: res["selection"][k] for k in ("bleu", "loss", "same")},
                 "scores": res["scores"], "scores_by_selection": res["by_selection"],
                 "averaging": res.get("averaging"), "noise": res.get("noise"),
                 "train_command": " ".join(map(shlex.quote, sp.train_command()))}
                 for sp, res in sorted(results.items(), key=lambda kv: (kv[0].method, kv[0].seed))},
    }
    atomic.write_json(args.out / "results.json", payload)  # last: the whole table is done
    return text


def step_totals(specs: Sequence[RunSpec], pre: Optional[object]) -> Dict[str, int]:
    """How many trainings, decodings and scorings the recipe makes (progress.Progress)."""
    decodings = sum(len(sp.beams) * len([s for s in sp.selections if s != "avg" or sp.cfg.average_last])
                    for sp in specs)
    return {"trainings": len(specs) + (1 if pre else 0), "decodings": decodings, "scorings": decodings}


class Interrupted(Exception):
    """SIGINT or SIGTERM reached the recipe."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, _frame: object) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the clean stop short
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def resume_command(argv: Optional[Sequence[str]]) -> str:
    """The command line that continues this recipe."""
    given = list(sys.argv[1:] if argv is None else argv)
    return " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable), "-m", "fairseq_eb.recipe.table", *given])


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the recipe under ``--out``'s run lock; SIGINT/SIGTERM stop every child and exit 130/143."""
    args = build_parser().parse_args(argv)
    try:
        validate(args)
        chosen = load_chosen(args.chosen)
        ident = identity(args, chosen)
        check_identity(args, ident)  # before anything in OUT is written (floor.json included)
        check_floor_cache(args.out, args.data)
    except (ValueError, FileNotFoundError, SettingsMismatch) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lock = RunLock(args.out, "--out", say=lambda m: echo(m, sys.stderr))
    handlers = {}
    try:
        lock.acquire()
        if threading_main():
            handlers = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
        resume_children()
        return _locked_main(args, chosen, ident)
    except Interrupted as exc:
        stop_children()
        done = progress_mod.current()
        echo(f"[recipe] interrupted by {exc}: {done.summary() if done else 'nothing finished yet'}; every finished "
             f"step is kept, resume with: {resume_command(argv)}", sys.stderr)
        return 128 + exc.signum
    except (RunLocked, DamagedCheckpoint, DamagedData, NonFiniteValidation, atomic.DiskWriteError, StepFailed) as exc:
        stop_children()
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, RunLocked) else 1
    except OSError as exc:
        if exc.errno not in atomic.DISK_ERRNOS:
            raise
        stop_children()
        print(f"error: {atomic.disk_error(exc, exc.filename or args.out)}", file=sys.stderr)
        return 1
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)
        progress_mod.set_current(None)
        lock.release()


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _locked_main(args: argparse.Namespace, chosen: Dict[str, Dict[str, object]], ident: Dict[str, object]) -> int:
    removed = atomic.remove_leftovers(args.out) if args.out.exists() else 0
    if removed:
        echo(f"[recipe] removed {removed} temporary file(s) an interrupted run left in {args.out}")
    start = time.time()
    variants = {m: [v] for m, v in chosen.items()}
    try:
        pre = pretrain_spec(args)
        specs = make_specs(args, variants, init=init_fields(pre))
        # every run's options parse before any settings.json is written (a fixed option then just works)
        check_run_options([pre, *specs] if pre else specs, args.train_args, args.chosen)
        for sp in [pre, *specs] if pre else specs:  # before any work: refuse to mix runs made with other settings
            check_settings(sp)
    except (ValueError, SettingsMismatch, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    floor_result = compute_floor(args)
    progress_mod.set_current(progress_mod.Progress(step_totals(specs, pre), echo))
    pretrain_record = train(pre) if pre else None
    echo(f"[recipe] {len(specs)} runs ({', '.join(args.methods)} × seeds {args.seeds}), config {args.config}, "
         f"{args.jobs} in parallel × {specs[0].threads} threads; logs under {args.out / 'runs'}")
    results = run_all(specs, args.jobs)
    text = write_outputs(args, results, floor_result, time.time() - start, ident, chosen, pretrain_record)
    echo("\n" + text)
    echo(f"[recipe] wrote {args.out / 'table.md'}, {args.out / 'results.json'}, {args.out / 'plot.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
