#!/usr/bin/env bash
# Side check for examples/results/README.md, section C3 (not part of the recipe's table): continue one of
# seed 4's early-stopped converged_cpu_long runs from its last checkpoint (update 3,600) to the 4,800-update
# budget with early stopping disabled (--patience -1, everything else as logged in its train.log), decode the
# test split at beams 1-3 with the valid-BLEU-best checkpoint and score it against the early-stopped run.
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
# The run's own command line (first line of its train.log), with another --save-dir and no early stopping.
cmd=$(head -1 "$R/train.log" | sed 's/^\$ //; s#--save-dir [^ ]*#--save-dir '"$S"'/checkpoints#; s/--patience 3/--patience -1/')
echo "$cmd" > "$S/cmd.txt"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
eval "$cmd" > "$S/train.log" 2>&1
for b in 1 2 3; do
  "$PY" -m fairseq_cli.generate "$DATA/bin" --user-dir fairseq_eb --path "$S/checkpoints/checkpoint_best.pt" \
      --gen-subset test --beam "$b" --nbest 1 --num-workers 0 --seed 4 --batch-size 256 --max-len-a 0 \
      --max-len-b 48 --cpu > "$S/generate-beam$b.txt" 2>/dev/null
  "$PY" -m fairseq_eb.scoring.cli --generate-output "$S/generate-beam$b.txt" --spm-model "$DATA/spm.model" \
      --baseline "$R/generate-beam$b.txt" > "$S/score-beam$b.txt"
done
