#!/usr/bin/env bash
# The `finetune` regime of the efficacy study (examples/results/README.md): the article's setting in
# miniature. One denoising pre-training (fairseq's `denoising` task) on the Debian training-split text, then
# baseline / RR / GP / SS / GP-lazy fine-tuned on a seeded 5k-pair subset until the valid BLEU stops
# improving; method settings tuned on valid by a sweep over every grid (30 trainings), then the test table.
# About 3.5 hours on 2 cores; resumable (re-run it).
#
# Usage: scripts/finetune.sh [table options...]      e.g. scripts/finetune.sh --seeds 1 2 3
# Environment: DATA (default data/debian), FT (default data/debian-ft5k), OUT (default runs/finetune),
#   N (training pairs, default 5000), JOBS (default 2), VARIANTS (sweep variants, default: every variant),
#   METHODS (default: baseline rr gp ss gp_lazy).
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
PY="${VENV:-.venv}/bin/python"
DATA="$(realpath -m "${DATA:-data/debian}")"
FT="${FT:-data/debian-ft5k}"
OUT="${OUT:-runs/finetune}"
"$PY" -m fairseq_eb.prep.debian --out "$DATA"
"$PY" -m fairseq_eb.prep.binarize --data "$DATA" --vocab-size 4000 --max-src-pieces 32 --workers 2
"$PY" -m fairseq_eb.prep.finetune --parent "$DATA" --out "$FT" --train-subset "${N:-5000}" --valid-subset 500 --workers 2
# shellcheck disable=SC2086
"$PY" -m fairseq_eb.recipe.sweep --data "$FT" --out "$OUT" --config finetune --methods ${METHODS:-baseline rr gp ss gp_lazy} \
  --seeds 1 ${VARIANTS:+--variants $VARIANTS} --jobs "${JOBS:-2}" --name debian-ft5k
"$PY" -m fairseq_eb.recipe.table --data "$FT" --out "$OUT" --config finetune \
  --methods ${METHODS:-baseline rr gp ss gp_lazy} --chosen "$OUT/sweep/chosen.json" --jobs "${JOBS:-2}" --name debian-ft5k --seeds 1 2 3 "$@"
