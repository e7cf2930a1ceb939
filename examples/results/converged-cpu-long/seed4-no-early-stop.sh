#!/usr/bin/env bash
# Side check for examples/results/README.md, section C3 (not part of the recipe's table): continue one of
# seed 4's early-stopped converged_cpu_long runs from its last checkpoint (update 3,600) to the 4,800-update
# budget with early stopping disabled (--patience -1, everything else as logged in its train.log), decode the
# test split at beams 1-3 as the recipe did (its generate-beam*.log) with the valid-BLEU-best checkpoint, and
# score it against the early-stopped run.
# Writes to a copy; the recipe's run directory is only read.
#
# Usage: seed4-no-early-stop.sh METHOD VARIANT     e.g. seed4-no-early-stop.sh baseline default
#                                                       seed4-no-early-stop.sh gp eps1.0
# Environment: RUNS (default runs/converged-cpu-long/runs), DATA (default data/debian), SIDE (default
#   runs/converged-cpu-long-side), PY (default .venv/bin/python).
set -euo pipefail
m=$1; variant=$2
RUNS=${RUNS:-runs/converged-cpu-long/runs}; DATA=${DATA:-data/debian}
SIDE=${SIDE:-runs/converged-cpu-long-side}; PY=${PY:-.venv/bin/python}
R=$RUNS/$m/$variant/seed4
S=$SIDE/${m}4
rm -rf "$S"; mkdir -p "$S/checkpoints"
cp "$R/checkpoints/checkpoint_last.pt" "$R/checkpoints/checkpoint_best.pt" "$S/checkpoints/"
# The run's own logged commands (first line of each log), pointed at the copy and without early stopping.
logged() { head -1 "$1" | sed 's/^\$ //'; }
cmd=$(logged "$R/train.log" | sed 's#--save-dir [^ ]*#--save-dir '"$S"'/checkpoints#; s/--patience [0-9]*/--patience -1/')
echo "$cmd" > "$S/cmd.txt"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
eval "$cmd" > "$S/train.log" 2>&1
for b in 1 2 3; do
  gen=$(logged "$R/generate-beam$b.log" | sed 's#--path [^ ]*#--path '"$S"'/checkpoints/checkpoint_best.pt#')
  eval "$gen" > "$S/generate-beam$b.txt" 2>/dev/null
  "$PY" -m fairseq_eb.scoring.cli --generate-output "$S/generate-beam$b.txt" --spm-model "$DATA/spm.model" \
      --baseline "$R/generate-beam$b.txt" > "$S/score-beam$b.txt"
done
