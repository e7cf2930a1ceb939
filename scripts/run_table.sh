#!/usr/bin/env bash
# The reference table on your own title-generation / summarisation data (CSL, LCSTS, ...).
#
# Usage: scripts/run_table.sh DIR FORMAT TRAIN VALID TEST [recipe options...]
#   DIR     working directory (prepared data + the table under DIR/table)
#   FORMAT  reference (title<TAB>content per line) or csl (to title<TAB>abstract<TAB>title)
#   VALID   a TSV file, or a number N to hold out N training examples instead
#   recipe options go to python -m fairseq_eb.recipe.table (e.g. --seeds 1 2 --jobs 2 --methods baseline gp)
# Environment (defaults for Chinese): TOKENIZE=char (word for space-separated languages), VOCAB=6000,
#   MAX_SRC=256 (source pieces kept), CONFIG=converged (a GPU's size; converged_cpu or demo on a few CPU
#   cores; see fairseq_eb/recipe/configs.py), OUT=DIR/table.
# Example (CSL's 1k+1k title-prediction sample, dev.tsv and test.tsv of github.com/ydli-ai/CSL
# benchmark/ts/, saved under data/csl_ts/; far too small for real conclusions, it only exercises the path):
#   scripts/run_table.sh data/csl csl data/csl_ts/dev.tsv 100 data/csl_ts/test.tsv \
#       --config demo --seeds 1 --jobs 2
set -euo pipefail
usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then usage; exit 0; fi
if [[ $# -lt 5 ]]; then usage >&2; exit 2; fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${VENV:-$ROOT/.venv}/bin/python"
DIR="$1" FORMAT="$2" TRAIN="$3" VALID="$4" TEST="$5"; shift 5
TOKENIZE="${TOKENIZE:-char}"
case "$TOKENIZE" in
  char) CHAR=(--char) ;;
  word) CHAR=() ;;
  *) echo "error: TOKENIZE must be char or word, got '$TOKENIZE'" >&2; exit 2 ;;
esac
bash "$ROOT/scripts/setup.sh"
bash "$ROOT/scripts/prepare_tsv.sh" "$DIR" "$FORMAT" "$TRAIN" "$VALID" "$TEST" \
  --vocab-size "${VOCAB:-6000}" --max-src-pieces "${MAX_SRC:-256}" "${CHAR[@]}"
exec "$PY" -m fairseq_eb.recipe.table --data "$DIR" --out "${OUT:-$DIR/table}" --tokenize "$TOKENIZE" \
  --config "${CONFIG:-converged}" "$@"
