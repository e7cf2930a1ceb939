#!/usr/bin/env bash
# The README's main command: baseline vs random replacement (RR) vs gradient penalty (GP) on the
# offline Debian default (package description -> one-line synopsis), beams 1-3, one seed, the small
# `demo` configuration (fairseq_eb/recipe/configs.py). About 15 minutes on 2 CPU cores, data included.
#
# Usage: scripts/demo.sh [recipe options...]     e.g. scripts/demo.sh --seeds 1 2 3
# Environment: DATA (default data/debian, built on first use and cached), OUT (default runs/demo),
#   JOBS (trainings in parallel, default 2), VENV (default .venv).
# Re-running skips everything already done (data, trainings, decodings, scores).
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
START=$(date +%s)
bash scripts/setup.sh
PY="${VENV:-.venv}/bin/python"
# absolute: apt resolves relative directories against /etc/apt
DATA="$(realpath -m "${DATA:-data/debian}")"
OUT="${OUT:-runs/demo}"
# the demo's data settings: a 4k SentencePiece vocabulary, sources cut to their first 32 pieces
"$PY" -m fairseq_eb.prep.debian --out "$DATA"
"$PY" -m fairseq_eb.prep.binarize --data "$DATA" --vocab-size 4000 --max-src-pieces 32 --workers 2
"$PY" -m fairseq_eb.recipe.table --data "$DATA" --out "$OUT" --config demo --methods baseline rr gp \
  --seeds 1 --beams 1 2 3 --jobs "${JOBS:-2}" --name debian "$@"
echo "[demo] done in $(( ($(date +%s) - START) / 60 )) min $(( ($(date +%s) - START) % 60 )) s: $OUT/table.md, $OUT/plot.png"
