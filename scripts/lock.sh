#!/usr/bin/env bash
# Refresh requirements/lock.txt, the hashed lock scripts/setup.sh installs from: resolve requirements/lock.in (torch,
# the default fairseq build) and pyproject.toml (the plugin's dependencies and test tools) with pip-tools'
# pip-compile, keeping every sha256 the index offers for each pinned version. Run it on Python 3.11 (the lock is
# resolved for the running Python); then run the install matrix (scripts/matrix.sh) and commit the lock with its results.
#   bash scripts/lock.sh              refresh, keeping current pins where still allowed
#   bash scripts/lock.sh --upgrade    move every pin to the newest allowed version
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
cd "$(dirname "$0")/.."
TOOLS=${LOCK_TOOLS:-$HOME/.cache/fairseq-eb-lock-tools}
if [ ! -x "$TOOLS/bin/pip-compile" ]; then
  "${PYTHON:-python3.11}" -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q "pip-tools>=7.4"
fi
"$TOOLS/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
  --no-emit-find-links --extra test -o requirements/lock.txt "$@" requirements/lock.in pyproject.toml
echo "[lock] requirements/lock.txt: $(grep -c '^[A-Za-z0-9].*==' requirements/lock.txt) packages"
