#!/usr/bin/env bash
# Kill trials (docs/reliability.md): the `tiny` recipe, preparation included (2 methods, 1 seed, 2 beams), run
# uninterrupted once, then N seeded trials that SIGKILL the whole process group at a random moment, re-run the
# same command until it finishes and compare results.json's scores with the uninterrupted run's (to the last
# digit), with no temporary or lock file left, no complete step redone and no complete file lost.
#
# Usage: scripts/fault_trials.sh [N] [FIRST_SEED]     (default N=50, FIRST_SEED=1)
# Environment: WORK (default runs-faults/work; the uninterrupted run is cached there as reference.json),
#   WALL_S (seconds the kill moments spread over; default the cached run's wall time, then that of a trial run
#   that finished before its kill), AIM (a phase: every kill aimed inside it, e.g. AIM="checkpoint saving"; see
#   tests/faults/harness.py AIMS), VENV (default .venv). One JSON line per trial, then a summary; exit 1 on a failure.
# A trial costs about 1.5 uninterrupted runs (10-30 min each on 2 shared CPU cores; far less on an idle machine).
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="${VENV:-.venv}/bin/python"
exec "$PY" -m tests.faults.harness --trials "${1:-50}" --seed "${2:-1}" --work "${WORK:-runs-faults/work}" \
  ${WALL_S:+--wall-s "$WALL_S"} ${AIM:+--aim "$AIM"}
