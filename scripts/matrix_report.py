"""Record one install-matrix cell (scripts/matrix.sh) and render the results as docs/compatibility.md's table.

    python scripts/matrix_report.py record --results R --cell C --status S ...   (called by matrix.sh)
    python scripts/matrix_report.py table --results R [--write docs/compatibility.md]

``--write`` replaces the text between ``<!-- matrix:begin -->`` and ``<!-- matrix:end -->``; only measured rows
are written (the versions come from each cell's ``fairseq-eb-env --json``). Standard library only.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
from typing import Any, Dict, List, Optional

BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"
CELL_ORDER = ["default", "source", "fairseq-0.12.2", "torch-2.1.2", "torch-2.5.1", "torch-2.15.0", "wheel"]


def _load(path: str) -> Dict[str, Any]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def record(args: argparse.Namespace) -> None:
    env = _load(args.env_json)
    fairseq = env.get("fairseq", {})
    exts = fairseq.get("compiled_extensions", {})
    row = {
        "cell": args.cell, "date": datetime.date.today().isoformat(), "status": args.status, "tests": args.tests,
        "smoke": args.smoke, "seconds": args.seconds, "size": args.size, "note": args.note,
        "python": env.get("python", {}).get("version", "-"),
        "torch": env.get("torch", {}).get("version", "-"),
        "fairseq": fairseq.get("distribution", "-"),
        "numpy": env.get("packages", {}).get("numpy", "-"),
        "plugin_commit": env.get("fairseq-eb", {}).get("git_commit", "none")[:7],
        "extensions_failing": sorted(k.rsplit(".", 1)[-1] for k, v in exts.items() if v != "ok"),
        "patches_active": [p["name"] for p in env.get("patches", {}).get("patches", [])
                           if p["state"] == "on when loaded"],
        "patch_notes": {p["name"]: p["here"] for p in env.get("patches", {}).get("patches", [])},
    }
    with open(args.results, "a") as f:
        f.write(json.dumps(row) + "\n")


def latest(results: List[str], order: List[str]) -> List[Dict[str, Any]]:
    """The last recorded row of each cell across the files, in matrix.sh's cell order (others after)."""
    rows: Dict[str, Dict[str, Any]] = {}
    for path in results:
        with open(path) as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    rows[row["cell"]] = row
    rank = {cell: i for i, cell in enumerate(order)}
    return sorted(rows.values(), key=lambda r: rank.get(r["cell"], len(rank)))


def table(rows: List[Dict[str, Any]]) -> str:
    head = ("| cell | Python | torch | fairseq build | numpy | result | fast tests | smoke | time | env size | "
            "compiled extensions not loading |\n|---|---|---|---|---|---|---|---|---:|---:|---|")
    lines = [head]
    for r in rows:
        minutes = f"{r['seconds'] // 60} min {r['seconds'] % 60:02d} s"
        exts = ", ".join(r["extensions_failing"]) or "none"
        tests = re.sub(r",? \d+ warnings?", "", r["tests"])
        lines.append(f"| {r['cell']} | {r['python']} | {r['torch']} | {r['fairseq']} | {r['numpy']} | "
                     f"**{r['status']}** | {tests} | {r['smoke']} | {minutes} | {r['size']} | {exts} |")
    notes = [f"- `{r['cell']}`: {r['note']}" for r in rows if r.get("note")]
    dates = sorted({r["date"] for r in rows})
    commits = sorted({r.get("plugin_commit", "none") for r in rows} - {"none", "-"})
    out = [f"Measured {' to '.join([dates[0], dates[-1]] if len(dates) > 1 else dates)} by `bash scripts/matrix.sh` "
           f"(plugin commit {', '.join(commits) or 'unknown'}) on 2 CPU cores shared with other jobs; a cell's time "
           "includes building its environment from the local wheel cache.", "", *lines]
    if notes:
        out += ["", *notes]
    return "\n".join(out)


def write(path: str, text: str) -> None:
    with open(path) as f:
        doc = f.read()
    if BEGIN not in doc or END not in doc:
        sys.exit(f"matrix_report.py: error: {path} has no {BEGIN} ... {END} section to replace")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w") as f:
        f.write(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="matrix_report.py")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--results", required=True)
    rec.add_argument("--cell", required=True)
    rec.add_argument("--status", required=True)
    rec.add_argument("--tests", default="-")
    rec.add_argument("--smoke", default="-")
    rec.add_argument("--seconds", type=int, required=True)
    rec.add_argument("--env-json", default="")
    rec.add_argument("--venv", default="")
    rec.add_argument("--size", default="-")
    rec.add_argument("--note", default="")
    tab = sub.add_parser("table")
    tab.add_argument("--results", required=True, nargs="+",
                     help="results.jsonl files (several: cells run side by side with their own MATRIX_OUT)")
    tab.add_argument("--write", metavar="DOC", help="replace the matrix section of this Markdown file")
    args = parser.parse_args(argv)
    if args.command == "record":
        record(args)
        return 0
    for path in args.results:
        if not os.path.exists(path):
            sys.exit(f"matrix_report.py: error: --results {path}: no such file (run scripts/matrix.sh first)")
    text = table(latest(args.results, CELL_ORDER))
    print(text)
    if args.write:
        write(args.write, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
