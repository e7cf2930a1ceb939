"""One (method, seed) run of the recipe: train, select, decode at each beam, score. Resumable.

Layout under ``OUT/runs/<method>/seed<S>/``: ``settings.json`` (what the run was made with; a rerun with
other settings fails instead of silently mixing), ``train.log`` + ``checkpoints/``, ``train.done``,
``selection.json`` (which update each selection picked, see :mod:`fairseq_eb.recipe.selection`),
``generate-beam<B>.txt`` / ``score-beam<B>.json`` for the main (valid-BLEU) selection and
``generate-loss-beam<B>.txt`` / ``score-loss-beam<B>.json`` for the valid-loss one. A step whose output exists
is skipped; an interrupted training resumes from ``checkpoint_last.pt`` (fairseq's own restore).
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from fairseq_eb import atomic
from fairseq_eb.recipe import progress
from fairseq_eb.recipe.archive import MARKER, is_restored
from fairseq_eb.recipe.checkpoints import check_resumable
from fairseq_eb.recipe.configs import RecipeConfig
from fairseq_eb.recipe.logged_command import StepFailed, echo, run_logged
from fairseq_eb.recipe.methods import method_args
from fairseq_eb.recipe.selection import SELECTIONS, Validation, prune_intervals, select
from fairseq_eb.user_dir import user_dir


@dataclass(frozen=True, eq=False)  # hashed by identity: used as a dict key for its results
class RunSpec:
    """Everything one run needs; ``train_command``/``generate_command`` are the exact fairseq calls."""

    method: str
    seed: int
    data_dir: Path
    run_dir: Path
    cfg: RecipeConfig
    beams: Sequence[int]
    tokenize: str
    device_args: Sequence[str]
    extra_train_args: Sequence[str] = ()
    threads: int = 1
    # the method's own settings chosen by a sweep, appended after the configuration's (the last wins)
    variant_args: Sequence[str] = ()
    # the split decoded and scored: test for tables, valid for sweeps
    subset: str = "test"
    # the regime's pre-trained checkpoint (--finetune-from-model) and its settings, part of this run's identity
    init_checkpoint: Optional[Path] = None
    init_settings: Optional[Dict[str, object]] = None
    # checkpoint selections decoded (fairseq_eb.recipe.selection.SELECTIONS); sweeps decode the main one only
    selections: Sequence[str] = tuple(SELECTIONS)
    # run fairseq-eb-diagnose (error recovery on DIAGNOSE_SENTENCES valid sentences) on the main selection
    diagnose: bool = True

    @property
    def tag(self) -> str:
        return f"{self.method} seed{self.seed}"

    @property
    def checkpoint(self) -> Path:
        return self.checkpoint_for("bleu")

    def checkpoint_for(self, selection: str) -> Path:
        return self.run_dir / "checkpoints" / SELECTIONS[selection]

    def train_options(self) -> List[str]:
        """fairseq-train options that define the run (no paths into the run or the installation)."""
        return ["--seed", str(self.seed), "--log-format", "simple", "--no-progress-bar", "--num-workers", "0",
                *self.cfg.train_args, *method_args(self.method, self.cfg), *self.variant_args, *self.device_args,
                *self.extra_train_args]

    def train_command(self) -> List[str]:
        init = ["--finetune-from-model", str(self.init_checkpoint)] if self.init_checkpoint else []
        return [sys.executable, "-m", "fairseq_cli.train", str(self.data_dir / "bin"), "--user-dir", user_dir(),
                "--save-dir", str(self.run_dir / "checkpoints"), *init, *self.train_options()]

    def generate_options(self, beam: int) -> List[str]:
        """fairseq-generate options shared by every split and selection."""
        return ["--beam", str(beam), "--nbest", "1", "--num-workers", "0", "--seed", str(self.seed),
                *self.cfg.generate_args, *self.device_args]

    def generate_command(self, beam: int, selection: str = "bleu") -> List[str]:
        return [sys.executable, "-m", "fairseq_cli.generate", str(self.data_dir / "bin"), "--user-dir", user_dir(),
                "--path", str(self.checkpoint_for(selection)), "--gen-subset", self.subset,
                *self.generate_options(beam)]

    def settings(self) -> Dict[str, object]:
        """What must not change between a run and its resumption.

        Built from the options alone (no interpreter, data path, run directory or plugin location), so a
        finished run directory may be copied into another OUT (e.g. to add seeds to a table).
        """
        return {"method": self.method, "seed": self.seed, "data": data_fingerprint(self.data_dir),
                "train": self.train_options(), "init": self.init_settings, "tokenize": self.tokenize,
                "generate": self.generate_options(0)}


def data_fingerprint(data_dir: Path, subdir: str = "bin") -> str:
    """sha256 of the binarised data's dictionaries and index files: the data's identity, not its path.

    Why: the same data rebuilt elsewhere (the build is deterministic) must let runs be reused, while a
    re-binarisation with another vocabulary or truncation must not silently mix with old runs.
    """
    digest = hashlib.sha256()
    binary = data_dir / subdir
    for path in sorted(binary.glob("dict*.txt")) + sorted(binary.glob("*.idx")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


class SettingsMismatch(RuntimeError):
    """The run directory was made with other settings."""


def check_settings(spec: RunSpec) -> None:
    """Write ``settings.json`` on first use; afterwards refuse to resume with different settings."""
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    path = spec.run_dir / "settings.json"
    current = spec.settings()
    if path.exists():
        saved = json.loads(path.read_text())
        if saved != json.loads(json.dumps(current)):
            raise SettingsMismatch(
                f"{spec.run_dir} was made with other settings (config, data, extra arguments or tokenize "
                f"changed). Use a new --out directory, or delete {spec.run_dir} to redo this run."
            )
    else:
        atomic.write_json(path, current)


def _thread_env(threads: int) -> Dict[str, str]:
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def train(spec: RunSpec) -> Dict[str, object]:
    """Train unless ``train.done`` exists; returns the step record (wall time, skipped or not)."""
    done = spec.run_dir / "train.done"
    if done.exists():
        echo(f"[{spec.tag}] training already finished, skipped ({done})")
        progress.skipped("trainings")
        return dict(json.loads(done.read_text()), skipped=True)
    log = spec.run_dir / "train.log"
    if spec.checkpoint.exists() and log.exists() and finished_in_log(log.read_text(encoding="utf-8", errors="replace")):
        echo(f"[{spec.tag}] training had run to its end before an interruption ({log}): recorded, not resumed")
        wall = 0.0
    else:
        wall = _run_training(spec)
    record = {"wall_s": round(wall, 1), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic.write_json(done, record, indent=None)
    progress.done("trainings", f"training {spec.tag}", wall)
    return dict(record, skipped=False)


_RUN_START = "fairseq_cli.train | {"
_RUN_END = "fairseq_cli.train | done training in"


def finished_in_log(text: str) -> bool:
    """Whether the last fairseq-train of a train.log ran to its end. A kill between that end and ``train.done`` must
    not hand the run back to fairseq: resumed at --max-update, it makes one more update and saves it as
    checkpoint_last.pt, which changes the averaged checkpoint (found by the kill trials, docs/reliability.md)."""
    start = text.rfind(_RUN_START)
    return start >= 0 and _RUN_END in text[start:]


def _run_training(spec: RunSpec) -> float:
    check_resumable(spec.run_dir / "checkpoints", spec.tag)
    if spec.init_checkpoint is not None and not spec.init_checkpoint.exists():
        raise StepFailed(f"[{spec.tag}] starts from {spec.init_checkpoint}, which does not exist (a run restored from "
                         "a record has no checkpoints): retrain that run first")
    echo(f"[{spec.tag}] training -> {spec.run_dir / 'train.log'}")
    try:
        wall = run_logged(spec.train_command(), spec.run_dir / "train.log", spec.tag, env=_thread_env(spec.threads))
    except StepFailed as exc:
        raise StepFailed(_diverged(spec) or str(exc)) from None
    if not spec.checkpoint.exists():
        raise RuntimeError(f"[{spec.tag}] training ended without {spec.checkpoint}; see {spec.run_dir / 'train.log'}")
    return wall


def _diverged(spec: RunSpec) -> Optional[str]:
    """One line for a training that fairseq stopped on non-finite gradients (e.g. a huge --gp-epsilon), else None."""
    log = spec.run_dir / "train.log"
    tail = log.read_text(encoding="utf-8", errors="replace")[-20000:] if log.exists() else ""
    if "FloatingPointError" not in tail and "Nan/Inf" not in tail:
        return None
    return (f"[{spec.tag}] training stopped on a non-finite loss or gradient (fairseq: gradients are Nan/Inf); no "
            f"checkpoint of it is selected. Lower --lr or the method's strength (e.g. --gp-epsilon), then delete "
            f"{spec.run_dir} to redo it; see {log}")


def _prefix(spec: RunSpec, selection: str) -> str:
    """File-name prefix of a decoding: the test split and the main (valid-BLEU) selection have none."""
    return ("" if spec.subset == "test" else f"{spec.subset}-") + ("" if selection == "bleu" else f"{selection}-")


def generated_path(spec: RunSpec, beam: int, selection: str = "bleu") -> Path:
    """Where :func:`generate` writes the fairseq-generate output of one selection and beam."""
    return spec.run_dir / f"generate-{_prefix(spec, selection)}beam{beam}.txt"


def generate(spec: RunSpec, beam: int, selection: str = "bleu") -> Path:
    """Decode ``spec.subset`` at ``beam`` with the selected checkpoint unless its output exists."""
    out = generated_path(spec, beam, selection)
    if out.exists():
        progress.skipped("decodings")
        return out
    tag = f"{spec.tag} {selection}-selected beam{beam}"
    _needs_checkpoint(spec, f"the {spec.subset} decoding {out.name}")
    echo(f"[{tag}] fairseq-generate -> {out}")
    wall = run_logged(spec.generate_command(beam, selection), out.with_suffix(".log"), tag,
                      env=_thread_env(spec.threads), stdout_path=out)
    progress.done("decodings", f"decoding {tag}", wall)
    return out


def score(spec: RunSpec, beam: int, generated: Path, selection: str = "bleu") -> Dict[str, object]:
    """Score one decoding with :mod:`fairseq_eb.scoring`, plus the share of hypotheses repeating a word bigram
    (``repeat-2``, in %; degenerate repetition, docs/diagnose.md) and, for a configuration scored as translation,
    :func:`fairseq_eb.scoring.translation.translation_scores`, unless its JSON has them; returns the scores."""
    out = spec.run_dir / f"score-{_prefix(spec, selection)}beam{beam}.json"
    translation = spec.cfg.scores == "translation"
    result = json.loads(out.read_text()) if out.exists() else None
    if result is not None and "repeat-2" in result and (not translation or "chrf" in result):
        progress.skipped("scorings")
        return result
    start = time.time()
    from fairseq_eb.diagnose.repetition import repeated_ngram_share
    from fairseq_eb.scoring import read_generate_output
    from fairseq_eb.scoring import score as score_fn

    spm = spec.data_dir / "spm.model"
    hyps, refs = read_generate_output(str(generated), spm_model=str(spm) if spm.exists() else None)
    fresh = result is None
    result = dict(score_fn(hyps, refs, tokenize=spec.tokenize)) if fresh else result
    result["repeat-2"] = 100.0 * repeated_ngram_share(hyps, 2, spec.tokenize)
    if translation:
        from fairseq_eb.scoring.translation import translation_scores

        result.update(translation_scores(hyps, refs))
    atomic.write_json(out, result)
    progress.done("scorings", f"scoring {spec.tag} {selection}-selected beam{beam}", time.time() - start)
    extra = f"  BLEU {result['bleu-cased']:.2f}  chrF {result['chrf']:.2f}" if translation else ""
    echo(f"[{spec.tag} {selection}-selected {spec.subset} beam{beam}] ROUGE-L {result['rouge-l']:.2f}  "
         f"ROUGE-1 {result['rouge-1']:.2f}  ROUGE-2 {result['rouge-2']:.2f}  sentence BLEU {result['bleu']:.2f}"
         f"{extra}  repeated bigram {result['repeat-2']:.1f}%  (n={result.get('n')})")
    return result


# bounded so that the diagnosis adds at most ~10% to a demo run
DIAGNOSE_SENTENCES = 200
DIAGNOSE_RATE = 0.3


def _generate_flag(spec: RunSpec, flag: str, default: str) -> str:
    args = list(spec.cfg.generate_args)
    return args[args.index(flag) + 1] if flag in args else default


def diagnose(spec: RunSpec) -> Dict[str, object]:
    """``fairseq-eb-diagnose`` of the main selection on the first valid sentences (error recovery at
    r = 0 and DIAGNOSE_RATE, beam 1, search vs model errors); returns its headline numbers."""
    from fairseq_eb.diagnose.report import headline

    out = spec.run_dir / "diagnose"
    result_path = out / "diagnose.json"
    if not result_path.exists():
        _needs_checkpoint(spec, "the diagnosis")
        spm = spec.data_dir / "spm.model"
        cmd = [sys.executable, "-m", "fairseq_eb.diagnose", str(spec.data_dir / "bin"), "--path", str(spec.checkpoint),
               "--out", str(out), "--subset", "valid", "--beams", "1", "--corrupt-rates", "0", str(DIAGNOSE_RATE),
               "--max-sentences", str(DIAGNOSE_SENTENCES), "--tokenize", spec.tokenize, "--seed", str(spec.seed),
               "--max-len-a", _generate_flag(spec, "--max-len-a", "0"),
               "--max-len-b", _generate_flag(spec, "--max-len-b", "200"), "--no-progress",
               *(["--spm-model", str(spm)] if spm.exists() else []),
               *(["--cpu"] if "--cpu" in spec.device_args else [])]
        echo(f"[{spec.tag}] fairseq-eb-diagnose -> {out}")
        run_logged(cmd, spec.run_dir / "diagnose.log", f"{spec.tag} diagnose", env=_thread_env(spec.threads))
    return headline(json.loads(result_path.read_text()), DIAGNOSE_RATE)


def average(spec: RunSpec) -> Optional[Dict[str, object]]:
    """``checkpoint_avg.pt``: the average of the last ``cfg.average_last`` interval checkpoints, unless it
    exists; returns ``averaging.json`` (None when the configuration has no averaged selection)."""
    if not spec.cfg.average_last:
        return None
    record = spec.run_dir / "averaging.json"
    target = spec.checkpoint_for("avg")
    if record.exists() and target.exists():
        return json.loads(record.read_text())
    from fairseq_eb.recipe.averaging import average_checkpoints, checkpoints_by_update

    log = (spec.run_dir / "train.log").read_text(encoding="utf-8", errors="replace")
    last = list(checkpoints_by_update(spec.run_dir / "checkpoints", log).values())[-spec.cfg.average_last:]
    if not last:
        raise RuntimeError(f"[{spec.tag}] no interval checkpoint left to average in {spec.run_dir / 'checkpoints'} "
                           "(a run finished by an older recipe pruned them); delete the run directory to redo it")
    echo(f"[{spec.tag}] averaging the last {len(last)} checkpoints -> {target}")
    result = average_checkpoints(last, target)
    atomic.write_json(record, result, indent=None)
    return result


def _decode_valid(spec: RunSpec, checkpoint: Path, out: Path) -> Path:
    """Beam-1 decoding of the valid split with ``checkpoint`` (as ``--eval-bleu`` decodes it), unless it exists."""
    if not out.exists():
        cmd = [sys.executable, "-m", "fairseq_cli.generate", str(spec.data_dir / "bin"), "--user-dir", user_dir(),
               "--path", str(checkpoint), "--gen-subset", "valid", *spec.generate_options(1)]
        run_logged(cmd, out.with_suffix(".log"), f"{spec.tag} noise", env=_thread_env(spec.threads), stdout_path=out)
    return out


def measure_noise(spec: RunSpec, chosen: Dict[str, object]) -> Optional[Dict[str, object]]:
    """``noise.json``: the paired-bootstrap standard error of the valid BLEU difference between the selected
    checkpoint and its neighbouring validation's (:mod:`fairseq_eb.recipe.noise`), unless it exists; None when
    the run has no valid-BLEU selection or the neighbour's checkpoint is gone."""
    path = spec.run_dir / "noise.json"
    if path.exists():
        return json.loads(path.read_text())
    if not chosen.get("bleu"):
        return None
    from fairseq_eb.recipe import noise
    from fairseq_eb.recipe.averaging import checkpoints_by_update
    from fairseq_eb.scoring import read_generate_output

    validations = [Validation(**v) for v in chosen["validations"]]
    selected = int(chosen["bleu"]["num_updates"])
    other = noise.neighbour(validations, selected)
    log = (spec.run_dir / "train.log").read_text(encoding="utf-8", errors="replace")
    by_update = checkpoints_by_update(spec.run_dir / "checkpoints", log)
    if other is None or selected not in by_update or other not in by_update:
        return None
    spm = spec.data_dir / "spm.model"
    stats = []
    for update in (selected, other):
        out = _decode_valid(spec, by_update[update], spec.run_dir / "noise" / f"valid-beam1-{update}.txt")
        hyps, refs = read_generate_output(str(out), spm_model=str(spm) if spm.exists() else None)
        stats.append(noise.sentence_stats(hyps, refs))
    result = dict(noise.paired_bootstrap(*stats), selected=selected, neighbour=other,
                  logged_bleu={str(v.num_updates): v.bleu for v in validations if v.num_updates in (selected, other)})
    result["close_to_best"] = noise.close_to_best(validations, selected, result["se_diff"])
    atomic.write_json(path, result)
    echo(f"[{spec.tag}] valid BLEU noise: selected {selected:,} vs {other:,}: {result['diff']:+.2f} "
         f"(se {result['se_diff']:.2f}); {len(result['close_to_best'])} other validations within 1.96 se of the best")
    return result


