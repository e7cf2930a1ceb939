#!/usr/bin/env bash
# finetune regime, part 2 (frozen checkout /work/study5): sweep the model pool (ss) and lazy penalty (gp_lazy)
# grids while the RR/GP sweep (study4, pid 11962) finishes, then one sweep over all methods (every run reused)
# writes the combined chosen.json, then the test table with every chosen setting, seeds 1-3.
set -x
cd /work/study5
export PYTHONPATH=/work/study5
PY=/work/main/.venv/bin/python
D=/work/main/data/debian-ft5k; O=/work/main/runs/finetune
date
$PY -m fairseq_eb.recipe.sweep --data $D --out $O --config finetune --methods ss gp_lazy --seeds 1 \
   --jobs 1 --threads 1
date
while kill -0 11962 2>/dev/null; do sleep 20; done
date
$PY -m fairseq_eb.recipe.sweep --data $D --out $O --config finetune --methods baseline rr gp ss gp_lazy --seeds 1 \
   --jobs 2 --threads 1
date
$PY -m fairseq_eb.recipe.table --data $D --out $O --config finetune --methods baseline rr gp ss gp_lazy \
   --seeds 1 2 3 --jobs 2 --threads 1 --chosen $O/sweep/chosen.json
date
