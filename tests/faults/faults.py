"""The faults of the fault suite: what each does to the running pipeline, and when.

Each waits until half the studies are dropped and some are being worked on, strikes, drops
the other half (files keep arriving during a fault), and returns when the fault is over.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.faults.harness import Fault, FaultLab, fill


def _working(lab: FaultLab, prefix: str, *, states: tuple[str, ...], held: bool = True, at_least: int = 1,
             timeout: float = 600) -> None:
    """Until at least `at_least` studies of the batch are in `states` (and held by a worker)."""
    lab.wait_for(lambda: sum(1 for s in lab.batch_studies(prefix)
                             if s["state"] in states and (s["lease_holder"] or not held)) >= at_least,
                 timeout, f"studies of {prefix} in {states}")


def cpu_worker_kill(lab: FaultLab, prefix: str, arrive: Callable[[], None]) -> float:
    _working(lab, prefix, states=("queued_prepare", "interpreted"))
    lab.supervisor.kill("cpu")  # the Celery worker and its pool, mid-task; restarted after RestartSec
    arrive()
    return 0.0


def _long_gpu_batches(lab: FaultLab) -> None:
    lab.supervisor.replace("gpu", test_stage_delay_seconds=lab.scale.gpu_seconds_per_study)
    lab.wait_until_ready()


def _normal_gpu(lab: FaultLab) -> None:
    lab.supervisor.replace("gpu", test_stage_delay_seconds=lab.scale.stage_delay_seconds)
    lab.wait_until_ready()


def interpret_worker_kill(lab: FaultLab, prefix: str, arrive: Callable[[], None]) -> float:
    # A first batch finishes (it runs longer than a lease: the heartbeat must hold it), then
    # the GPU worker dies in the middle of the next one.
    _working(lab, prefix, states=("interpreted", "awaiting_signoff"), held=False, at_least=lab.scale.batch_size // 2)
    arrive()
    # A batch of at least two is held: it has seconds left to run (1.5 s a study), so the
    # kill lands inside it, not just after it.
    _working(lab, prefix, states=("queued_interpret",), at_least=2)
    lab.supervisor.kill("gpu")
    return 0.0


def redis_flushall(lab: FaultLab, prefix: str, arrive: Callable[[], None]) -> float:
    _working(lab, prefix, states=("queued_prepare", "queued_interpret", "interpreted"), held=False)
    arrive()
    time.sleep(0.5)  # the new arrivals' messages are in Redis too
    lab.redis().flushall()
    return 0.0


def redis_restart(lab: FaultLab, prefix: str, arrive: Callable[[], None]) -> float:
    _working(lab, prefix, states=("queued_prepare", "queued_interpret", "interpreted"), held=False)
    began = time.monotonic()
    lab.stop_redis()  # everything it held is gone: no persistence
    arrive()
    time.sleep(lab.scale.fault_seconds)
    lab.start_redis()
    return time.monotonic() - began


def postgres_outage(lab: FaultLab, prefix: str, arrive: Callable[[], None]) -> float:
    _working(lab, prefix, states=("queued_prepare", "queued_interpret", "interpreted"))
    began = time.monotonic()
    lab.proxy.cut()  # every connection dropped, new ones refused
    arrive()
    time.sleep(lab.scale.fault_seconds)
    lab.proxy.restore()
    return time.monotonic() - began


def _volume_full(folder_of: Callable[[FaultLab], object], states: tuple[str, ...]) -> Callable[..., float]:
    def inject(lab: FaultLab, prefix: str, arrive: Callable[[], None]) -> float:
        _working(lab, prefix, states=states, held=False)
        began = time.monotonic()
        filler = fill(folder_of(lab))  # type: ignore[arg-type]
        arrive()
        time.sleep(lab.scale.fault_seconds)
        filler.unlink()
        return time.monotonic() - began

    return inject


def nothing(lab: FaultLab, prefix: str, arrive: Callable[[], None]) -> float:
    arrive()  # the baseline: the same run with no fault
    return 0.0


NO_FAULT = Fault("no fault (baseline)", "the same run, nothing injected", nothing)


def poison(lab: FaultLab, prefix: str, arrive: Callable[[], None]) -> float:
    arrive()  # the fault is in the input itself: it starts with the drop
    return 0.0


FAULTS: dict[str, Fault] = {fault.name: fault for fault in [
    Fault("cpu-worker-kill", "a whole CPU worker (parent and pool) SIGKILLed mid-run", cpu_worker_kill),
    Fault("interpret-worker-kill", "the GPU worker SIGKILLed in the middle of a batch longer than a lease",
          interpret_worker_kill, before=_long_gpu_batches, after=_normal_gpu),
    Fault("redis-flushall", "FLUSHALL on the broker mid-run", redis_flushall),
    Fault("redis-restart", "the broker killed and restarted empty", redis_restart),
    Fault("postgres-outage", "every Postgres connection dropped and refused", postgres_outage),
    Fault("data-volume-full", "the data volume (archive, prepared files) full",
          _volume_full(lambda lab: lab.data_dir, ("queued_prepare", "queued_interpret")), needs_volumes=True),
    Fault("outbound-volume-full", "the outbound volume (.hl7 files) full",
          _volume_full(lambda lab: lab.outbound_dir, ("queued_interpret", "interpreted")), needs_volumes=True),
    Fault("poison-file", "a file that kills the worker preparing it, among good ones", poison, poison=True),
]}
