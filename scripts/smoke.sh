#!/usr/bin/env bash
# End-to-end smoke of an installed plugin, from raw text, with fairseq's own commands as a user runs them:
# fairseq-preprocess -> 20 updates of fairseq-train --user-dir "$(fairseq-eb-user-dir)" with the replacement task
# and the GP criterion -> fairseq-generate (every test sentence must come out) -> a sequence_risk stage of 3 updates
# from that checkpoint. Uses the fairseq-* commands and python on PATH (e.g. PATH="$VENV/bin:$PATH"); ~1-2 min on
# 2 CPU cores. Used by scripts/matrix.sh.   Usage: scripts/smoke.sh [WORKDIR]   (default: a new temporary folder)
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
W=${1:-$(mktemp -d)}
mkdir -p "$W/raw"
export OMP_NUM_THREADS=1
python - "$W/raw" <<'EOF'
import random, sys
rng = random.Random(0)
vocab = [f"w{i}" for i in range(30)]
for split, n in (("train", 400), ("valid", 40), ("test", 20)):
    with open(f"{sys.argv[1]}/{split}.src", "w") as fs, open(f"{sys.argv[1]}/{split}.tgt", "w") as ft:
        for _ in range(n):
            words = [rng.choice(vocab) for _ in range(rng.randint(3, 10))]
            fs.write(" ".join(words) + "\n")
            ft.write(" ".join(words[:4][::-1]) + "\n")
EOF
EB=$(fairseq-eb-user-dir)
echo "[smoke] user dir $EB"
MODEL=(--arch transformer --encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 32 --decoder-embed-dim 32
       --encoder-ffn-embed-dim 64 --decoder-ffn-embed-dim 64 --encoder-attention-heads 2 --decoder-attention-heads 2
       --share-all-embeddings)
COMMON=(--optimizer adam --lr 1e-3 --max-tokens 500 --cpu --num-workers 0 --seed 1 --log-format simple
        --log-interval 5 --no-progress-bar --no-epoch-checkpoints)
fairseq-preprocess --source-lang src --target-lang tgt --trainpref "$W/raw/train" --validpref "$W/raw/valid" \
  --testpref "$W/raw/test" --destdir "$W/bin" --joined-dictionary --workers 1 > "$W/preprocess.log" 2>&1
fairseq-train "$W/bin" --user-dir "$EB" --task translation_with_replacement --replace-sample-prob 0.5 \
  --replace-token-prob 0.3 --criterion label_smoothed_cross_entropy_with_gp --label-smoothing 0.1 --gp-epsilon 1.0 \
  "${MODEL[@]}" "${COMMON[@]}" --max-update 20 --save-dir "$W/ck" > "$W/train.log" 2>&1
grep -q "num_updates 20\|num_updates=20" "$W/train.log" || { echo "[smoke] train: no 20th update" >&2; exit 1; }
fairseq-generate "$W/bin" --user-dir "$EB" --task translation_with_replacement --path "$W/ck/checkpoint_last.pt" \
  --beam 2 --cpu --max-tokens 500 --gen-subset test > "$W/generate.out" 2> "$W/generate.log"
hyps=$(grep -c "^H-" "$W/generate.out" || true)
[ "$hyps" -eq 20 ] || { echo "[smoke] generate: $hyps of 20 test sentences decoded" >&2; exit 1; }
fairseq-train "$W/bin" --user-dir "$EB" --task translation --criterion sequence_risk --seq-beam 2 \
  --seq-max-len-b 12 --label-smoothing 0.1 --finetune-from-model "$W/ck/checkpoint_last.pt" "${MODEL[@]}" \
  "${COMMON[@]}" --max-update 3 --disable-validation --save-dir "$W/ck-seq" > "$W/seq.log" 2>&1
[ -f "$W/ck-seq/checkpoint_last.pt" ] || { echo "[smoke] sequence_risk: no checkpoint" >&2; exit 1; }
echo "[smoke] ok: preprocess, 20 updates RR+GP, generate 20/20, sequence_risk 3 updates ($W)"
