"""Progress for the waits an operator sits through: a message and a bar, never a silent terminal.

    with waiting("loading the demonstration model", enabled=progress):
        ctx.interpreter()                      # seconds to minutes, no steps to count

    with tqdm(total=n) as bar, ticking(bar):   # a bar whose clock moves during a long step
        ...

    watch_pipeline(read_counts, timeout, enabled=progress)   # `batch --wait`: studies left, by state

`waiting` prints its message at once and, on a terminal, a bar that shows the seconds
elapsed (ticked by a thread, since the work gives no steps); it ends with how long it took.
`watch_pipeline` polls a cheap count (the database's counters: `reports.counts`, a few
rows, whatever the number of studies) and moves a bar as studies leave the pipeline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from tqdm import tqdm


@contextmanager
def ticking(bar: tqdm, enabled: bool = True, tick_seconds: float = 1.0) -> Iterator[None]:
    """Redraw `bar` every `tick_seconds` while the block runs, so its clock moves during a long step."""
    if not enabled:
        yield
        return
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(tick_seconds):
            bar.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()


@contextmanager
def waiting(message: str, *, enabled: bool = True, tick_seconds: float = 0.5) -> Iterator[None]:
    """Say what is being waited for, show the time passing, and say how long it took."""
    click.echo(f"{message} ...", err=True)
    started = time.monotonic()
    bar = tqdm(desc=message.split(" (")[0][:40], bar_format="{desc}: {elapsed}", disable=not enabled, leave=False)
    try:
        with ticking(bar, enabled, tick_seconds):
            yield
    finally:
        bar.close()
    click.echo(f"{message}: done in {time.monotonic() - started:.1f} s", err=True)


def watch_pipeline(
    left_in_pipeline: Callable[[], tuple[int, dict[str, int]]], timeout: float, *, enabled: bool = True,
    poll_seconds: float = 1.0,
) -> bool:
    """Poll until nothing is left in the pipeline (True) or `timeout` passes (False).

    `left_in_pipeline()` returns (studies still in a stage, {state: n} of those) and must be
    cheap: it runs every `poll_seconds`.
    """
    deadline = time.monotonic() + timeout
    left, by_state = left_in_pipeline()
    peak = left  # the most studies seen in the pipeline at once: the bar's length
    with tqdm(total=peak, desc="waiting for the workers", unit="ecg", disable=not enabled) as bar:
        while True:
            peak = max(peak, left)
            bar.total, bar.n = peak, peak - left
            bar.set_postfix({state: n for state, n in by_state.items() if n}, refresh=True)
            if left == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_seconds)
            left, by_state = left_in_pipeline()
