#!/usr/bin/env bash
# Run the test suite (sets up the environment first if needed): ruff (lint + import order, configured in
# pyproject.toml), then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
"${VENV:-.venv}/bin/python" -m ruff check .
exec "${VENV:-.venv}/bin/python" -m pytest -q "$@"
