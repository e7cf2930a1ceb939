"""``python -m fairseq_eb.recipe.table``: the reference experiment (docs/method.md §6) as one resumable command.

For each method and seed: fairseq-train (after the configuration's one pre-training, if it has one), two
checkpoint selections (valid BLEU of beam-1 decoding, the main one, and valid loss; see
:mod:`fairseq_eb.recipe.selection`), fairseq-generate on the test split at each beam size, score with
:mod:`fairseq_eb.scoring`; then mean ± std over seeds as Markdown tables, a JSON with every number, and a PNG
plot. Method settings tuned by :mod:`fairseq_eb.recipe.sweep` (on valid) come in with ``--chosen``.
Re-running the same command skips every finished step, so an interrupted recipe just continues.

This module is the command line and the orchestration: :func:`validate` turns the command line into an
:class:`~fairseq_eb.recipe.experiment.Experiment`, the runs are :class:`~fairseq_eb.recipe.run_steps.RunSpec`
objects, and the report (Markdown, JSON, plot) is :mod:`fairseq_eb.recipe.report`'s.
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
from typing import Dict, List, Optional, Sequence

from fairseq_eb import atomic
from fairseq_eb.choices import check_choice
from fairseq_eb.recipe import floor, init_from
from fairseq_eb.recipe import progress as progress_mod
from fairseq_eb.recipe.checkpoints import DamagedCheckpoint
from fairseq_eb.recipe.configs import CONFIGS, get_config
from fairseq_eb.recipe.data_files import DamagedData, check_binarized
from fairseq_eb.recipe.experiment import Experiment
from fairseq_eb.recipe.input_checks import check_floor_cache, check_run_options, load_chosen_checked
from fairseq_eb.recipe.logged_command import StepFailed, Stopped, echo, resume_children, stop_children
from fairseq_eb.recipe.methods import (
    DEFAULT_VARIANT,
    METHODS,
    REGISTRY,
    STAGE_METHODS,
    check_methods,
    check_stage_methods,
    methods_help,
)
from fairseq_eb.recipe.pretrain import PretrainSpec, check_pretrain_data
from fairseq_eb.recipe.report import selection_note, write_outputs  # noqa: F401  (selection_note: re-exported)
from fairseq_eb.recipe.run_steps import (
    RunSpec,
    SettingsMismatch,
    check_settings,
    data_fingerprint,
    execute,
    train,
)
from fairseq_eb.recipe.selection import NonFiniteValidation
from fairseq_eb.runlock import RunLock, RunLocked


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
                   f"which continue the baseline for the configuration's stage budget). {methods_help()}")
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


def validate(args: argparse.Namespace) -> Experiment:
    """The checked :class:`Experiment` of a parsed command line; fails early, naming the option and what is valid."""
    cfg = get_config(args.config)
    methods = check_methods(args.methods)
    check_stage_methods(methods, cfg)
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
    return Experiment(
        data=args.data, out=args.out, config=args.config, methods=methods, seeds=list(dict.fromkeys(args.seeds)),
        beams=sorted(set(args.beams)), tokenize=args.tokenize, jobs=args.jobs, threads=args.threads,
        device=args.device, train_args=args.train_args, name=args.name, no_floor=args.no_floor, chosen=args.chosen,
        test_subset=args.test_subset, runs=args.runs,
        # read once here: every run's model options and --finetune-from-model come from it (make_specs)
        init=init_from.setup(args.init_from, args.data) if args.init_from else None)


def device_args(device: str) -> List[str]:
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return ["--cpu"] if device == "cpu" else []


def compute_floor(exp: Experiment) -> Optional[Dict[str, object]]:
    """The first-K floor, cached in OUT/floor.json; None when skipped or DIR/raw is missing."""
    raw = exp.data / "raw"
    if exp.no_floor:
        return None
    test = exp.test_subset
    if not all((raw / f).exists() for f in ("valid.src", "valid.tgt", f"{test}.src", f"{test}.tgt")):
        echo(f"[floor] {raw}/{{valid,{test}}}.{{src,tgt}} not found: no trivial floor in the table")
        return None
    cache = exp.out / "floor.json"
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved.get("tokenize") == exp.tokenize and saved.get("data") == str(exp.data.resolve()):
            return saved
    from fairseq_eb.scoring import score

    k, scores, by_k = floor.choose_and_score(raw, exp.tokenize, score, test)
    result = {"k": k, "scores": scores, "valid_rouge_l_by_k": by_k, "tokenize": exp.tokenize,
              "data": str(exp.data.resolve())}
    if exp.cfg.scores == "translation":  # a translation's floor: the source copied unchanged
        from fairseq_eb.scoring.translation import translation_scores

        result["copy_source"] = translation_scores(floor.read_lines(raw / f"{test}.src"),
                                                   floor.read_lines(raw / f"{test}.tgt"))
    atomic.write_json(cache, result)
    echo(f"[floor] first {k} source {'words' if exp.tokenize == 'word' else 'characters'} "
         f"(K chosen on valid): test ROUGE-L {scores['rouge-l']:.2f}")
    return result


def load_chosen(path: Optional[Path]) -> Dict[str, Dict[str, object]]:
    """method -> {"variant": name, "args": [...]} from a sweep's chosen.json (empty without one); a malformed
    file is a ValueError naming it (fairseq_eb.recipe.input_checks)."""
    return {} if path is None else load_chosen_checked(path)


def pretrain_spec(exp: Experiment) -> Optional[PretrainSpec]:
    """The configuration's one pre-training (run alone, on every core), or None when it has none or every run
    fine-tunes from ``--init-from``."""
    cfg = exp.cfg
    user = exp.init
    if user is not None:
        echo(f"[recipe] every run fine-tunes from --init-from {user.checkpoint} ({' '.join(user.model_options)})"
             + ("; the configuration's own pre-training is skipped" if cfg.pretrain_args else ""))
        return None
    if not cfg.pretrain_args:
        return None
    check_pretrain_data(exp.data)
    return PretrainSpec(data_dir=exp.data, run_dir=exp.out / "pretrain", cfg=cfg,
                        device_args=device_args(exp.device), threads=exp.threads or (os.cpu_count() or 1))


def init_fields(spec: Optional[PretrainSpec]) -> Dict[str, object]:
    """RunSpec fields that make every run fine-tune from the pre-training (and part of its identity)."""
    return {} if spec is None else {"init_checkpoint": spec.checkpoint, "init_settings": spec.settings()}


def make_specs(exp: Experiment, variants: Optional[Dict[str, List[Dict[str, object]]]] = None,
               subset: Optional[str] = None, selections: Optional[Sequence[str]] = None,
               init: Optional[Dict[str, object]] = None, diagnose: bool = True) -> List[RunSpec]:
    """One RunSpec per method × variant × seed, under OUT/runs/<method>/<variant>/seed<S>.

    ``variants``: method -> [{"variant", "args"}]; a method without an entry runs the configuration's own
    settings (variant ``default``). The same directory serves a sweep (valid) and a table (test).
    With ``--init-from`` (``exp.init``), the checkpoint's model options replace the configuration's and every run
    fine-tunes from it (:mod:`fairseq_eb.recipe.init_from`).
    """
    cfg = exp.cfg
    user = exp.init
    if user is not None:
        cfg, init = user.config(cfg), user.run_fields()
    subset = subset or exp.test_subset
    selections = selections or cfg.selections
    runs_dir = exp.runs_dir
    threads = exp.threads or max(1, (os.cpu_count() or 1) // exp.jobs)
    dev = device_args(exp.device)
    extra = shlex.split(exp.train_args)
    variants = variants or {}
    specs = []
    for s in exp.seeds:
        for m in exp.methods:
            for v in variants.get(m, [{"variant": DEFAULT_VARIANT, "args": []}]):
                specs.append(RunSpec(method=m, seed=s, data_dir=exp.data,
                                     run_dir=runs_dir / m / str(v["variant"]) / f"seed{s}", cfg=cfg,
                                     beams=exp.beams, tokenize=exp.tokenize, device_args=dev,
                                     extra_train_args=extra, threads=threads, variant_args=tuple(v["args"]),
                                     subset=subset, selections=tuple(selections), diagnose=diagnose,
                                     **(init or {})))
    # seed by seed (an interrupted table still has whole seeds), most expensive method first within a seed
    # (GP's double backward) so parallel workers finish at about the same time
    specs = [_continuing(sp, specs) if sp.method in STAGE_METHODS else sp for sp in specs]
    order = {s: i for i, s in enumerate(exp.seeds)}
    return sorted(specs, key=lambda sp: (order[sp.seed], -REGISTRY[sp.method].cost))


def _continuing(stage: RunSpec, specs: Sequence[RunSpec]) -> RunSpec:
    """A stage run starts from the main-selection checkpoint of the same seed's baseline run (part of its
    identity: another baseline makes another stage run)."""
    base = next(sp for sp in specs if sp.method == "baseline" and sp.seed == stage.seed)
    return dataclasses.replace(stage, init_checkpoint=base.checkpoint, init_settings={"continues": base.settings()})


def identity(exp: Experiment, chosen: Dict[str, Dict[str, object]]) -> Dict[str, object]:
    """What makes two invocations the same experiment (methods, seeds and beams may grow)."""
    ident = {"data": data_fingerprint(exp.data), "config": exp.config, "tokenize": exp.tokenize,
             "train_args": exp.train_args, "device": exp.device, "chosen": chosen}
    if exp.test_subset != "test":  # only then: the identity of earlier results is unchanged
        ident["test_subset"] = exp.test_subset
    if exp.init is not None:  # the user's checkpoint, by content
        ident["init_from"] = exp.init.sha256
    return ident


def check_identity(exp: Experiment, ident: Dict[str, object]) -> None:
    """Refuse to overwrite another experiment's table, JSON, floor and plot in ``--out``."""
    path = exp.out / "results.json"
    if not path.exists():
        return
    saved = json.loads(path.read_text()).get("identity")
    if saved is None:
        raise SettingsMismatch(f"{path} was written by another version of the recipe; use a new --out directory")
    differ = sorted(k for k in set(saved) | set(ident) if saved.get(k) != json.loads(json.dumps(ident)).get(k))
    if differ:
        raise SettingsMismatch(f"{exp.out} holds results of another experiment ({', '.join(differ)} differ); "
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
    try:
        exp = validate(build_parser().parse_args(argv))
        chosen = load_chosen(exp.chosen)
        ident = identity(exp, chosen)
        check_identity(exp, ident)  # before anything in OUT is written (floor.json included)
        check_floor_cache(exp.out, exp.data)
    except (ValueError, FileNotFoundError, SettingsMismatch) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lock = RunLock(exp.out, "--out", say=lambda m: echo(m, sys.stderr))
    handlers = {}
    try:
        lock.acquire()
        if threading_main():
            handlers = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
        resume_children()
        return _locked_main(exp, chosen, ident)
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
        print(f"error: {atomic.disk_error(exc, exc.filename or exp.out)}", file=sys.stderr)
        return 1
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)
        progress_mod.set_current(None)
        lock.release()


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _locked_main(exp: Experiment, chosen: Dict[str, Dict[str, object]], ident: Dict[str, object]) -> int:
    removed = atomic.remove_leftovers(exp.out) if exp.out.exists() else 0
    if removed:
        echo(f"[recipe] removed {removed} temporary file(s) an interrupted run left in {exp.out}")
    start = time.time()
    variants = {m: [v] for m, v in chosen.items()}
    try:
        pre = pretrain_spec(exp)
        specs = make_specs(exp, variants, init=init_fields(pre))
        # every run's options parse before any settings.json is written (a fixed option then just works)
        check_run_options([pre, *specs] if pre else specs, exp.train_args, exp.chosen)
        for sp in [pre, *specs] if pre else specs:  # before any work: refuse to mix runs made with other settings
            check_settings(sp)
    except (ValueError, SettingsMismatch, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    exp.out.mkdir(parents=True, exist_ok=True)
    floor_result = compute_floor(exp)
    progress_mod.set_current(progress_mod.Progress(step_totals(specs, pre), echo))
    pretrain_record = train(pre) if pre else None
    echo(f"[recipe] {len(specs)} runs ({', '.join(exp.methods)} × seeds {exp.seeds}), config {exp.config}, "
         f"{exp.jobs} in parallel × {specs[0].threads} threads; logs under {exp.out / 'runs'}")
    results = run_all(specs, exp.jobs)
    text = write_outputs(exp, results, floor_result, time.time() - start, ident, chosen, pretrain_record)
    echo("\n" + text)
    echo(f"[recipe] wrote {exp.out / 'table.md'}, {exp.out / 'results.json'}, {exp.out / 'plot.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
