#!/usr/bin/env bash
# finetune regime: GP-lazy seeds 4-5 (tuned setting), table over all five methods and seeds 1-5 (the rest reused).
set -x
cd /work/study5
export PYTHONPATH=/work/study5
PY=/work/main/.venv/bin/python
D=/work/main/data/debian-ft5k; O=/work/main/runs/finetune
date
$PY -m fairseq_eb.recipe.table --data $D --out $O --config finetune --methods baseline rr gp ss gp_lazy \
   --seeds 1 2 3 4 5 --jobs 2 --threads 1 --chosen $O/sweep/chosen.json
date