def _saved_json(path: Path) -> Optional[Dict[str, object]]:
    return json.loads(path.read_text()) if path.exists() else None


def _needs_checkpoint(spec: RunSpec, what: str) -> None:
    """A restored run has its recorded results only: anything else would need the checkpoints it lacks."""
    if is_restored(spec.run_dir):
        raise StepFailed(f"[{spec.tag}] {what} is not in the record this run was restored from "
                         f"({spec.run_dir / MARKER}) and needs its checkpoints: delete {spec.run_dir} to retrain it, "
                         "or leave this beam / split / selection out")


def execute(spec: RunSpec) -> Dict[str, object]:
    """All steps of one run; returns ``{"train", "selection", "scores" (main selection), "by_selection",
    "diagnosis", "averaging", "noise"}``.

    The interval checkpoints are kept until the averaged selection and the noise measurement are made from
    them. When both selections picked the same update, the loss selection reuses the main one's scores.
    """
    check_settings(spec)
    record = train(spec)
    if is_restored(spec.run_dir):  # rebuilt from a record (fairseq_eb.recipe.archive): no checkpoints to select
        chosen, averaged, noise_record = (_saved_json(spec.run_dir / name)
                                          for name in ("selection.json", "averaging.json", "noise.json"))
    else:
        chosen = select(spec.run_dir / "checkpoints", spec.run_dir / "train.log", prune=False)
        averaged = average(spec)
        noise_record = measure_noise(spec, chosen)
        prune_intervals(spec.run_dir / "checkpoints")
    by_selection: Dict[str, Dict[int, Dict[str, object]]] = {}
    for selection in spec.selections:
        if selection == "avg" and not spec.cfg.average_last:
            continue
        if selection == "loss" and chosen.get("same") and "bleu" in by_selection:
            by_selection[selection] = by_selection["bleu"]
            for _ in spec.beams:  # the same checkpoint: nothing to decode or score again
                progress.skipped("decodings")
                progress.skipped("scorings")
            continue
        by_selection[selection] = {beam: score(spec, beam, generate(spec, beam, selection), selection)
                                   for beam in spec.beams}
    diagnosis = diagnose(spec) if spec.diagnose else None
    return {"train": record, "selection": chosen, "scores": by_selection[spec.selections[0]],
            "by_selection": by_selection, "diagnosis": diagnosis, "averaging": averaged, "noise": noise_record}
