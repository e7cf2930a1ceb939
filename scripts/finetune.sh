#!/usr/bin/env bash
# The `finetune` regime of the efficacy study (examples/results/README.md): the article's setting in miniature.
# One denoising pre-training on the Debian training-split text, then baseline / RR / GP / SS / GP-lazy fine-tuned
# on a seeded 5k-pair subset, every run exactly 1,200 updates (equal budgets, valid BLEU on all 2,722 valid pairs;
# CONFIG=finetune_es: the early-stopped rule of the tables before, 500 valid pairs); method settings tuned on valid
# by a sweep (or CHOSEN=file: a sweep's chosen.json, no sweep), then the test table. Hours on 2 cores; resumable.
#
# Usage: scripts/finetune.sh [table options...]      e.g. scripts/finetune.sh --seeds 1 2 3
# Environment: CONFIG (finetune or finetune_es), DATA (default data/debian), FT (prepared subset), OUT (default
#   runs/CONFIG), N (training pairs, default 5000), JOBS (default 2), VARIANTS (sweep variants), CHOSEN,
#   METHODS (default baseline rr gp ss gp_lazy; the stage methods: add mle_more mrt rank).
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
CONFIG="${CONFIG:-finetune}"
case "$CONFIG" in
  finetune) VALID=2722; FT="${FT:-data/debian-ft5k-fullvalid}" ;;
  finetune_es) VALID=500; FT="${FT:-data/debian-ft5k}" ;;
  *) echo "CONFIG=$CONFIG: must be finetune or finetune_es" >&2; exit 2 ;;
esac
OUT="${OUT:-runs/$CONFIG}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
PY="${VENV:-.venv}/bin/python"
DATA="$(realpath -m "${DATA:-data/debian}")"
"$PY" -m fairseq_eb.prep.debian --out "$DATA"
"$PY" -m fairseq_eb.prep.binarize --data "$DATA" --vocab-size 4000 --max-src-pieces 32 --workers 2
"$PY" -m fairseq_eb.prep.finetune --parent "$DATA" --out "$FT" --train-subset "${N:-5000}" --valid-subset "$VALID" \
  --workers 2
if [[ -z "${CHOSEN:-}" ]]; then
  # shellcheck disable=SC2086
  "$PY" -m fairseq_eb.recipe.sweep --data "$FT" --out "$OUT" --config "$CONFIG" \
    --methods ${METHODS:-baseline rr gp ss gp_lazy} --seeds 1 ${VARIANTS:+--variants $VARIANTS} --jobs "${JOBS:-2}" \
    --name debian-ft5k
  CHOSEN="$OUT/sweep/chosen.json"
fi
# shellcheck disable=SC2086
"$PY" -m fairseq_eb.recipe.table --data "$FT" --out "$OUT" --config "$CONFIG" \
  --methods ${METHODS:-baseline rr gp ss gp_lazy} --chosen "$CHOSEN" --jobs "${JOBS:-2}" --name debian-ft5k \
  --seeds 1 2 3 "$@"
