#!/usr/bin/env bash
# finetune regime: seeds 4 and 5 for baseline / RR / GP / SS with the settings chosen by the full sweep
# (frozen checkout /work/study5; seeds 1-3 are reused).
set -x
cd /work/study5
export PYTHONPATH=/work/study5
PY=/work/main/.venv/bin/python
D=/work/main/data/debian-ft5k; O=/work/main/runs/finetune
date
cp $O/table.md $O/table-3seeds.md; cp $O/results.json $O/results-3seeds.json
$PY -m fairseq_eb.recipe.table --data $D --out $O --config finetune --methods baseline rr gp ss \
   --seeds 1 2 3 4 5 --jobs 2 --threads 1 --chosen $O/sweep/chosen.json
date
