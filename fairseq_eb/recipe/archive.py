"""A finished run's record, small enough to commit: every result of it, without its checkpoints.

Why: a run of the long regime costs hours of a core, and a machine that loses its disk loses the run directories,
while a table's paired intervals need every run's hypotheses, not only its scores. ``save`` packs what the recipe
reads back from a run directory — ``settings.json``, ``train.done``, ``train.log``, the selection, averaging and noise
records, every ``score-*.json``, the diagnosis, and of every ``generate-*.txt`` the decoded hypotheses and references
(exactly what :func:`fairseq_eb.scoring.read_generate_output` returns; references are stored once per split) — into
one xz-compressed JSON file per run, ``<archive>/<method>/<variant>/seed<S>.json.xz`` (a few hundred kB). ``restore``
rebuilds such a run directory with a ``restored.json`` marker; the recipe then reuses every stored result and never
asks for a checkpoint (:func:`fairseq_eb.recipe.run_steps.execute`), so a table over restored runs and new ones is
the same table. A decoding the record lacks (another beam, another split) needs the checkpoints: retrain the run.

    python -m fairseq_eb.recipe.archive save --runs runs/long/runs --to examples/results/long/runs [--spm-model M]
    python -m fairseq_eb.recipe.archive restore --from examples/results/long/runs --runs runs/long/runs
"""
from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from fairseq_eb import atomic

FORMAT = "fairseq-eb run record 1"
MARKER = "restored.json"
# the run directory's small files the recipe reads back (relative paths; those absent are skipped)
RECORD_FILES = ("settings.json", "train.done", "train.log", "selection.json", "averaging.json", "noise.json",
                "diagnose/diagnose.json", "diagnose/diagnose.md")


class ArchiveError(ValueError):
    """A record that cannot be written or restored faithfully; the message names the file and the reason."""


def is_restored(run_dir: Path) -> bool:
    """Whether ``run_dir`` was rebuilt from a record (it has results but no checkpoints)."""
    return (run_dir / MARKER).exists()


def synthetic_generate_output(hyps: Sequence[str], refs: Sequence[str]) -> str:
    """fairseq-generate lines (``T-i`` and ``D-i``) that read back as exactly ``(hyps, refs)``."""
    lines = []
    for i, (hyp, ref) in enumerate(zip(hyps, refs)):
        lines.append(f"T-{i}\t{ref}")
        lines.append(f"D-{i}\t0\t{hyp}")
    return "\n".join(lines) + "\n"


def _read(path: Path, spm_model: Optional[Path]) -> Tuple[List[str], List[str]]:
    from fairseq_eb.scoring import read_generate_output

    return read_generate_output(str(path), spm_model=str(spm_model) if spm_model else None)


def _check_plain(texts: Sequence[str], path: Path) -> None:
    """Decoded text must survive the one-line-per-sentence form and must not look like SentencePiece pieces."""
    from fairseq_eb.scoring.generate_output import WORD_BOUNDARY

    for text in texts:
        if len(text.splitlines()) > 1 or WORD_BOUNDARY in text:
            raise ArchiveError(f"{path}: a decoded sentence holds a line break or '{WORD_BOUNDARY}', which a "
                               "record cannot store faithfully; keep this run directory instead")


def pack(run_dir: Path, spm_model: Optional[Path] = None) -> Dict[str, object]:
    """The record of one finished run directory (``train.done`` present), as a JSON-able dict."""
    if not (run_dir / "train.done").exists():
        raise ArchiveError(f"{run_dir}: not a finished run (no train.done); nothing to save")
    files = {name: (run_dir / name).read_text(encoding="utf-8", errors="replace")
             for name in RECORD_FILES if (run_dir / name).exists()}
    scores = {p.name: json.loads(p.read_text()) for p in sorted(run_dir.glob("score-*.json"))}
    references: Dict[str, List[str]] = {}
    decodings: Dict[str, Dict[str, object]] = {}
    for path in sorted(run_dir.glob("generate-*.txt")):
        hyps, refs = _read(path, spm_model)
        _check_plain(hyps + refs, path)
        key = hashlib.sha256("\n".join(refs).encode()).hexdigest()[:16]
        references.setdefault(key, refs)
        decodings[path.name] = {"references": key, "hypotheses": hyps}
    return {"format": FORMAT, "files": files, "scores": scores, "references": references, "decodings": decodings}


