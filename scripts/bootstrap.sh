#!/usr/bin/env bash
# Make (or refresh) the project's virtual environment in .venv.
# Idempotent: does nothing when pyproject.toml has not changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ -f "$stamp" ]; then
  exit 0
fi
echo "== setting up .venv (one time, about a minute) =="
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build of torch; a plain "torch" would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0" || .venv/bin/python -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
.venv/bin/python -m pip install -q -e '.[test]'
rm -f .venv/.installed-*
touch "$stamp"
