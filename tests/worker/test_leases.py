"""The lease and recovery rules of worker/leases.py, one by one: in-process on SQLite, and the
one-holder-at-a-time guarantee on the real Postgres. The same rules under real faults (killed
workers, Redis flushed, Postgres cut, full disks) are in tests/faults/."""

from __future__ import annotations

import datetime as dt
import errno
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from ingest.intake.watch import walk_records
from reports import leases as lease_sql
from reports import store
from reports.db import OutboxItem, Report, Study, StudyState, utcnow
from tests.worker.conftest import SAMPLES, copy_sample
from tests.worker.helpers import audit_actions, audit_details, reports, studies
from worker import artifacts, stages
from worker.context import PipelineContext
from worker.dispatch import Stage
from worker.intake import register_batch_item
from worker.leases import LeaseKeeper, holder_id, local_holder_alive
from worker.reconcile import Reconciler, reconcile
from worker.runner import run_stage
from worker.settings import Settings
from worker.stages import Outcome

S = StudyState
FAR_HOLDER = "another-machine:4242:1"  # a worker on another machine: judged by its lease alone


def _dicom_variants(folder: Path, count: int) -> None:
    import pydicom

    folder.mkdir(parents=True)
    dataset = pydicom.dcmread(SAMPLES / "demo-dicom.dcm")
    for i in range(count):
        dataset.AccessionNumber = f"LEASE-{i:03d}"
        dataset.save_as(folder / f"v{i}.dcm")


def _register(ctx: PipelineContext, folder: Path) -> list[int]:
    for arrival in walk_records(folder):
        register_batch_item(ctx, arrival, origin="test")
    ctx.dispatcher.queues[Stage.PREPARE].clear()  # as if the messages were lost with their process
    return [study.id for study in studies(ctx.engine)]


def _lease(ctx: PipelineContext, study_id: int, holder: str, expires_in: float) -> None:
    with ctx.session() as session:
        study = store.get_study(session, study_id, for_update=True)
        study.lease_holder, study.lease_expires_at = holder, utcnow() + dt.timedelta(seconds=expires_in)


def _study(ctx: PipelineContext, study_id: int) -> Study:
    with ctx.session() as session:
        return store.get_study(session, study_id)


# ---------------------------------------------------------------- rule 1: free or held


def test_a_study_is_leased_to_one_worker_at_a_time_on_postgres(
    postgres_url: str, make_settings: Callable[..., Settings], tmp_path: Path,
) -> None:
    store.upgrade(postgres_url)
    ctx = PipelineContext.create(make_settings(database_url=postgres_url))
    try:
        copy_sample("dicom", tmp_path / "src")
        [study_id] = _register(ctx, tmp_path / "src")
        until = utcnow() + dt.timedelta(minutes=1)
        # While worker A's transaction has the row locked, B skips it (SKIP LOCKED), it does not wait.
        with ctx.session() as session_a:
            assert lease_sql.take(session_a, S.QUEUED_PREPARE, holder="a:1:1", until=until, prefer=[study_id]) \
                == [study_id]
            with ctx.session() as session_b:
                assert lease_sql.take(session_b, S.QUEUED_PREPARE, holder="b:2:2", until=until,
                                      prefer=[study_id]) == []
        # Committed: B still cannot take it, A can take it back (a retry of its own).
        with ctx.session() as session:
            assert lease_sql.take(session, S.QUEUED_PREPARE, holder="b:2:2", until=until, prefer=[study_id]) == []
            assert lease_sql.take(session, S.QUEUED_PREPARE, holder="a:1:1", until=until, prefer=[study_id]) \
                == [study_id]
    finally:
        ctx.close()


def test_a_message_whose_study_is_taken_takes_the_oldest_free_one(ctx: PipelineContext, tmp_path: Path) -> None:
    _dicom_variants(tmp_path / "src", 3)
    first, second, third = _register(ctx, tmp_path / "src")
    _lease(ctx, first, FAR_HOLDER, 60)
    outcomes = run_stage(ctx, Stage.PREPARE, [first], take_others=True)
    assert outcomes == {first: Outcome.SKIPPED, second: Outcome.DONE}
    assert [s.state for s in studies(ctx.engine)] == [S.QUEUED_PREPARE, S.QUEUED_INTERPRET, S.QUEUED_PREPARE]
    # The study that moved on holds no lease; the one still held keeps its holder.
    assert _study(ctx, second).lease_holder is None and _study(ctx, first).lease_holder == FAR_HOLDER
    assert _study(ctx, third).lease_holder is None