def save(run_dir: Path, dest: Path, spm_model: Optional[Path] = None) -> Path:
    """Write the record of ``run_dir`` to ``dest`` (xz JSON), after checking that it restores to the same
    hypotheses and references; returns ``dest``."""
    record = pack(run_dir, spm_model)
    for name, entry in record["decodings"].items():
        refs = record["references"][entry["references"]]
        text = synthetic_generate_output(entry["hypotheses"], refs)
        probe = dest.parent / f".{dest.name}.{name}.check"
        probe.parent.mkdir(parents=True, exist_ok=True)
        try:
            probe.write_text(text, encoding="utf-8")
            if _read(probe, None) != (entry["hypotheses"], refs):
                raise ArchiveError(f"{run_dir / name}: its record would not read back the same; keep the directory")
        finally:
            probe.unlink(missing_ok=True)
    data = json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8")
    atomic.write_bytes(dest, lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
    return dest


def load(path: Path) -> Dict[str, object]:
    try:
        record = json.loads(lzma.decompress(path.read_bytes()).decode("utf-8"))
    except (lzma.LZMAError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArchiveError(f"{path}: not a run record ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ArchiveError(f"{path}: not a run record of this version (format {record.get('format')!r}, "
                           f"expected {FORMAT!r})")
    return record


def restore(path: Path, run_dir: Path) -> Path:
    """Rebuild ``run_dir`` from the record at ``path``; refuses a directory that already holds a run."""
    if run_dir.exists():
        raise ArchiveError(f"{run_dir} already exists; restore only into a new run directory")
    record = load(path)
    final, run_dir = run_dir, run_dir.with_name(run_dir.name + ".restoring")  # renamed when whole
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)  # the leftover of an interrupted restore
    run_dir.mkdir(parents=True)
    for name, text in record["files"].items():
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(run_dir / name, text)
    for name, result in record["scores"].items():
        atomic.write_json(run_dir / name, result)
    for name, entry in record["decodings"].items():
        atomic.write_text(run_dir / name,
                          synthetic_generate_output(entry["hypotheses"], record["references"][entry["references"]]))
    atomic.write_json(run_dir / MARKER, {"record": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    run_dir.rename(final)
    return final


def _run_dirs(runs: Path) -> List[Path]:
    """Finished run directories under ``runs`` (``<method>/<variant>/seed<S>``), restored ones excluded."""
    return sorted(p.parent for p in runs.glob("*/*/seed*/train.done") if not is_restored(p.parent))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fairseq_eb.recipe.archive", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("save", help="write a record of every finished run under --runs into --to")
    s.add_argument("--runs", type=Path, required=True, help="the recipe's runs directory (OUT/runs)")
    s.add_argument("--to", type=Path, required=True, help="where the records go (mirrors <method>/<variant>/seed<S>)")
    s.add_argument("--spm-model", type=Path, help="the data's SentencePiece model, to decode pieces as scoring does")
    r = sub.add_parser("restore", help="rebuild every run of --from that --runs lacks")
    r.add_argument("--from", dest="source", type=Path, required=True, help="a directory of records (save's --to)")
    r.add_argument("--runs", type=Path, required=True, help="the recipe's runs directory to fill")
    args = parser.parse_args(argv)
    try:
        if args.command == "save":
            dirs = _run_dirs(args.runs)
            if not dirs:
                raise ArchiveError(f"--runs {args.runs}: no finished run (<method>/<variant>/seed<S>/train.done)")
            for run_dir in dirs:
                dest = args.to / run_dir.relative_to(args.runs).with_suffix(".json.xz")
                save(run_dir, dest, args.spm_model)
                print(f"{run_dir} -> {dest} ({dest.stat().st_size / 1024:.0f} kB)")
        else:
            records = sorted(args.source.glob("*/*/seed*.json.xz"))
            if not records:
                raise ArchiveError(f"--from {args.source}: no run record (<method>/<variant>/seed<S>.json.xz)")
            for path in records:
                run_dir = args.runs / path.relative_to(args.source).with_suffix("").with_suffix("")
                if run_dir.exists():
                    print(f"{run_dir} exists, kept")
                    continue
                restore(path, run_dir)
                print(f"{path} -> {run_dir}")
    except (ArchiveError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
