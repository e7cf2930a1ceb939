#!/usr/bin/env bash
# demo regime, tuned: the whole valid sweep (seed 1, 22 variants + baseline), then the test table with the chosen
# settings, seeds 1-3. Frozen checkout /work/study3 so edits in /work/main cannot change the runs' settings.
set -x
cd /work/study3
export PYTHONPATH=/work/study3
PY=/work/main/.venv/bin/python
D=/work/main/data/debian; O=/work/main/runs/demo-tuned
$PY -m fairseq_eb.recipe.sweep --data $D --out $O --config demo_v1 --methods baseline rr gp --seeds 1 \
   --beams 1 2 3 --jobs 2 --threads 1 --name debian
for seeds in "1" "1 2" "1 2 3"; do
  $PY -m fairseq_eb.recipe.table --data $D --out $O --config demo_v1 --methods baseline rr gp --seeds $seeds \
     --beams 1 2 3 --jobs 2 --threads 1 --name debian --chosen $O/sweep/chosen.json
done
