#!/usr/bin/env bash
# Note: the table step at the end of this script did not run; the script was stopped after its sweep and
# study5.sh / study5b.sh (beside it) ran the combined sweep and the test table.
# finetune regime: the full 22-variant valid sweep (seed 1; the 5 variants already run are reused), then the test
# table with the chosen settings for seeds 1-3 (runs already done are reused). Frozen checkout /work/study4.
set -x
cd /work/study4
export PYTHONPATH=/work/study4
PY=/work/main/.venv/bin/python
D=/work/main/data/debian-ft5k; O=/work/main/runs/finetune
date
$PY -m fairseq_eb.recipe.sweep --data $D --out $O --config finetune --methods baseline rr gp --seeds 1 \
   --jobs 2 --threads 1
date
$PY -m fairseq_eb.recipe.table --data $D --out $O --config finetune --methods baseline rr gp ss gp_lazy \
   --seeds 1 2 3 --jobs 2 --threads 1 --chosen $O/sweep/chosen.json
date
