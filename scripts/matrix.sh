#!/usr/bin/env bash
# The install matrix behind docs/compatibility.md: each cell is a fresh virtual environment holding one fairseq build
# and one torch, set up as a user would (their own torch/fairseq first, then scripts/setup.sh completes it from the
# lock), then (a) the plugin's fast tests (FAST_TESTS) and (b) scripts/smoke.sh, fairseq's commands end to end from
# raw text. Not run by CI: run it before a release and whenever a patch to fairseq/torch behaviour changes.
#   bash scripts/matrix.sh [CELL...]     default: every cell in CELLS; then python scripts/matrix_report.py
#   MATRIX_CACHE   wheels downloaded (PyPI torch: ~2.5-4 GB each, CUDA libraries included) or compiled (fairseq from
#                  source, ~5 min on 2 cores) once and reused by later runs (default ~/.cache/fairseq-eb-matrix)
#   MATRIX_OUT     the cells' environments, logs and results.jsonl (default runs/matrix)
#   FAIRSEQ_GIT    a clone (or URL) of fairseq's git repository, for the v0.12.2 tag (default: GitHub)
# About an hour on 2 idle CPU cores with a warm cache; run it in the background (nohup bash scripts/matrix.sh &).
# Cells are independent: on a machine busy with other (higher-priority) jobs, run them side by side, each with its
# own MATRIX_OUT, and merge: python scripts/matrix_report.py table --results runs/matrix-*/results.jsonl
# The PyPI torch cells lift this machine's pip cap on torch (/etc/xdg/pip) for their download only
# (PIP_CONFIG_FILE=/dev/null); every install into a cell is offline (--no-index) from the cache.
set -uo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${MATRIX_CACHE:-$HOME/.cache/fairseq-eb-matrix}
OUT=${MATRIX_OUT:-runs/matrix}
PY=${PYTHON:-python3.11}
FAIRSEQ_GIT=${FAIRSEQ_GIT:-https://github.com/facebookresearch/fairseq.git}
CELLS=(default source torch-2.15.0 fairseq-0.12.2 torch-2.5.1 wheel torch-2.1.2)
# the tests that touch what differs between builds: patches, checkpoint loading, batching, the task on real fairseq
# (MATRIX_TESTS="tests/a.py tests/b.py" runs others, e.g. fewer on a busy machine; the table shows the counts)
read -ra FAST_TESTS <<< "${MATRIX_TESTS:-tests/test_env.py tests/test_patches.py tests/test_compat.py \
tests/test_bad_inputs_fairseq.py tests/test_task.py tests/test_corruption.py}"
mkdir -p "$CACHE/wheels" "$CACHE/built" "$CACHE/dist" "$OUT"
OUT=$(cd "$OUT" && pwd)
# no byte-compiling of every installed file (torch alone has thousands): modules compile when first imported
export OMP_NUM_THREADS=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_COMPILE=1

say() { echo "[matrix $(date +%H:%M:%S)] $*"; }

fetch_wheels() {  # download SPECs (and their dependencies) into the cache once, from PyPI, the torch cap lifted
  local marker="$CACHE/wheels/.have-$(echo "$*" | tr -c 'A-Za-z0-9.=<>' '_')"
  [ -f "$marker" ] && return 0
  say "downloading $* (with dependencies) into $CACHE/wheels"
  local before; before=$(du -sm "$CACHE/wheels" | cut -f1)
  # one download at a time: two cells run side by side once failed here with ResolutionImpossible while
  # downloading into the shared folder together (the same torch==2.15.0 download had succeeded alone before)
  PIP_CONFIG_FILE=/dev/null flock "$CACHE/wheels/.lock" "$PY" -m pip download -q --only-binary=:all: \
    -d "$CACHE/wheels" "$@" || return 1
  echo "$(( $(du -sm "$CACHE/wheels" | cut -f1) - before )) MB downloaded" > "$marker"
}

build_fairseq() {  # SPEC or source folder: compile fairseq once, against torch 2.13.0, as a user's source build would
  local spec=$1 name=${1%%==*}
  [[ $spec == *==* ]] && ls "$CACHE/built/${name//-/_}-${spec##*==}"-*.whl >/dev/null 2>&1 && return 0
  if [ ! -x "$CACHE/buildenv/bin/python" ]; then
    "$PY" -m venv "$CACHE/buildenv"
    "$CACHE/buildenv/bin/pip" install -q torch==2.13.0 numpy cython setuptools wheel || return 1
  fi
  say "compiling $spec (no build isolation: its build must not pull another torch)"
  "$CACHE/buildenv/bin/pip" wheel -q --no-build-isolation --no-deps "$spec" -w "$CACHE/built"
}

build_fairseq_tag() {  # TAG: compile a tag of a fairseq git checkout (FAIRSEQ_GIT) once, against torch 2.13.0
  local tag=$1 src="$CACHE/src/fairseq-$1"
  ls "$CACHE/built/fairseq-${tag#v}"-*.whl >/dev/null 2>&1 && return 0
  if [ ! -d "$src" ]; then
    [ -d "$CACHE/src/fairseq.git" ] || git clone -q --bare "$FAIRSEQ_GIT" "$CACHE/src/fairseq.git" || return 1
    mkdir -p "$src" && git -C "$CACHE/src/fairseq.git" archive "$tag" | tar -x -C "$src" || return 1
  fi
  build_fairseq "$src"
}

user_env() {  # VENV PIP-ARGS...: a user's environment with their own packages, installed offline from the cache
  # (this machine's pip cap on torch, /etc/xdg/pip, lifted: a user's torch is whatever they installed)
  local v=$1; shift
  "$PY" -m venv "$v" && PIP_CONFIG_FILE=/dev/null "$v/bin/pip" install -q --no-index --find-links "$CACHE/wheels" \
    --find-links "$CACHE/built" --find-links /opt/wheels "$@"
}

prepare() {  # CELL VENV: build the cell's environment up to (not including) scripts/setup.sh
  local cell=$1 v=$2
  case $cell in
    default) ;;  # a fresh machine: setup.sh creates the environment from the lock
    wheel)
      "$CACHE/tools/bin/python" -m build --wheel --outdir "$CACHE/dist" "$ROOT" || return 1
      "$PY" -m venv "$v" && "$v/bin/pip" install -q --require-hashes --no-deps -r "$ROOT/requirements/lock.txt" \
        && "$v/bin/pip" install -q --no-deps --force-reinstall "$(ls -t "$CACHE"/dist/fairseq_eb-*.whl | head -1)" ;;
    source)
      build_fairseq fairseq-fixed==0.12.3.1 || return 1
      "$PY" -m venv "$v" && "$v/bin/pip" install -q torch==2.13.0 \
        && "$v/bin/pip" install -q --find-links "$CACHE/built" fairseq-fixed==0.12.3.1 ;;
    fairseq-0.12.2)
      # PyPI's 0.12.2 is an sdist only; record whether it builds here, then build the v0.12.2 tag of a git checkout,
      # as a user whose pip install failed would next
      if [ ! -f "$CACHE/built/fairseq-0.12.2-release.txt" ]; then
        build_fairseq fairseq==0.12.2 > "$CACHE/built/fairseq-0.12.2-release.log" 2>&1
        echo "pip wheel fairseq==0.12.2: exit $?; $(grep -m1 -E 'error: .*missing|ninja: error' \
          "$CACHE/built/fairseq-0.12.2-release.log" | sed 's|/tmp/[^ ]*/fairseq/|fairseq/|g; s/^ *//' | cut -c1-200)" \
          > "$CACHE/built/fairseq-0.12.2-release.txt"
      fi
      cat "$CACHE/built/fairseq-0.12.2-release.txt"
      build_fairseq_tag v0.12.2 || return 1
      "$PY" -m venv "$v" && "$v/bin/pip" install -q torch==2.13.0 \
        && "$v/bin/pip" install -q --find-links "$CACHE/built" fairseq==0.12.2 ;;
    torch-*)
      local t=${cell#torch-} extra=()
      # torch < 2.3 was built against NumPy 1 and cannot use NumPy 2: such users have numpy < 2
      "$PY" -c "import sys; sys.exit(tuple(map(int, '$t'.split('.')[:2])) >= (2, 3))" && extra=("numpy<2")
      fetch_wheels "torch==$t" "${extra[@]}" || return 1
      user_env "$v" "torch==$t" "${extra[@]}" ;;
    *) echo "unknown cell $cell (cells: ${CELLS[*]})"; return 2 ;;
  esac
}

