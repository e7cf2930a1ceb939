#!/usr/bin/env bash
# Kill trials (docs/reliability.md): the `tiny` recipe, preparation included (2 methods, 1 seed, 2 beams), run
# uninterrupted once, then N seeded trials that SIGKILL the whole process group at a random moment, re-run the
# same command until it finishes and compare results.json's scores with the uninterrupted run's (to the last
# digit), with no temporary or lock file left, no complete step redone and no complete file lost.
#
# Usage: scripts/fault_trials.sh [N] [FIRST_SEED]     (default N=50, FIRST_SEED=1)
# Environment: WORK (default runs-faults/work; the uninterrupted run is cached there as reference.json),
#   VENV (default .venv). One JSON line per trial, then a summary line; exit 1 when any trial failed.
# About 1.5 x the uninterrupted run per trial (the reference takes ~1-3 min on 2 busy CPU cores).
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="${VENV:-.venv}/bin/python"
exec "$PY" -m tests.faults.harness --trials "${1:-50}" --seed "${2:-1}" --work "${WORK:-runs-faults/work}"
