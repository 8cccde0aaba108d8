#!/usr/bin/env bash
# The main job: set up .venv (first run only) and run the demo batch over samples/:
# database migrations, then DICOM + WFDB + PDF ECGs -> HL7 ORU^R01 drafts + audit rows,
# and a summary of where the drafts are. Embedded defaults (SQLite under var/, stages
# in-process, the bundled demonstration model interprets) unless ECGWL_DATABASE_URL /
# ECGWL_REDIS_URL / ECGWL_INTERPRETER are set.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh && .venv/bin/ecg-worklist demo
