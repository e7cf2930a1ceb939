#!/usr/bin/env bash
# Idempotent setup: a virtual environment with torch, a Python-3.11-ready fairseq, this plugin and the test tools,
# installed from the hashed lock file requirements/lock.txt (pip --require-hashes: exactly the versions the tests and
# docs/compatibility.md were measured with; a tampered or substituted file is refused). Re-running installs nothing.
#   VENV=path         where the environment lives (default: .venv in the repo)
#   TORCH_SPEC=...    install this torch instead of the locked one (e.g. your CUDA build: "torch==2.5.1"); not hashed
#   FAIRSEQ_SPEC=...  install this fairseq (with --no-deps) instead of the locked ve-fairseq, where none is installed
#   LOCK=file         the lock file (default requirements/lock.txt; refresh it with scripts/lock.sh)
# An environment this script did not create is only completed: packages already in it (your own torch, your own
# fairseq from source or a fork, your numpy) are never replaced. One it created follows the lock exactly.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
LOCK=${LOCK:-requirements/lock.txt}
PYTHON=${PYTHON:-python3}
MARK="$VENV/.fairseq-eb-lock"  # present in environments this script created

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
  : > "$MARK"
fi
py="$VENV/bin/python"
pipq() { "$py" -m pip install -q --disable-pip-version-check "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
skip=()
if [ -n "${TORCH_SPEC:-}" ] && ! "$py" -c "import torch" 2>/dev/null; then
  echo "[setup] installing $TORCH_SPEC (TORCH_SPEC: not from the lock)"
  pipq "$TORCH_SPEC"
  [ ! -f "$MARK" ] || echo torch >> "$MARK"  # remembered: later runs keep this torch
fi
if "$py" -c "import torch" 2>/dev/null && { [ ! -f "$MARK" ] || grep -qx torch "$MARK"; }; then
  skip+=(torch torchaudio)  # your torch: torchaudio (declared by fairseq, never imported by text tasks) must match it
fi
own_fairseq=$("$py" -c "
import sys; sys.path.insert(0, '.')
from fairseq_eb.fairseq_check import distribution_of
d = distribution_of('fairseq'); print(d[0] if d else '')")
if [ -n "${FAIRSEQ_SPEC:-}" ] && [ -z "$own_fairseq" ]; then
  skip+=(ve-fairseq)  # installed after the lock, which brings its dependencies
elif [ -n "$own_fairseq" ] && [ "$own_fairseq" != "ve-fairseq" ]; then
  skip+=(ve-fairseq)
  if "$py" -c "import torch" 2>/dev/null; then  # a fairseq that cannot import: say why before installing anything
    "$py" -m fairseq_eb.fairseq_check || [ $? -eq 1 ] || exit 2
  fi
fi
keep=(); [ -f "$MARK" ] || keep=(--keep-installed)
todo=$(mktemp); trap 'rm -f "$todo"' EXIT
"$py" scripts/lock_select.py "$LOCK" --skip "${skip[@]}" "${keep[@]}" > "$todo"
if [ -s "$todo" ]; then
  echo "[setup] installing $(grep -c '==' "$todo") locked packages from $LOCK (hash-checked)"
  pipq --require-hashes --no-deps -r "$todo"
fi
if [ -n "${FAIRSEQ_SPEC:-}" ] && [ -z "$own_fairseq" ]; then
  echo "[setup] installing $FAIRSEQ_SPEC (FAIRSEQ_SPEC: not from the lock)"
  pipq --no-deps "$FAIRSEQ_SPEC"
fi
if ! (cd / && "$py" -c "import importlib.metadata as m; m.version('fairseq-eb')" 2>/dev/null) \
    || [[ ! -x "$VENV/bin/fairseq-eb-env" ]]; then
  # built without isolation (offline-safe); a setuptools too old to build an editable wheel (< 70.1 without the wheel
  # package, e.g. a venv's bundled 65.5 in an environment you brought) gets the locked one first
  if ! "$py" -c "import setuptools.command.bdist_wheel" 2>/dev/null && ! "$py" -c "import wheel" 2>/dev/null; then
    echo "[setup] updating setuptools (the locked version): the installed one cannot build an editable install"
    "$py" scripts/lock_select.py "$LOCK" --only setuptools > "$todo"
    pipq --require-hashes --no-deps -r "$todo"
  fi
  echo "[setup] installing fairseq-eb (editable; its dependencies come from the lock)"
  pipq --no-deps --no-build-isolation -e .
fi
"$py" -m fairseq_eb.fairseq_check || { [ $? -eq 1 ] && echo "[setup] error: no fairseq installed" >&2; exit 2; }
"$py" -m pip check --disable-pip-version-check >/dev/null 2>&1 \
  || echo "[setup] note: pip check: $("$py" -m pip check 2>/dev/null | head -3 | tr '\n' ';')"
"$py" -c "import torch, fairseq, fairseq_eb; print('[setup] ok: torch', torch.__version__, '| fairseq', fairseq.__version__, '| fairseq-eb', fairseq_eb.__version__)"
