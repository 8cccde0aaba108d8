"""The hostile-input corpus through the real watcher and stages, one process per input: what
became of each input, why, and the process's peak memory.

    .venv/bin/python benchmarks/hostile_inputs.py              # the sizes the issue measured (200 MB .dat, 1 GiB bombs)
    .venv/bin/python benchmarks/hostile_inputs.py --scale test # the test suite's sizes (seconds)

Each input (tests/faults/hostile_corpus.py, generated here; nothing binary is committed) is
dropped alone into an inbox of its own and a fresh child process runs what `ecg-worklist
watch` runs on it (scan, take, prepare, interpret with the protocol reader, report; embedded
SQLite, no broker) until it settles, then reports its own peak resident memory (VmHWM). The baseline, measured the same way in the same run, is a valid ECG (the
bundled sample DICOM): the memory of the pipeline itself. Afterwards the bait files outside
the inboxes must be unread (access time, where the file system keeps it), uncopied (their
bytes nowhere under any data folder) and unregistered. At full scale, three valid ECGs as large
as the default limits let through (`build_limit_cases`) show the most a study may cost.

Prints one row per input: outcome (quarantined / study / reported / LEFT), the reason (first
line of the .reason file), peak RSS in MB and its ratio to the baseline; then the totals.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.faults.hostile_corpus import SAMPLES, SECRET, build_corpus, build_limit_cases  # noqa: E402

GOAL_MB = 1024.0


def run_one(inbox: Path, data: Path) -> dict:
    """In the child: watch `inbox` until it settles; what happened, as JSON-able counts."""
    import sqlalchemy as sa

    from ingest.intake.watch import InboxScanner
    from reports import store
    from reports.db import Study
    from worker.context import PipelineContext
    from worker.settings import Settings
    from worker.watch_loop import FailureLog, scan_once

    settings = Settings(data_dir=data, inbox_dirs=[inbox], database_url=None, redis_url=None,
                        stable_seconds=0.0, orphan_seconds=0.0, interpreter="protocol")
    store.upgrade(settings.effective_database_url)
    ctx = PipelineContext.create(settings)
    scanner = InboxScanner([inbox], stable_seconds=0.0, orphan_seconds=0.0)
    failures = FailureLog()
    errors = 0
    for _ in range(3):
        errors += scan_once(ctx, scanner, failures)["error"]
        ctx.dispatcher.run_until_idle(ctx)
    with ctx.session() as session:
        states = list(session.execute(sa.select(Study.state)).scalars())
    reasons = [p.read_text(encoding="utf-8").splitlines()[0] for p in sorted(settings.quarantine_dir.rglob("*.reason"))]
    left = sorted(str(p.relative_to(inbox)) for p in inbox.rglob("*"))
    ctx.close()
    return {"errors": errors, "states": states, "reasons": reasons, "left": left, "peak_kib": _peak_kib()}


def _peak_kib() -> int:
    """This process's peak resident memory since it started (VmHWM). Not `ru_maxrss`: on Linux
    that also counts what the parent had resident when it forked this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(inbox: Path, data: Path) -> tuple[dict, float]:
    """Run one input in a child process; its result and peak RSS in MB (the child's own
    VmHWM; `wait4`'s ru_maxrss, which includes the parent's memory at fork, if it crashed)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = data.parent / f"{data.name}.json"
    process = subprocess.Popen([sys.executable, __file__, "--one", str(inbox), "--data", str(data),
                                "--out", str(out)], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    stderr = process.stderr.read() if process.stderr else ""
    if status != 0 or not out.exists():
        return {"crash": f"exit status {status}: {stderr.strip().splitlines()[-1:]}"}, usage.ru_maxrss / 1024
    result = json.loads(out.read_text())
    return result, result["peak_kib"] / 1024


def outcome_of(result: dict, expect: str) -> tuple[str, str]:
    if "crash" in result:
        return "CRASHED", result["crash"]
    if result["errors"]:
        return "LOOPING", f"{result['errors']} failed scans"
    if result["reasons"]:
        return "quarantined", "; ".join(dict.fromkeys(result["reasons"]))
    if result["states"] and all(state == "awaiting_signoff" for state in result["states"]):
        return "study", "a valid ECG: drafted"
    if expect == "reported" and result["left"]:
        return "reported", "logged once, left in place: " + ", ".join(result["left"][:2])
    return "LEFT", ", ".join(result["left"][:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["test", "full"], default="full")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    if args.one:
        import logging

        logging.basicConfig(level=logging.ERROR)
        args.out.write_text(json.dumps(run_one(args.one, args.data)))
        return 0

    work = Path(tempfile.mkdtemp(prefix="ecgwl-hostile-"))
    try:
        started = time.monotonic()
        corpus = build_corpus(work / "inbox", work / "outside", scale=args.scale)
        baseline_inbox = work / "baseline" / "valid"
        baseline_inbox.mkdir(parents=True)
        shutil.copyfile(SAMPLES / "demo-dicom.dcm", baseline_inbox / "valid.dcm")
        for bait in corpus.outside_files:
            os.utime(bait, (1, time.time()))  # a read from now on moves the access time
        print(f"hostile-input corpus: {len(corpus.items)} inputs, scale {args.scale} "
              f"(written in {time.monotonic() - started:.1f} s); one process per input\n")

        result, baseline_mb = measure(baseline_inbox, work / "data" / "baseline")
        print(f"baseline (a valid DICOM ECG through the same pipeline): {outcome_of(result, 'study')[0]}, "
              f"peak RSS {baseline_mb:.0f} MB\n")
        print(f"| input | outcome | reason | peak RSS MB | vs baseline |")
        print(f"|---|---|---|---:|---:|")
        rows = []
        limit_cases = build_limit_cases(work / "limits") if args.scale == "full" else []
        for item in corpus.items + limit_cases:
            inbox = (work / "limits" if item in limit_cases else corpus.inbox) / item.name
            result, peak_mb = measure(inbox, work / "data" / item.name)
            outcome, reason = outcome_of(result, item.expect)
            ok = outcome == item.expect and (item.expect != "quarantined" or item.reason.lower() in reason.lower())
            rows.append((item, outcome, ok, peak_mb))
            cell = reason[:150].replace("|", "\\|")  # a Markdown table cell
            print(f"| {item.name} | {outcome}{'' if ok else ' (UNEXPECTED)'} | {cell} | "
                  f"{peak_mb:.0f} | {peak_mb / baseline_mb:.2f}x |", flush=True)

        atime_read = [bait.name for bait in corpus.outside_files if bait.stat().st_atime != 1]
        copied = [str(path.relative_to(work)) for path in (work / "data").rglob("*")
                  if path.is_file() and not path.is_symlink() and SECRET in path.read_bytes()]
        handled = sum(ok for _, _, ok, _ in rows)
        worst = max(rows, key=lambda row: row[3])
        print(f"\ninputs handled as expected (quarantined with a readable reason, reported once, or a study): "
              f"{handled}/{len(rows)} ({100 * handled / len(rows):.0f}%)")
        print(f"files outside the inboxes read (access time moved): {len(atime_read)} {atime_read or ''}")
        print(f"files outside the inboxes copied under a data folder: {len(copied)} {copied or ''}")
        print(f"peak RSS per input: max {worst[3]:.0f} MB ({worst[0].name}), baseline {baseline_mb:.0f} MB, "
              f"goal < {GOAL_MB:.0f} MB: {'met' if worst[3] < GOAL_MB else 'NOT met'}")
        return 0 if handled == len(rows) and not atime_read and not copied and worst[3] < GOAL_MB else 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
