#!/usr/bin/env bash
# The `converged` regime of the efficacy study on one GPU: baseline / RR / GP x 3 seeds trained at once
# (9 runs share the GPU), test table at beams 1-3, both checkpoint selections, diagnostics.
# examples/results/converged-gpu-attempt/ holds the logs of one unfinished attempt on a lent H200.
#
# Usage: scripts/converged_gpu.sh DATA OUT [table options...]
#   DATA  prepared Debian data (scripts/demo.sh builds data/debian), OUT the table's directory
# Environment: PY (python with torch+CUDA, fairseq and this plugin importable; default python3),
#   JOBS (runs at once, default 9), TRAIN_ARGS (extra fairseq-train options, e.g. a shorter --max-update).
set -euo pipefail
if [[ $# -lt 2 || "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2; fi
DATA="$1" OUT="$2"; shift 2
PY="${PY:-python3}"
exec "$PY" -m fairseq_eb.recipe.table --data "$DATA" --out "$OUT" --config converged --methods baseline rr gp \
  --seeds 1 2 3 --beams 1 2 3 --jobs "${JOBS:-9}" --threads 1 --device cuda --name debian \
  --train-args "${TRAIN_ARGS:-}" "$@"
