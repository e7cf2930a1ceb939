#!/usr/bin/env bash
# For each patch in fairseq_eb/patches.py, run the test it names with that patch switched off
# (FAIRSEQ_EB_PATCHES=-NAME) and report whether the test fails, as it must: a patch whose test still passes without
# it is either not needed on this stack or not tested. Patches that do not apply here are reported as such.
#   bash scripts/check_patch_tests.sh [NAME...]      (default: every patch; a few minutes on 2 cores)
set -uo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
cd "$(dirname "$0")/.."
py=${VENV:-.venv}/bin/python
mapfile -t rows < <("$py" -c "
import sys, fairseq, fairseq_eb
from fairseq_eb import patches
for s in patches.status():
    if not sys.argv[1:] or s.patch.name in sys.argv[1:]:
        print(s.patch.name, s.patch.test, int(s.applicable))" "$@")
status=0
for row in "${rows[@]}"; do
  read -r name test applicable <<< "$row"
  if [ "$applicable" = 0 ]; then echo "$name: does not apply here (skipped)"; continue; fi
  if FAIRSEQ_EB_PATCHES="-$name" "$py" -m pytest -q -x -p no:cacheprovider "$test" > /dev/null 2>&1; then
    echo "$name: $test PASSES without the patch"; status=1
  else
    echo "$name: $test fails without the patch (as it must)"
  fi
done
exit $status