def test_the_heartbeat_renews_a_lease_while_the_work_runs(ctx: PipelineContext, tmp_path: Path) -> None:
    copy_sample("dicom", tmp_path / "src")
    [study_id] = _register(ctx, tmp_path / "src")
    keeper = LeaseKeeper(ctx.engine, lease_seconds=1.0, heartbeat_seconds=0.1)
    with ctx.session() as session:
        lease_sql.take(session, S.QUEUED_PREPARE, holder=keeper.holder, until=keeper.until(), prefer=[study_id])
    keeper.hold([study_id])
    try:
        time.sleep(2.5)  # more than twice the lease: only renewals keep it
        assert _study(ctx, study_id).lease_expires_at > utcnow()
        assert reconcile(ctx).holders_lost == []
    finally:
        keeper.close()
    assert keeper.holder == holder_id() and local_holder_alive(keeper.holder) is True


# ---------------------------------------------------------------- rule 3: a holder is gone


def test_the_reconciler_frees_a_study_whose_lease_ran_out_and_sends_it_again(ctx: PipelineContext,
                                                                           tmp_path: Path) -> None:
    copy_sample("wfdb", tmp_path / "src")
    [study_id] = _register(ctx, tmp_path / "src")
    _lease(ctx, study_id, FAR_HOLDER, -1)
    report = reconcile(ctx)
    assert report.holders_lost == [study_id] and report.requeued[Stage.PREPARE] == [study_id]
    study = _study(ctx, study_id)
    assert study.lease_holder is None and study.holder_deaths == 1
    [lost] = audit_details(ctx.engine, "study.holder_lost")
    assert lost["holder"] == FAR_HOLDER and lost["why"].startswith("its lease ran out")
    ctx.dispatcher.run_until_idle(ctx)
    assert _study(ctx, study_id).state == S.AWAITING_SIGNOFF and len(reports(ctx.engine)) == 1
    assert _study(ctx, study_id).holder_deaths == 0  # a completed stage clears the count


def test_a_live_lease_is_left_alone_and_its_message_not_doubled(ctx: PipelineContext, tmp_path: Path) -> None:
    _dicom_variants(tmp_path / "src", 2)
    held, free = _register(ctx, tmp_path / "src")
    _lease(ctx, held, FAR_HOLDER, 60)
    ctx.dispatcher.prepare([free])  # its message is waiting
    report = reconcile(ctx)
    assert report.holders_lost == [] and report.total_requeued == 0
    assert list(ctx.dispatcher.queues[Stage.PREPARE]) == [free]


def test_a_holder_whose_process_is_gone_on_this_machine_is_freed_before_its_lease_runs_out(
    ctx: PipelineContext, tmp_path: Path,
) -> None:
    copy_sample("dicom", tmp_path / "src")
    [study_id] = _register(ctx, tmp_path / "src")
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    stat = Path(f"/proc/{process.pid}/stat").read_text()
    dead_holder = f"{holder_id().split(':')[0]}:{process.pid}:{stat.rsplit(')', 1)[1].split()[19]}"
    assert local_holder_alive(dead_holder) is True
    process.kill()
    process.wait()
    assert local_holder_alive(dead_holder) is False
    _lease(ctx, study_id, dead_holder, 600)
    ctx.settings.check_local_holders = False  # as if the holder were on another machine
    assert reconcile(ctx).holders_lost == []
    ctx.settings.check_local_holders = True
    assert reconcile(ctx).holders_lost == [study_id]
    assert audit_details(ctx.engine, "study.holder_lost")[0]["why"] == "its process on this machine is gone"


def test_after_a_database_outage_holders_get_one_lease_to_renew_before_they_are_judged(
    ctx: PipelineContext, tmp_path: Path,
) -> None:
    copy_sample("dicom", tmp_path / "src")
    [study_id] = _register(ctx, tmp_path / "src")
    _lease(ctx, study_id, FAR_HOLDER, -1)
    reconciler = Reconciler(ctx)
    database = ctx.engine
    ctx.engine = sa.create_engine(f"sqlite:///{tmp_path}/no/such/folder/db.sqlite3")  # unreachable
    with pytest.raises(sa.exc.OperationalError):
        reconciler.run()
    ctx.engine = database
    report = reconciler.run()
    assert not report.holders_judged and report.holders_lost == []
    ctx.settings.lease_seconds = 0.0  # the grace is one lease period
    reconciler._judge_from = 0.0
    assert reconciler.run().holders_lost == [study_id]


