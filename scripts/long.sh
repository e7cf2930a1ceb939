#!/usr/bin/env bash
# The long-output regime (config `long`, docs/evaluating.md step 7): English -> Italian translation of whole Debian
# package descriptions (python -m fairseq_eb.prep.ddtp: DDTP indexes and LibreOffice help pages fetched with apt,
# built on first use), an 8k joint SentencePiece vocabulary, no source cut; every method trained exactly the
# config's budget, decoded at beams 1 2 3 5 10 on the in-domain test split, then on the out-of-domain `ood` split
# (LibreOffice help) from the same runs. About 1.5 h of one core per run plus decoding; resumable (re-run it).
#
# Usage: scripts/long.sh [table options...]      e.g. scripts/long.sh --methods baseline --seeds 1
# Environment: DATA (default data/ddtp-it), OUT (default runs/long), JOBS (default 2), METHODS (default: baseline
#   rr gp ss), SEEDS (default: 1 2 3), RECORDS (default examples/results/long/runs: the finished runs' records,
#   restored before the tables and written after them, so a lost disk loses no run; fairseq_eb/recipe/archive.py).
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
PY="${VENV:-.venv}/bin/python"
DATA="${DATA:-data/ddtp-it}"
OUT="${OUT:-runs/long}"
"$PY" -m fairseq_eb.prep.ddtp --out "$DATA"
"$PY" -m fairseq_eb.prep.binarize --data "$DATA" --vocab-size 8000 --workers 2
# shellcheck disable=SC2086
common=(--data "$DATA" --config long --methods ${METHODS:-baseline rr gp ss} --seeds ${SEEDS:-1 2 3}
        --beams 1 2 3 5 10 --jobs "${JOBS:-2}" --threads 1 --name debian-en-it)
RECORDS="${RECORDS:-examples/results/long/runs}"
if [[ -d "$RECORDS" ]]; then "$PY" -m fairseq_eb.recipe.archive restore --from "$RECORDS" --runs "$OUT/runs"; fi
"$PY" -m fairseq_eb.recipe.table "${common[@]}" --out "$OUT" "$@"
"$PY" -m fairseq_eb.recipe.table "${common[@]}" --out "$OUT/ood" --runs "$OUT/runs" --test-subset ood "$@"
"$PY" -m fairseq_eb.recipe.archive save --runs "$OUT/runs" --to "$RECORDS" --spm-model "$DATA/spm.model"
