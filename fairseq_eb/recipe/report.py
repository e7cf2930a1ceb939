"""The table recipe's report: table.md, curves.md, results.json and plot.png from the finished runs.

Why apart from the orchestration (:mod:`fairseq_eb.recipe.table`): what a table says and how the runs are made
change for different reasons; this module only reads the runs' results and the
:class:`~fairseq_eb.recipe.experiment.Experiment`, and writes nothing but the report files.
"""
from __future__ import annotations

import shlex
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from fairseq_eb import atomic
from fairseq_eb.recipe import aggregate, curves, translation_report
from fairseq_eb.recipe.configs import get_config
from fairseq_eb.recipe.experiment import Experiment
from fairseq_eb.recipe.logged_command import echo
from fairseq_eb.recipe.methods import METHODS, reference_of
from fairseq_eb.recipe.run_steps import RunSpec, generated_path
from fairseq_eb.recipe.selection import SELECTIONS, Validation
from fairseq_eb.scoring import intervals
from fairseq_eb.scoring.metrics import METRIC_TITLES

Results = Dict[RunSpec, Dict[str, object]]


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


def reference_repetition(exp) -> float:
    """% of the test references that repeat a word bigram (what natural titles do)."""
    from fairseq_eb.diagnose.repetition import repeated_ngram_share

    refs = exp.data / "raw" / f"{exp.test_subset}.tgt"
    if not refs.exists():
        return float("nan")
    return 100.0 * repeated_ngram_share(refs.read_text(encoding="utf-8").splitlines(), 2, exp.tokenize)


def paired_intervals(exp, results, selection: str = "bleu") -> Dict[str, Dict[int, Dict[str, object]]]:
    """method -> beam -> the two 95% intervals of its ROUGE-L gain over the baseline (one checkpoint selection),
    on the seeds both have (:mod:`fairseq_eb.scoring.intervals`); per-sentence scores come from the test
    decodings."""
    import numpy as np

    from fairseq_eb.scoring import read_generate_output, rouge_l_per_sentence

    runs = {(sp.method, sp.seed): sp for sp in results}
    spm = exp.data / "spm.model"
    cache: Dict[tuple, np.ndarray] = {}

    def per_sentence(method: str, seed: int, beam: int) -> np.ndarray:
        if (method, seed, beam) not in cache:
            path = generated_path(runs[method, seed], beam, selection)
            hyps, refs = read_generate_output(str(path), spm_model=str(spm) if spm.exists() else None)
            cache[method, seed, beam] = np.array(rouge_l_per_sentence(hyps, refs, exp.tokenize))
        return cache[method, seed, beam]

    out: Dict[str, Dict[int, Dict[str, object]]] = {}
    for m in exp.methods:
        ref = reference_of(m)
        seeds = [s for s in exp.seeds if (m, s) in runs and (ref, s) in runs]
        if m == "baseline" or not seeds:
            continue
        for beam in exp.beams:
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