# ---------------------------------------------------------------- rule 5: poison


def test_a_study_that_killed_its_worker_three_times_is_quarantined_with_the_reason(
    ctx: PipelineContext, tmp_path: Path,
) -> None:
    copy_sample("wfdb", tmp_path / "src")
    [study_id] = _register(ctx, tmp_path / "src")
    for death in (1, 2, 3):
        _lease(ctx, study_id, FAR_HOLDER, -1)
        report = reconcile(ctx)
        assert _study(ctx, study_id).holder_deaths == death
    assert report.poisoned == [study_id] and report.requeued[Stage.PREPARE] == []
    study = _study(ctx, study_id)
    assert study.state == S.QUARANTINED and "killed its worker 3 times" in study.last_error
    reason = ctx.settings.quarantine_dir / study.sha256[:16] / "demo-wfdb.hea.reason"
    assert reason.read_text().startswith(study.last_error)
    assert (reason.parent / "demo-wfdb.dat").is_file()
    assert audit_actions(ctx.engine, entity_type="study", entity_id=study_id).count("study.holder_lost") == 3
    assert audit_details(ctx.engine, "study.state")[-1]["to"] == "quarantined"


def test_studies_whose_holder_died_are_interpreted_in_smaller_batches_then_alone(
    ctx: PipelineContext, tmp_path: Path,
) -> None:
    _dicom_variants(tmp_path / "src", 6)
    ids = _register(ctx, tmp_path / "src")
    for study_id in ids:
        stages.prepare_study(ctx, study_id)
    ctx.dispatcher.queues[Stage.INTERPRET].clear()
    deaths = dict(zip(ids, [2, 1, 1, 1, 0, 0], strict=True))  # a batch of 16 died with them, then another
    with ctx.session() as session:
        for study_id, count in deaths.items():
            store.get_study(session, study_id, for_update=True).holder_deaths = count
    ctx.settings.interpret_batch_size = 16
    assert [lease_sql.batch_limit(16, d) for d in (0, 1, 2)] == [16, 2, 1]
    # The reconciler's messages: the twice-suspect alone, the once-suspects in twos, the rest together.
    assert _groups(ctx) == [[ids[0]], ids[1:3], [ids[3]], ids[4:]]
    # A drain takes a batch of one kind only, whatever its message names.
    until = utcnow() + dt.timedelta(minutes=1)
    taken = []
    for gpu in range(4):
        with ctx.session() as session:
            taken.append(lease_sql.take(session, S.QUEUED_INTERPRET, holder=f"gpu:{gpu}:1", until=until,
                                        prefer=ids, limit=16, isolate_suspects=True))
    assert taken == [[ids[0]], ids[1:3], [ids[3]], ids[4:]]


def _groups(ctx: PipelineContext) -> list[list[int]]:
    sent: list[list[int]] = []
    ctx.dispatcher.interpret = sent.append  # type: ignore[method-assign]  # record each message
    reconcile(ctx)
    return sent


# ---------------------------------------------------------------- rule 6: transient failures


