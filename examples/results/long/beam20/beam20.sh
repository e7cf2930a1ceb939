#!/usr/bin/env bash
# issue 28 point 4: the baseline's beam curve to 20 (seed 1, valid-BLEU selection), both test sets; from /work/runs-28 (955f20d)
set -uo pipefail
while kill -0 23680 2>/dev/null; do sleep 20; done   # the rr seed-1 driver
cd /work/runs-28
R=/work/runs/long/runs/baseline/default/seed1
for sub in test ood; do
  f=$R/generate-beam20-$sub.txt
  [ -s $f ] || { OMP_NUM_THREADS=1 .venv/bin/python -m fairseq_cli.generate /work/data/ddtp-it/bin --user-dir /work/runs-28/fairseq_eb --path $R/checkpoints/checkpoint_best.pt --gen-subset $sub --beam 20 --nbest 1 --num-workers 0 --seed 1 --batch-size 64 --max-len-a 1.5 --max-len-b 10 --cpu > $f.tmp 2> $R/generate-beam20-$sub.log && mv $f.tmp $f; }
  [ -s $R/score-beam20-$sub.json ] || .venv/bin/python - "$f" "$R/score-beam20-$sub.json" <<'PY'
import json, sys
from fairseq_eb.scoring import read_generate_output
from fairseq_eb.scoring.translation import translation_scores
from fairseq_eb.diagnose.repetition import repeated_ngram_share
hyps, refs = read_generate_output(sys.argv[1], spm_model="/work/data/ddtp-it/spm.model")
r = translation_scores(hyps, refs); r["repeat-2"] = 100.0 * repeated_ngram_share(hyps, 2, "word"); r["n"] = len(hyps)
json.dump(r, open(sys.argv[2], "w"), indent=1)
print(sys.argv[2], {k: r[k] for k in ("bleu-cased", "chrf", "len-ratio", "halluc")})
PY
done
echo "$(date) beam20 done" >> /work/runs/long/drive.log
