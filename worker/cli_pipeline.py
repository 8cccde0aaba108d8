"""Commands of `ecg-worklist` that run the worklist itself (see worker/cli.py for the table of contents).

    ecg-worklist watch                          poll the inboxes, register, archive, enqueue; reconcile
    ecg-worklist batch DIR [--wait S]           the nightly job over an existing archive (read-only)
    ecg-worklist worker --queues prepare,report a Celery worker (CPU queues, prefork pool)
    ecg-worklist worker --queues interpret      the GPU worker (solo pool, model loaded once)
    ecg-worklist reconcile                      free studies whose worker is gone, re-send lost messages
    ecg-worklist demo                           the main job: db upgrade + batch over samples/

Configuration comes from `ECGWL_*` environment variables (worker/settings.py). With no
ECGWL_REDIS_URL, `watch`, `batch`, `reconcile` and `demo` run the stages in this process.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from worker.cli_errors import needs_readers, require_schema
from worker.progress import waiting
from worker.settings import Settings

if TYPE_CHECKING:  # imported late at run time: keeps `--help` fast
    from worker.context import PipelineContext

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"


def _fail(message: str) -> NoReturn:
    click.echo(message, err=True)
    raise SystemExit(1)


def _logging(settings: Settings, level: str = "INFO") -> None:
    from worker.logs import configure_logging

    configure_logging(settings.log_format, level)


def _context(settings: Settings) -> PipelineContext:
    from worker.context import PipelineContext

    return PipelineContext.create(settings)


def _wait_until_settled(ctx: PipelineContext, timeout: float, *, progress: bool) -> bool:
    """With a broker: until no study is still in a stage (or timeout), with a bar.

    Each poll reads the database's counters by state (`reports.counts`: a few rows), not the
    studies or the drafts, so it costs the same at a hundred studies or a million."""
    from reports.counts import counts_by_state
    from worker.batch import WAITING_STATES
    from worker.progress import watch_pipeline

    def left() -> tuple[int, dict[str, int]]:
        with ctx.session() as session:
            counts = counts_by_state(session)
        waiting = {state.value: counts.get(state.value, 0) for state in WAITING_STATES}
        return sum(waiting.values()), waiting

    return watch_pipeline(left, timeout, enabled=progress)


def _load_interpreter(ctx: PipelineContext, *, progress: bool) -> None:
    """Load the model before the work starts, saying so: it takes seconds to a minute, and a
    bar at 0/4 that does not move meanwhile looks like a hang."""
    if ctx.settings.interpreter != "model":
        return
    where = ctx.settings.model_path or "model/demo, the bundled demonstration model"
    with waiting(f"loading the interpreter ({where})", enabled=progress):
        ctx.interpreter()


def _run_batch(settings: Settings, folder: Path, *, wait: float, progress: bool) -> None:
    from worker.batch import resume_leftovers, run_batch, run_in_process, summarize
    from worker.watch_loop import checkpoint_audit

    ctx = _context(settings)
    try:
        resumed = resume_leftovers(ctx)
        if resumed.total_requeued:
            click.echo(f"resuming an earlier run: {resumed.describe()}")
        counts = run_batch(ctx, folder, progress=progress)
        click.echo(counts.describe())
        for line in counts.unusable[:10]:
            click.echo(f"  not usable: {line}")
        if ctx.in_process:
            _load_interpreter(ctx, progress=progress)
            run_in_process(ctx, progress=progress)
        elif wait > 0:
            click.echo(f"queued on the broker; waiting up to {wait:.0f} s for the workers "
                       "(`ecg-worklist worker --queues prepare,report` and `--queues interpret`)")
            if not _wait_until_settled(ctx, wait, progress=progress):
                click.echo("some studies are still in the pipeline; the workers will finish them")
        click.echo(summarize(ctx).describe())
        checkpoint_audit(ctx)  # a batch-only site anchors its audit trail too (with a key set)
    finally:
        ctx.close()


@click.command("batch")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--wait", type=float, default=0.0, show_default=True,
              help="With a broker: seconds to wait for the workers to finish before the summary.")
@click.option("--no-progress", is_flag=True, help="No progress bars (for logs).")
@needs_readers()
def batch_command(folder: Path, wait: float, no_progress: bool) -> None:
    """Register every new ECG under FOLDER (read-only; originals stay where they are) and process them.

    Already registered content is skipped, so a stopped batch can simply be run again.
    With no broker configured the stages run here, to the end, and a summary is printed.
    """
    settings = Settings()
    require_schema(settings.effective_database_url)
    _run_batch(settings, folder, wait=wait, progress=not no_progress)


@click.command("watch")
@needs_readers()
def watch_command() -> None:
    """Watch the inbox folders (ECGWL_INBOX_DIRS) until stopped (SIGTERM or Ctrl-C)."""
    from worker.watch_loop import watch

    settings = Settings()
    require_schema(settings.effective_database_url)
    _logging(settings)
    ctx = _context(settings)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        watch(ctx, stop)
    finally:
        ctx.close()


@click.command("reconcile")
@click.option("--received-after", type=float, default=None,
              help="Seconds a registered but unqueued study must have waited (default ECGWL_RECONCILE_AFTER_SECONDS).")
@needs_readers()
def reconcile_command(received_after: float | None) -> None:
    """Free studies whose worker is gone and send the messages that are missing (one run).

    `watch` runs this every ECGWL_RECONCILE_EVERY_SECONDS. With no broker configured, the
    re-enqueued studies are then run here.
    """
    from worker.dispatch import InProcessDispatcher
    from worker.reconcile import reconcile

    settings = Settings()
    require_schema(settings.effective_database_url)
    ctx = _context(settings)
    try:
        after = None if received_after is None else dt.timedelta(seconds=received_after)
        report = reconcile(ctx, received_after=after)
        click.echo(report.describe())
        if isinstance(ctx.dispatcher, InProcessDispatcher):
            ctx.dispatcher.run_until_idle(ctx)
    finally:
        ctx.close()


@click.command("worker")
@click.option("--queues", default="prepare,report", show_default=True,
              help="Comma-separated: prepare, interpret, report. A worker with `interpret` uses the solo pool.")
@click.option("--concurrency", type=int, default=None, help="Prefork processes (default: one per core).")
@click.option("--loglevel", default="INFO", show_default=True)
@needs_readers("cpu-worker")
def worker_command(queues: str, concurrency: int | None, loglevel: str) -> None:
    """Start a Celery worker on the given queues (needs ECGWL_REDIS_URL)."""
    from worker.celery_app import make_celery
    from worker.dispatch import Stage

    settings = Settings()
    if not settings.redis_url:
        _fail("a worker needs a broker: set ECGWL_REDIS_URL (without one, `batch`/`watch` run the stages themselves)")
    names = [name.strip() for name in queues.split(",") if name.strip()]
    unknown = sorted(set(names) - {stage.value for stage in Stage})
    if unknown or not names:
        _fail(f"unknown queue(s) {', '.join(unknown) or '(none given)'}: choose from prepare, interpret, report")
    require_schema(settings.effective_database_url)
    app = make_celery(settings)
    argv = ["worker", "-Q", ",".join(names), "--loglevel", loglevel, "--without-gossip", "--without-mingle",
            "-n", f"{'-'.join(names)}.{os.getpid()}@%h"]
    if settings.log_format == "json":
        # Celery leaves logging alone when someone answers its setup_logging signal: every line of
        # the worker (and its pool children) is then one JSON object; no banner on stdout.
        from celery.signals import setup_logging

        from worker.logs import configure_logging

        configure_logging("json", loglevel)  # now, for what Celery warns about before it sets up
        setup_logging.connect(lambda **_kwargs: configure_logging("json", loglevel), weak=False)
        argv.insert(0, "--quiet")  # celery's own option, before its subcommand
    if Stage.INTERPRET.value in names:
        # CUDA and vLLM do not survive forked children: one process, the model loaded once, here.
        from worker.context import process_context

        _logging(settings, loglevel)
        ctx = process_context()
        log = logging.getLogger("worker.gpu")
        log.info("loading the interpreter (%s) once for this worker", ctx.settings.interpreter)
        started = time.monotonic()
        ctx.interpreter()
        log.info("interpreter loaded in %.1f s; taking batches from the interpret queue", time.monotonic() - started)
        argv += ["--pool", "solo"]
    else:
        argv += ["--pool", "prefork"] + (["--concurrency", str(concurrency)] if concurrency else [])
    if Stage.PREPARE.value in names:
        _import_readers()
    app.worker_main(argv)


def _import_readers() -> None:
    """Import the readers and the measurement code once, here, before Celery forks its pool.

    They are imported on first use everywhere else (a review host has none of them), so without
    this every prefork child pays ~1.5 s of CPU importing pydicom, wfdb (with pandas), scipy and
    pypdfium2 on its first task, and the first study of each child waits for it. Imported in the
    parent, the children share the loaded modules (fork copies them) and start working at once.
    """
    import pydicom  # noqa: F401 - each of these three is imported by its reader on first use
    import pypdfium2  # noqa: F401

    from ingest.measure import features  # noqa: F401 - measurement (scipy.signal)
    from ingest.prepare import signal as model_window  # noqa: F401 - the 500 Hz window (scipy resampling)
    from ingest.readers import dicom, pdf, wfdb  # noqa: F401
    from ingest.readers.wfdb import load_wfdb

    load_wfdb()  # wfdb and pandas, with pandas' deprecation warnings silenced as the reader does


@click.command("demo")
@click.option("--samples", type=click.Path(exists=True, file_okay=False, path_type=Path), default=SAMPLES_DIR,
              show_default=True, help="The folder of ECGs to run.")
@click.option("--wait", type=float, default=300.0, show_default=True,
              help="With a broker: seconds to wait for the workers.")
@needs_readers()
def demo_command(samples: Path, wait: float) -> None:
    """The main job: make the database, run the batch over the bundled sample ECGs, summarise."""
    from reports.store import current_revision, upgrade

    settings = _with_demo_model(Settings())
    url = settings.effective_database_url
    upgrade(url)
    where = ("embedded SQLite " + url.removeprefix("sqlite:///")) if not settings.database_url \
        else "ECGWL_DATABASE_URL"
    click.echo(f"database ({where}) at revision {current_revision(url)}")
    click.echo("tasks run " + ("in this process (no ECGWL_REDIS_URL)" if not settings.redis_url
                               else "on the Celery workers (ECGWL_REDIS_URL)"))
    if settings.redis_url:
        click.echo("interpretation runs on the GPU worker, with the interpreter its environment configures")
    elif settings.interpreter == "model" and not settings.model_path:
        click.echo("interpreter: the bundled DEMONSTRATION MODEL (model/demo) - NOT FOR CLINICAL USE; "
                   "ECGWL_INTERPRETER=protocol uses the protocol reader")
    _run_batch(settings, samples, wait=wait, progress=True)
    who = "the bundled demonstration model" if settings.interpreter == "model" and not settings.model_path \
        else f"the {settings.interpreter} interpreter"
    click.echo(f"these are MACHINE DRAFTS (OBR-25 P) awaiting a cardiologist's signature, interpreted by {who}")


def _with_demo_model(settings: Settings) -> Settings:
    """The main job's embedded default: the bundled demonstration model interprets.

    Only when nothing chose an interpreter (ECGWL_INTERPRETER unset) and the checkpoint is
    there; a site's own configuration always wins. Long-running processes keep the
    configured default (the protocol reader) so a production host never falls back to a
    demonstration model by accident.
    """
    import importlib.util

    from worker.interpreters import demo_model_path

    if "interpreter" in settings.model_fields_set or not (demo_model_path() / "config.json").is_file():
        return settings
    if importlib.util.find_spec("torch") is None:  # a host installed without the [model] extra
        click.echo("no torch on this host (the [model] extra): the protocol reader interprets the demo")
        return settings
    return settings.model_copy(update={"interpreter": "model"})


commands: list[click.Command] = [watch_command, batch_command, worker_command, reconcile_command, demo_command]
