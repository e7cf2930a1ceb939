#!/usr/bin/env bash
# Prepare a title-generation corpus from TSV files (CSL, LCSTS, your own) and binarise it.
#
# Usage: scripts/prepare_tsv.sh DIR FORMAT TRAIN VALID TEST [binarize options...]
#   FORMAT  reference (title<TAB>content) or csl (to title<TAB>abstract<TAB>title)
#   VALID   a TSV file, or a number N to hold out N training examples instead
#   binarize options default to: --vocab-size 8000; Chinese: add --char (e.g. --vocab-size 6000 --char)
# Example (CSL's title-prediction sample, github.com/ydli-ai/CSL benchmark/ts/, saved under data/csl_ts/):
#   scripts/prepare_tsv.sh data/csl csl data/csl_ts/dev.tsv 100 data/csl_ts/test.tsv \
#     --vocab-size 6000 --char --max-src-pieces 256
set -euo pipefail
usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then usage; exit 0; fi
if [[ $# -lt 5 ]]; then usage >&2; exit 2; fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${VENV:-$ROOT/.venv}/bin/python"
DIR="$1" FORMAT="$2" TRAIN="$3" VALID="$4" TEST="$5"; shift 5
if [[ "$VALID" =~ ^[0-9]+$ ]]; then VALID_ARGS=(--valid-from-train "$VALID"); else VALID_ARGS=(--valid "$VALID"); fi
"$PY" -m fairseq_eb.prep.tsv --train "$TRAIN" "${VALID_ARGS[@]}" --test "$TEST" --format "$FORMAT" --out "$DIR"
if [[ $# -eq 0 ]]; then set -- --vocab-size 8000; fi
"$PY" -m fairseq_eb.prep.binarize --data "$DIR" "$@"