run_cell() {
  local cell=$1 dir="$OUT/$1" start status=pass note="" tests="-" smoke="-"
  start=$(date +%s)
  rm -rf "$dir" && mkdir -p "$dir"
  local v="$dir/venv" log="$dir/log.txt"
  say "cell $cell: preparing"
  if ! prepare "$cell" "$v" >> "$log" 2>&1; then
    status=fail; note="preparing the environment failed: $(grep -v '^WARNING' "$log" | tail -1 | cut -c1-160)"
  elif [ "$cell" = wheel ]; then
    (cd "$dir" && "$v/bin/fairseq-eb-env" --json > env.json 2>> "$log") || { status=fail; note="fairseq-eb-env failed"; }
    case $(cd "$dir" && "$v/bin/fairseq-eb-user-dir") in "$v"/lib/*/site-packages/fairseq_eb) ;;
      *) status=fail; note="fairseq-eb-user-dir is not the installed wheel's package" ;; esac
  else
    say "cell $cell: scripts/setup.sh"
    VENV="$v" bash scripts/setup.sh > "$dir/setup.out" 2> "$dir/setup.err"
    local rc=$?
    cat "$dir/setup.out" "$dir/setup.err" >> "$log"
    if [ "$cell" = fairseq-0.12.2 ]; then  # expected to fail: setup must say why in one line, no traceback
      if [ $rc -eq 2 ] && [ "$(grep -vc '^WARNING' "$dir/setup.err")" -eq 1 ] && ! grep -q Traceback "$dir/setup.err"; then
        status=expected-fail
        note="$(cat "$CACHE/built/fairseq-0.12.2-release.txt"); the v0.12.2 tag builds, then setup.sh exits 2 with: $(
          grep -v '^WARNING' "$dir/setup.err" | cut -c1-300)"
      else
        status=fail; note="setup.sh exit $rc without the one-line explanation"
      fi
    elif [ $rc -ne 0 ]; then
      status=fail; note="setup.sh exit $rc: $(tail -1 "$dir/setup.err" | cut -c1-160)"
    else
      "$v/bin/fairseq-eb-env" --json > "$dir/env.json" 2>> "$log" || { status=fail; note="fairseq-eb-env failed"; }
    fi
  fi
  if [ "$status" = pass ]; then
    say "cell $cell: fast tests"
    local tdir="$ROOT"
    if [ "$cell" = wheel ]; then  # outside the checkout, so that the installed wheel is what the tests import
      tdir="$dir/suite" && mkdir -p "$tdir" && cp -r "$ROOT/tests" "$tdir/"
    fi
    (cd "$tdir" && timeout 1800 "$v/bin/python" -m pytest -q -p no:cacheprovider "${FAST_TESTS[@]}") \
      > "$dir/tests.log" 2>&1
    local trc=$?
    tests=$(grep -E "^[0-9]+ (passed|failed)|^=+ .*(passed|failed|error)" "$dir/tests.log" | tail -1 | tr -d '=' \
      | sed 's/^ *//; s/ in [0-9.]*s.*//')
    [ $trc -eq 0 ] || { status=fail; note="fast tests: ${tests:-exit $trc}"; }
    say "cell $cell: smoke"
    if (cd "$dir" && PATH="$v/bin:$PATH" timeout 1800 bash "$ROOT/scripts/smoke.sh" "$dir/smoke") > "$dir/smoke.log" 2>&1
    then smoke=ok
    else smoke=fail; status=fail; note="${note:+$note; }smoke: $(grep -v '^WARNING' "$dir/smoke.log" | tail -1 | cut -c1-160)"
    fi
  fi
  local size="-"
  [ -d "$v" ] && size="$(du -sm "$v" | cut -f1) MB"
  "$PY" scripts/matrix_report.py record --results "$OUT/results.jsonl" --cell "$cell" --status "$status" \
    --tests "${tests:--}" --smoke "$smoke" --seconds $(( $(date +%s) - start )) --env-json "$dir/env.json" \
    --venv "$v" --size "$size" --note "$note"
  say "cell $cell: $status ($(( $(date +%s) - start )) s) $note"
}

if [ ! -x "$CACHE/tools/bin/python" ]; then  # the wheel builder
  "$PY" -m venv "$CACHE/tools" && "$CACHE/tools/bin/pip" install -q build
fi
[ $# -gt 0 ] || set -- "${CELLS[@]}"
say "cells: $*; results: $OUT/results.jsonl"
for cell in "$@"; do
  run_cell "$cell"
done
"$PY" scripts/matrix_report.py table --results "$OUT/results.jsonl"