def validation_curves(exp, results) -> str:
    """curves.md: every run's validation curve and whether it ended by early stopping (recipe.curves)."""
    max_update = curves.max_update_of(exp.cfg.train_args)
    rows = []
    for sp, res in sorted(results.items(), key=lambda kv: (exp.methods.index(kv[0].method), kv[0].seed)):
        validations = [Validation(**v) for v in res["selection"].get("validations", [])]
        selected = (res["selection"].get("bleu") or res["selection"].get("loss") or {}).get("num_updates")
        log = sp.run_dir / "train.log"
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        rows.append(curves.Curve(METHODS[sp.method], sp.seed, validations, selected,
                                 curves.ended_by(text, validations, max_update)))
    metric = "bleu" if any(v.bleu is not None for c in rows for v in c.validations) else "loss"
    return (f"# Validation curves (config `{exp.config}`, up to {max_update:,} updates)\n\n"
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


def translation_sections(exp, results, summaries, floor_result) -> Tuple[List[str], Dict[str, object]]:
    """The translation report (:mod:`fairseq_eb.recipe.translation_report`) of every checkpoint selection decoded."""
    from fairseq_eb.scoring import read_generate_output

    runs = {(sp.method, sp.seed): sp for sp in results}
    spm = exp.data / "spm.model"
    titles = {"bleu": "Checkpoints selected by the valid BLEU of beam-1 decoding",
              "loss": "Checkpoints selected by validation loss",
              "avg": f"Average of the last {exp.cfg.average_last} checkpoints"}
    copy = (floor_result or {}).get("copy_source")
    md = ["## Translation scores", "",
          "sacreBLEU " + ", ".join(f"{k}: `{v}`" for k, v in (copy or {}).get("signatures", {}).items()) + ".", ""]
    record: Dict[str, object] = {"summary": {}, "copy_source": copy}
    for sel, summary in summaries.items():
        def load(method: str, seed: int, beam: int, sel: str = sel):
            path = generated_path(runs[method, seed], beam, sel)
            return read_generate_output(str(path), spm_model=str(spm) if spm.exists() else None)

        stats = translation_report.SentenceStats(load)
        lines, rec = translation_report.report(summary, stats, list(runs), exp.methods, METHODS, exp.beams,
                                               titles.get(sel, sel), copy)
        md += lines
        record["summary"][sel] = {m: {b: {k: summary[m][b][k] for k in translation_report.SUMMARY_KEYS}
                                      for b in exp.beams} for m in exp.methods}
        record[sel] = rec
    return md, record


def summaries_of(exp: Experiment, results: Results) -> Dict[str, Dict]:
    """Per checkpoint selection every run decoded: method -> beam -> metric -> mean ± std over seeds."""
    metrics = [k for k, _ in METRIC_TITLES] + ["repeat-2"]
    if exp.cfg.scores == "translation":
        metrics += translation_report.SUMMARY_KEYS
    return {sel: aggregate.summarise(collect(results, sel), metrics) for sel in SELECTIONS
            if results and all(sel in res["by_selection"] for res in results.values())}


def _floor(exp: Experiment, floor_result: Optional[Dict[str, object]]) -> Tuple[Optional[Dict], str]:
    """The floor's scores and its row label (None and "" without a floor)."""
    if not floor_result:
        return None, ""
    return floor_result["scores"], f"first {floor_result['k']} source {'words' if exp.tokenize == 'word' else 'chars'}"


def _head_lines(exp: Experiment, summary: Dict, floor_result, chosen: Dict[str, Dict[str, object]],
                found: Dict) -> List[str]:
    """Title, the main selection's tables, its paired gains and intervals, and the tuned settings."""
    labels, methods, beams = METHODS, exp.methods, exp.beams
    floor_scores, floor_label = _floor(exp, floor_result)
    init = exp.init
    md = [f"# {exp.title}: {' vs '.join(labels[m] for m in methods)} (config `{exp.config}`, "
          f"seeds {', '.join(map(str, exp.seeds))}, {exp.test_subset} split, mean ± std over seeds, scores × 100, "
          f"{exp.tokenize}-level)", "",
          selection_note(exp.config), "",
          *([f"Every run fine-tuned from `--init-from {init.checkpoint}` (`{' '.join(init.model_options)}`, "
             f"sha256 {init.sha256[:12]}…); the configuration's model options and pre-training were not used.",
             ""] if init is not None else []),
          aggregate.reference_table(summary, methods, labels, beams, exp.title), "",
          aggregate.long_table(summary, methods, labels, beams, floor_scores, floor_label), "",
          "ROUGE-L of each method minus the baseline's, paired by seed (mean ± std of the per-seed differences; "
          f"a method that changes nothing still goes up in all {len(exp.seeds)} seeds 1 time in "
          f"{2 ** len(exp.seeds)}):",
          "", aggregate.paired_table(summary, methods, labels, beams), ""]
    md += intervals_markdown(found, methods, beams)
    settings = [f"- {labels[m]}: {' '.join(chosen[m]['args']) or 'the configuration defaults'} "
                f"(variant `{chosen[m]['variant']}`, chosen on valid)" for m in methods if m in chosen]
    if settings:
        md += ["Method settings tuned on valid (`--chosen`):", *settings, ""]
    return md


def _diagnostics_lines(exp: Experiment, results: Results, summary: Dict) -> List[str]:
    return ["## Exposure-bias diagnostics", "",
            aggregate.diagnostics_table(summary, diagnostics(results), exp.methods, METHODS, exp.beams), "",
            "repeated 2-gram = % of test outputs that repeat a word bigram (references: "
            f"{reference_repetition(exp):.2f}%); ΔNLL = increase of the gold token's NLL (nats) right after a "
            "decoder input replaced by the model's own argmax (r = 0.3 of the inputs) vs gold inputs, on the first "
            "200 valid sentences; model err. = share of those sentences whose reference the model scores below its "
            "own beam-1 output (fairseq-eb-diagnose, docs/diagnose.md).", ""]


def _other_selections_lines(exp: Experiment, results: Results, summaries: Dict, floor_result,
                            found_avg: Dict) -> List[str]:
    """The valid-loss selection and the checkpoint average, where the runs decoded them."""
    floor_scores, floor_label = _floor(exp, floor_result)
    methods, beams = exp.methods, exp.beams
    md: List[str] = []
    if "loss" in summaries:
        md += ["## Checkpoints selected by validation loss (teacher-forced)", "",
               aggregate.long_table(summaries["loss"], methods, METHODS, beams, floor_scores, floor_label), ""]
        same = sum(1 for res in results.values() if res["selection"].get("same"))
        md.append(f"Both selections picked the same checkpoint in {same} of {len(results)} runs.")
    if "avg" in summaries:
        k = exp.cfg.average_last
        md += ["", f"## Average of the last {k} checkpoints (no selection by a noisy validation)", "",
               f"The weights of the run's last {k} interval checkpoints averaged (fairseq_eb.recipe.averaging): the "
               "same rule for every method and seed, so no validation noise decides it.", "",
               aggregate.long_table(summaries["avg"], methods, METHODS, beams, floor_scores, floor_label),
               "", "ROUGE-L of each method minus the baseline's, paired by seed:", "",
               aggregate.paired_table(summaries["avg"], methods, METHODS, beams), ""]
        md += intervals_markdown(found_avg, methods, beams)
    return md


def _tail_lines(results: Results, floor_result, wall_s: float, pretrain: Optional[Dict[str, object]]) -> List[str]:
    md = noise_markdown(results)
    if floor_result:
        md.append(f"Trivial floor: the first {floor_result['k']} source tokens (K chosen on valid) score "
                  f"ROUGE-L {floor_result['scores']['rouge-l']:.2f} on test.")
    train_walls = [res["train"].get("wall_s", 0.0) for res in results.values()]
    cpu_note = f"; pre-training {pretrain['wall_s'] / 60:.1f} min" if pretrain and "wall_s" in pretrain else ""
    md.append(f"Recipe wall time this invocation: {wall_s / 60:.1f} min; training wall per run "
              f"(when it ran): {', '.join(f'{w / 60:.1f}' for w in train_walls)} min{cpu_note}.")
    md.append("Validation curves of every run (early stopping or budget end): `curves.md`.")
    return md


def _runs_record(results: Results) -> Dict[str, object]:
    return {f"{sp.method}/seed{sp.seed}": {
        "train": res["train"], "diagnosis": res.get("diagnosis"),
        "selection": {k: res["selection"][k] for k in ("bleu", "loss", "same")},
        "scores": res["scores"], "scores_by_selection": res["by_selection"], "averaging": res.get("averaging"),
        "noise": res.get("noise"), "train_command": " ".join(map(shlex.quote, sp.train_command()))}
        for sp, res in sorted(results.items(), key=lambda kv: (kv[0].method, kv[0].seed))}


def write_outputs(exp: Experiment, results: Results, floor_result, wall_s: float, ident: Dict[str, object],
                  chosen: Dict[str, Dict[str, object]], pretrain: Optional[Dict[str, object]] = None) -> str:
    """table.md, curves.md, results.json and plot.png under OUT; returns the table's Markdown text."""
    from fairseq_eb.recipe.plot import plot_summary

    summaries = summaries_of(exp, results)
    summary = summaries["bleu"]
    found = paired_intervals(exp, results)
    found_avg = paired_intervals(exp, results, "avg") if "avg" in summaries else {}
    md = _head_lines(exp, summary, floor_result, chosen, found) + _diagnostics_lines(exp, results, summary)
    md += _other_selections_lines(exp, results, summaries, floor_result, found_avg)
    translation_record = None
    if exp.cfg.scores == "translation":
        sections, translation_record = translation_sections(exp, results, summaries, floor_result)
        md += sections
    md += _tail_lines(results, floor_result, wall_s, pretrain)
    text = "\n".join(md) + "\n"
    exp.out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(exp.out / "table.md", text)
    warnings = selection_warnings(results)
    atomic.write_text(exp.out / "curves.md", validation_curves(exp, results)
                      + "".join(f"\nWarning: {w}\n" for w in warnings))
    for w in warnings:
        echo(f"[recipe] warning: {w}", sys.stderr)
    plot_summary(summary, exp.methods, METHODS, exp.beams, exp.out / "plot.png",
                 f"{exp.title} — config {exp.config}, seeds {', '.join(map(str, exp.seeds))}",
                 _floor(exp, floor_result)[0])
    payload = {
        "identity": ident, "data": str(exp.data.resolve()), "name": exp.title, "config": exp.config,
        "config_description": exp.cfg.description, "methods": exp.methods, "seeds": exp.seeds, "beams": exp.beams,
        "tokenize": exp.tokenize, "chosen": chosen, "summary": summary, "summary_by_selection": summaries,
        "floor": floor_result, "pretrain": pretrain, "wall_s": round(wall_s, 1),
        "init_from": exp.init.record() if exp.init is not None else None,
        "diagnostics": diagnostics(results),
        "paired_rouge_l": {m: {b: aggregate.paired_delta(summary, m, b) for b in exp.beams}
                           for m in exp.methods if m != "baseline"},
        "intervals_rouge_l": found, "intervals_rouge_l_avg": found_avg, "translation": translation_record,
        "test_subset": exp.test_subset, "runs": _runs_record(results),
    }
    atomic.write_json(exp.out / "results.json", payload)  # last: the whole table is done
    return text
