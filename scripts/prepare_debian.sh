#!/usr/bin/env bash
# Build the offline default dataset (Debian package descriptions -> synopsis) and binarise it.
#
# Usage: scripts/prepare_debian.sh DIR [VOCAB_SIZE [MAX_SRC_PIECES]]
#   DIR             output directory (raw/, spm.model, spm/, bin/, manifest.json);
#                   default: data/debian in the repository, as scripts/demo.sh
#   VOCAB_SIZE      SentencePiece vocabulary size (default 4000, as scripts/demo.sh)
#   MAX_SRC_PIECES  sources are cut to this many pieces (default 32, as scripts/demo.sh)
# Needs apt (Debian/Ubuntu) and root; every step is skipped when already done.
# Extra options: python -m fairseq_eb.prep.debian --help, python -m fairseq_eb.prep.binarize --help
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${VENV:-$ROOT/.venv}/bin/python"
# absolute: apt resolves relative directories against /etc/apt
DIR="$(realpath -m "${1:-$ROOT/data/debian}")"
"$PY" -m fairseq_eb.prep.debian --out "$DIR"
"$PY" -m fairseq_eb.prep.binarize --data "$DIR" --vocab-size "${2:-4000}" --max-src-pieces "${3:-32}"
