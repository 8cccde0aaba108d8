"""The fault suite at full scale, with the product's real bounds: the README's reliability table.

The faults of tests/faults/faults.py (whole CPU worker killed, GPU worker killed mid-batch,
Redis FLUSHALL and restart, Postgres connections cut, data and outbound volumes full, a poison
file), each on 200 distinct studies through the real pipeline (watch, a prefork CPU worker, a
solo GPU worker; Postgres; a redis-server of its own), with the default lease (90 s),
heartbeat (15 s), reconciler interval (30 s) and retry backoff (5 s doubling to 60 s), the
6-hour Redis visibility timeout, a 150 s outage for Postgres, Redis and the volumes, and
GPU batches of 64 that take 96 s (longer than a lease). The baseline, measured in the same
run, is the same 200 studies with no fault; each fault's whole run is given as a ratio to it.

Run as root (the volumes are size-limited tmpfs mounts), from the repository root:

    .venv/bin/python benchmarks/faults.py [--studies 200] [--only postgres-outage ...]

Takes about 40 minutes on the 2-core development machine. Needs PostgreSQL (ECGWL_TEST_POSTGRES_URL
or the local server) and redis-server on the PATH.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.faults.faults import FAULTS, NO_FAULT  # noqa: E402
from tests.faults.harness import BENCH_SCALE, FaultLab, format_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=BENCH_SCALE.studies)
    parser.add_argument("--only", nargs="*", choices=sorted(FAULTS), help="Run only these faults.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    scale = dataclasses.replace(BENCH_SCALE, studies=args.studies)
    faults = [FAULTS[name] for name in (args.only or FAULTS)]
    print(f"{scale.studies} studies per fault; lease {scale.lease_seconds:.0f} s, heartbeat "
          f"{scale.heartbeat_seconds:.0f} s, reconciler every {scale.reconcile_every_seconds:.0f} s, retries "
          f"{scale.retry_base_seconds:.0f}-{scale.retry_max_seconds:.0f} s, outages {scale.fault_seconds:.0f} s, "
          f"GPU batches of {scale.batch_size} at {scale.gpu_seconds_per_study} s per study (the GPU fault)",
          flush=True)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ecgwl-faults-") as folder, FaultLab(Path(folder), scale) as lab:
        if not lab.volumes:
            print("no size-limited volumes (not root?): the two volume faults are left out", flush=True)
            faults = [fault for fault in faults if not fault.needs_volumes]
        baseline = lab.run(NO_FAULT)
        print(format_table([baseline]), flush=True)
        for fault in faults:
            row = lab.run(fault)
            print(format_table([row], baseline=baseline), flush=True)
            for note in row.notes[:10]:
                print("   ", note, flush=True)
        print(f"\nall faults ({(time.monotonic() - began) / 60:.0f} min):")
        print(format_table(lab.rows, baseline=baseline))


if __name__ == "__main__":
    main()
