#!/usr/bin/env bash
# The `converged` regime of the efficacy study sized for 2 CPU cores (config `converged_cpu`,
# examples/results/README.md): all Debian pairs, the demo's 2+2 d=128 model trained 2,400 updates (equal budgets;
# the committed tables early-stopped: add --train-args '--patience 3'); baseline / RR / GP / SS with the settings of
# examples/results/converged-cpu/chosen.json (taken from the demo and finetune sweeps, not re-swept), test
# table at beams 1-3. About 2 hours on 2 cores for 3 seeds; resumable (re-run it). CONFIG=converged_cpu_long
# trains twice as long (8.2 CPU-hours of training for 3 seeds, measured), with examples/results/converged-cpu-long/chosen.json.
#
# Usage: scripts/converged_cpu.sh [table options...]      e.g. scripts/converged_cpu.sh --seeds 1 2 3 4 5
# Environment: CONFIG (converged_cpu or converged_cpu_long), DATA (default data/debian), OUT (default
#   runs/converged-cpu or runs/converged-cpu-long), JOBS (default 2), METHODS (default: baseline rr gp ss).
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
CONFIG="${CONFIG:-converged_cpu}"
case "$CONFIG" in
  converged_cpu|converged_cpu_long) ;;
  *) echo "CONFIG=$CONFIG: must be converged_cpu or converged_cpu_long" >&2; exit 2 ;;
esac
NAME="${CONFIG//_/-}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
PY="${VENV:-.venv}/bin/python"
DATA="${DATA:-data/debian}"
"$PY" -m fairseq_eb.prep.debian --out "$DATA"
"$PY" -m fairseq_eb.prep.binarize --data "$DATA" --vocab-size 4000 --max-src-pieces 32 --workers 2
# shellcheck disable=SC2086
"$PY" -m fairseq_eb.recipe.table --data "$DATA" --out "${OUT:-runs/$NAME}" --config "$CONFIG" \
  --methods ${METHODS:-baseline rr gp ss} --chosen "examples/results/$NAME/chosen.json" \
  --jobs "${JOBS:-2}" --threads 1 --name debian --seeds 1 2 3 "$@"