def _full_disk(*_args: object, **_kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device", "/data/prepared/ab/x/.signal.npy.1.tmp")


def test_a_full_disk_while_preparing_retries_later_and_never_fails(
    ctx: PipelineContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    copy_sample("dicom", tmp_path / "src")
    [study_id] = _register(ctx, tmp_path / "src")
    ctx.settings.retry_base_seconds = 0.5
    with monkeypatch.context() as patched:
        patched.setattr(artifacts, "save_prepared", _full_disk)
        assert run_stage(ctx, Stage.PREPARE, [study_id]) == {study_id: Outcome.RETRY}
    study = _study(ctx, study_id)
    assert study.state == S.QUEUED_PREPARE and study.lease_holder is None and study.retry_at > utcnow()
    assert study.last_error.startswith("prepare: disk full writing /data/prepared/ab/x")
    [retry] = audit_details(ctx.engine, "study.retry_scheduled")
    assert retry["reason"] == study.last_error
    assert reconcile(ctx).total_requeued == 0  # not before its retry time
    time.sleep(0.6)
    assert reconcile(ctx).requeued[Stage.PREPARE] == [study_id]
    ctx.dispatcher.run_until_idle(ctx)
    assert _study(ctx, study_id).state == S.AWAITING_SIGNOFF


def test_the_draft_file_is_on_disk_before_the_study_says_awaiting_signoff(
    ctx: PipelineContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    copy_sample("dicom", tmp_path / "src")
    [study_id] = _register(ctx, tmp_path / "src")
    run_stage(ctx, Stage.PREPARE, [study_id])
    run_stage(ctx, Stage.INTERPRET, [study_id])
    ctx.dispatcher.queues[Stage.REPORT].clear()
    with monkeypatch.context() as patched:
        patched.setattr(stages, "write_outbound_files", _full_disk)
        assert run_stage(ctx, Stage.REPORT, [study_id]) == {study_id: Outcome.RETRY}
    study = _study(ctx, study_id)
    assert study.state == S.INTERPRETED and "disk full" in study.last_error
    [(_sid, version, _status, stored)] = reports(ctx.engine)  # the draft is stored, not published
    with ctx.session() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(OutboxItem)).scalar_one() == 0
    with ctx.session() as session:
        store.get_study(session, study_id, for_update=True).retry_at = None  # due now
    assert run_stage(ctx, Stage.REPORT, [study_id]) == {study_id: Outcome.DONE}
    assert _study(ctx, study_id).state == S.AWAITING_SIGNOFF
    path = stages.outbound_path(ctx.settings.outbound_dir, study_id, version)
    assert path.read_bytes() == (stored + "\r").encode()  # the stored message: the same MSH-10
    assert [d["outbound_file"] for d in audit_details(ctx.engine, "study.state") if d["to"] == "awaiting_signoff"] \
        == [path.name]
    with ctx.session() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(Report)).scalar_one() == 1


def test_a_broker_down_after_the_commit_loses_no_study(ctx: PipelineContext, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import redis.exceptions

    copy_sample("dicom", tmp_path / "src")
    [study_id] = _register(ctx, tmp_path / "src")

    def broker_down(_ids: object) -> None:
        raise redis.exceptions.ConnectionError("Connection refused")

    with monkeypatch.context() as patched:
        patched.setattr(ctx.dispatcher, "interpret", broker_down)
        assert run_stage(ctx, Stage.PREPARE, [study_id]) == {study_id: Outcome.DONE}
    assert _study(ctx, study_id).state == S.QUEUED_INTERPRET and not ctx.dispatcher.queues[Stage.INTERPRET]
    assert reconcile(ctx).requeued[Stage.INTERPRET] == [study_id]
    ctx.dispatcher.run_until_idle(ctx)
    assert _study(ctx, study_id).state == S.AWAITING_SIGNOFF


# ---------------------------------------------------------------- a fuller interpret batch


def test_an_interpret_task_waits_for_a_fuller_batch_only_while_someone_else_prepares(
    ctx: PipelineContext, tmp_path: Path,
) -> None:
    """A Celery interpret task that would take fewer than a full batch waits (polling, holding
    nothing) while another live holder prepares studies; not for itself, nor for a dead lease,
    nor once the batch is full; and never past `interpret_batch_wait_seconds`."""
    from worker.runner import BATCH_POLL_SECONDS, wait_for_a_fuller_batch

    _dicom_variants(tmp_path / "src", 3)
    first, second, third = _register(ctx, tmp_path / "src")
    assert run_stage(ctx, Stage.PREPARE, [first])[first] is Outcome.DONE  # free to interpret now
    ctx.settings.interpret_batch_wait_seconds = 5 * BATCH_POLL_SECONDS
    slept: list[float] = []
    assert wait_for_a_fuller_batch(ctx, 4, sleep=slept.append) == 0  # nobody else is preparing
    _lease(ctx, second, FAR_HOLDER, 60)  # another worker is preparing `second`
    assert wait_for_a_fuller_batch(ctx, 4, sleep=slept.append) == 5  # up to the limit, then take what there is
    assert slept == [BATCH_POLL_SECONDS] * 5
    assert wait_for_a_fuller_batch(ctx, 1, sleep=slept.append) == 0  # a full batch is there already
    _lease(ctx, first, FAR_HOLDER, 60)  # none free (another task took `first`): nothing to wait for
    assert wait_for_a_fuller_batch(ctx, 4, sleep=slept.append) == 0
    with ctx.session() as session:  # `first` free again
        study = store.get_study(session, first, for_update=True)
        study.lease_holder = study.lease_expires_at = None
    _lease(ctx, third, ctx.leases.holder, 60)  # this process preparing: it cannot while it waits
    _lease(ctx, second, FAR_HOLDER, -1)  # and the other one's lease ran out
    assert wait_for_a_fuller_batch(ctx, 4, sleep=slept.append) == 0

    def other_worker_finishes(seconds: float) -> None:  # on the second poll the far lease ends
        slept.append(seconds)
        if len(slept) == 2:
            _lease(ctx, second, FAR_HOLDER, -1)

    _lease(ctx, second, FAR_HOLDER, 60)
    slept.clear()
    assert wait_for_a_fuller_batch(ctx, 4, sleep=other_worker_finishes) == 2
    with ctx.session() as session:  # nothing was leased while waiting
        assert store.get_study(session, first).lease_holder is None


def test_one_waiting_interpret_message_serves_every_free_study(
    ctx: PipelineContext, tmp_path: Path, redis_url: str,
) -> None:
    """Through Celery (a real Redis), `interpret` sends no second message while one waits; the
    reconciler expects one for the stage however many batches wait; and a finished batch hands on
    what is left when no message waits. The embedded dispatcher still needs one per batch."""
    import redis

    from worker.celery_app import make_celery
    from worker.dispatch import CeleryDispatcher
    from worker.runner import hand_on_the_rest

    _dicom_variants(tmp_path / "src", 7)
    ids = _register(ctx, tmp_path / "src")
    for study_id in ids:
        assert run_stage(ctx, Stage.PREPARE, [study_id])[study_id] is Outcome.DONE
    ctx.dispatcher.queues[Stage.INTERPRET].clear()  # as if those messages were lost
    assert len(reconcile(ctx).requeued[Stage.INTERPRET]) == 7  # in process: 3 batches of 3, 3, 1
    assert len(set(ctx.dispatcher.queues[Stage.INTERPRET])) == 7

    settings = ctx.settings.model_copy(update={"redis_url": redis_url})
    broker = redis.Redis.from_url(redis_url)
    ctx.dispatcher = CeleryDispatcher(make_celery(settings), broker)
    assert ctx.dispatcher.queued(Stage.INTERPRET) == 0
    requeued = reconcile(ctx).requeued[Stage.INTERPRET]
    assert requeued == ids[:3] and ctx.dispatcher.queued(Stage.INTERPRET) == 1  # one message, the oldest batch
    ctx.dispatcher.interpret([ids[5]])
    assert ctx.dispatcher.queued(Stage.INTERPRET) == 1  # the waiting one will take it
    assert reconcile(ctx).requeued[Stage.INTERPRET] == []  # nothing missing
    # The oldest free now (the re-sent three restarted their clocks); a message waits already: none sent.
    assert hand_on_the_rest(ctx) == ids[3:6] and ctx.dispatcher.queued(Stage.INTERPRET) == 1
    broker.delete(Stage.INTERPRET.value)  # taken by a worker, which interprets a batch of 3
    outcomes = run_stage(ctx, Stage.INTERPRET, ids[:3])
    assert [outcomes[study_id] for study_id in ids[:3]] == [Outcome.DONE] * 3
    assert ctx.dispatcher.queued(Stage.INTERPRET) == 0
    assert hand_on_the_rest(ctx) == ids[3:6] and ctx.dispatcher.queued(Stage.INTERPRET) == 1  # the rest handed on
    broker.close()


def _messages(broker: object, stage: Stage = Stage.REPORT) -> list[list[int]]:
    """The study ids each waiting message of `stage` names (kombu's JSON envelope on the Redis list)."""
    import base64
    import json

    messages = []
    for raw in broker.lrange(stage.value, 0, -1):  # type: ignore[attr-defined]
        args, _kwargs, _embed = json.loads(base64.b64decode(json.loads(raw)["body"]))
        messages.append(args[0])
    return sorted(messages)


def test_a_report_message_names_a_batch_of_drafts_through_celery(
    ctx: PipelineContext, tmp_path: Path, redis_url: str,
) -> None:
    """Through Celery (a real Redis), reports go one message per `report_batch_size` studies: from an
    interpret batch, and from the reconciler, which counts messages against batches and keeps a study
    whose holder died out of a batch of good ones; a report task takes its batch at once."""
    import redis

    from worker.celery_app import make_celery
    from worker.dispatch import CeleryDispatcher

    _dicom_variants(tmp_path / "src", 5)
    ids = _register(ctx, tmp_path / "src")
    for study_id in ids:
        run_stage(ctx, Stage.PREPARE, [study_id])
    ctx.settings = ctx.settings.model_copy(update={"redis_url": redis_url, "report_batch_size": 2,
                                                   "interpret_batch_size": 5})
    broker = redis.Redis.from_url(redis_url)
    ctx.dispatcher = CeleryDispatcher(make_celery(ctx.settings), broker, report_batch_size=2)
    try:
        run_stage(ctx, Stage.INTERPRET, ids)  # hands the five on: three report messages
        assert _messages(broker) == [ids[0:2], ids[2:4], ids[4:5]]
        broker.delete(Stage.REPORT.value)  # lost with Redis
        with ctx.session() as session:  # one study's holder died once: it is drafted apart
            store.get_study(session, ids[1], for_update=True).holder_deaths = 1
        assert sorted(reconcile(ctx).requeued[Stage.REPORT]) == ids
        assert _messages(broker) == [[ids[0], ids[2]], [ids[1]], [ids[3], ids[4]]]
        assert reconcile(ctx).requeued[Stage.REPORT] == []  # a message waits for every batch
        broker.delete(Stage.REPORT.value)  # taken by workers:
        outcomes = run_stage(ctx, Stage.REPORT, [ids[0], ids[2]], take_others=True)
        assert outcomes == {ids[0]: Outcome.DONE, ids[2]: Outcome.DONE}  # the batch, no more
        outcomes = run_stage(ctx, Stage.REPORT, [ids[1]], take_others=True)
        assert outcomes == {ids[1]: Outcome.DONE}  # the suspect alone, though others are free
        outcomes = run_stage(ctx, Stage.REPORT, [ids[0]], take_others=True)  # its study done: the oldest free
        assert outcomes == {ids[0]: Outcome.SKIPPED, ids[3]: Outcome.DONE}
        assert run_stage(ctx, Stage.REPORT, [ids[4]], take_others=True) == {ids[4]: Outcome.DONE}
        assert {study.state for study in studies(ctx.engine)} == {S.AWAITING_SIGNOFF}
    finally:
        broker.delete(Stage.REPORT.value, Stage.INTERPRET.value)
        broker.close()


def test_a_scan_hands_its_new_studies_to_preparation_one_message_a_batch_through_celery(
    ctx: PipelineContext, tmp_path: Path, redis_url: str,
) -> None:
    """Through Celery (a real Redis), the watcher's scan sends one prepare message per
    `prepare_batch_size` new studies; the reconciler makes up lost ones batch by batch, a study whose
    holder died apart; a prepare task takes the batch its message names and saves it."""
    import redis

    from ingest.intake.watch import InboxScanner
    from worker.celery_app import make_celery
    from worker.dispatch import CeleryDispatcher
    from worker.watch_loop import scan_once

    inbox = ctx.settings.inbox_dirs[0]
    _dicom_variants(inbox, 5)
    ctx.settings = ctx.settings.model_copy(update={"redis_url": redis_url, "prepare_batch_size": 2})
    broker = redis.Redis.from_url(redis_url)
    ctx.dispatcher = CeleryDispatcher(make_celery(ctx.settings), broker, prepare_batch_size=2)
    try:
        taken = scan_once(ctx, InboxScanner([inbox], stable_seconds=0.0))
        assert sum(taken.values()) == 5 and not list(inbox.iterdir())
        ids = [study.id for study in studies(ctx.engine)]
        assert _messages(broker, Stage.PREPARE) == [ids[0:2], ids[2:4], ids[4:5]]
        broker.delete(Stage.PREPARE.value)  # lost with Redis
        with ctx.session() as session:
            store.get_study(session, ids[1], for_update=True).holder_deaths = 1
        assert sorted(reconcile(ctx).requeued[Stage.PREPARE]) == ids
        assert _messages(broker, Stage.PREPARE) == [[ids[0], ids[2]], [ids[1]], [ids[3], ids[4]]]
        assert reconcile(ctx).requeued[Stage.PREPARE] == []  # a message waits for every batch
        broker.delete(Stage.PREPARE.value)  # taken by workers:
        assert run_stage(ctx, Stage.PREPARE, [ids[0], ids[2]], take_others=True) == dict.fromkeys(
            [ids[0], ids[2]], Outcome.DONE)
        assert {study.id for study in studies(ctx.engine) if study.state == S.QUEUED_INTERPRET} == {ids[0], ids[2]}
    finally:
        broker.delete(Stage.PREPARE.value, Stage.INTERPRET.value)
        broker.close()
