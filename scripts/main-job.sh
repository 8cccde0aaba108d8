#!/usr/bin/env bash
# The main job: set up .venv (first run only) and run the demo batch over samples/:
# database migrations, then DICOM + WFDB + PDF ECGs -> HL7 ORU^R01 drafts + audit rows,
# and a summary of where the drafts are. Embedded defaults (SQLite, stages in-process, the
# bundled demonstration model interprets) unless ECGWL_DATABASE_URL / ECGWL_REDIS_URL /
# ECGWL_INTERPRETER are set. The demo's data folder is the checkout's var/ (drafts in
# var/outbound/) unless ECGWL_DATA_DIR says otherwise; installed commands default to
# ~/.local/state/ecg-worklist instead (worker/settings.py).
set -euo pipefail
cd "$(dirname "$0")/.."
export ECGWL_DATA_DIR="${ECGWL_DATA_DIR:-$PWD/var}"
bash scripts/bootstrap.sh && .venv/bin/ecg-worklist demo
