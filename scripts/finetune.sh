#!/usr/bin/env bash
# The `finetune` regime of the efficacy study (examples/results/README.md): the article's setting in
# miniature. One denoising pre-training (fairseq's `denoising` task) on the Debian training-split text, then
# baseline / RR / GP fine-tuned on a seeded 5k-pair subset until the valid BLEU stops improving; method
# settings tuned on valid by a sweep, then the test table. CPU hours on 2 cores; resumable (re-run it).
#
# Usage: scripts/finetune.sh [table options...]      e.g. scripts/finetune.sh --seeds 1 2 3
# Environment: DATA (default data/debian), FT (default data/debian-ft5k), OUT (default runs/finetune),
#   N (training pairs, default 5000), JOBS (default 2), VARIANTS (sweep variants, default: a small grid).
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
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
"$PY" -m fairseq_eb.recipe.sweep --data "$FT" --out "$OUT" --config finetune --methods baseline rr gp --seeds 1 \
  --variants ${VARIANTS:-target-pt0.3 vocab-pt0.1 eps1.0 eps0.1} --jobs "${JOBS:-2}" --name debian-ft5k
"$PY" -m fairseq_eb.recipe.table --data "$FT" --out "$OUT" --config finetune --methods baseline rr gp \
  --chosen "$OUT/sweep/chosen.json" --jobs "${JOBS:-2}" --name debian-ft5k --seeds 1 2 3 "$@"
