#!/usr/bin/env bash
# Idempotent setup: a virtual environment with torch, a Python-3.11-ready fairseq, this plugin and the
# test tools. Re-running it installs nothing new.
#   VENV=path         where the environment lives (default: .venv in the repo)
#   TORCH_SPEC=...    torch requirement (default torch==2.13.0, the CPU build; use your CUDA build on a GPU)
#   An already importable fairseq (e.g. your own from source, in VENV) is kept: we never reinstall it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
FAIRSEQ_SPEC=${FAIRSEQ_SPEC:-ve-fairseq==0.12.3}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
py="$VENV/bin/python"
pipq() { "$py" -m pip install -q --disable-pip-version-check "$@" 2>&1 | grep -v "^WARNING: Location" || true; }

# torch first, always: otherwise fairseq's requirements pull a multi-GB CUDA build.
if ! "$py" -c "import torch" 2>/dev/null; then
  echo "[setup] installing $TORCH_SPEC"
  pipq "$TORCH_SPEC"
fi
if ! "$py" -c "import fairseq" 2>/dev/null; then
  # Upstream fairseq 0.12.2 does not import on Python >= 3.11; ve-fairseq ships prebuilt wheels of
  # upstream main with that fix. Bring your own fairseq by installing it into $VENV before this script.
  echo "[setup] installing $FAIRSEQ_SPEC"
  pipq "$FAIRSEQ_SPEC"
fi
# (re)install when a dependency or test tool is missing, e.g. in a .venv made by an older checkout
if ! "$py" -c "import fairseq_eb.scoring, pytest, nltk, rouge_score, tensorboardX" 2>/dev/null \
    || [[ ! -x "$(dirname "$py")/ruff" ]]; then
  echo "[setup] installing fairseq-eb (editable) with test tools"
  pipq -e ".[test]"
fi
"$py" -c "import torch, fairseq, fairseq_eb; print('[setup] ok: torch', torch.__version__, '| fairseq', fairseq.__version__, '| fairseq-eb', fairseq_eb.__version__)"
