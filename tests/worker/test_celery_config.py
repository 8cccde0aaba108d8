"""The Celery app's delivery guarantees, read back from the app a worker would run (no broker needed)."""

from __future__ import annotations

import pytest

from worker.celery_app import make_celery
from worker.dispatch import TASK_INTERPRET_DRAIN, TASK_PREPARE, TASK_REPORT
from worker.settings import Settings


@pytest.fixture
def app():  # noqa: ANN201
    settings = Settings(redis_url="redis://127.0.0.1:6379/0", visibility_timeout_seconds=7200)
    application = make_celery(settings)
    application.loader.import_default_modules()  # what a worker does at start: registers worker.tasks
    application.finalize(auto=True)
    return application


def test_messages_are_acknowledged_late_one_at_a_time_and_survive_lost_workers(app) -> None:  # noqa: ANN001
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == 7200
    assert conf.task_serializer == "json" and list(conf.accept_content) == ["json"]
    for name in (TASK_PREPARE, TASK_INTERPRET_DRAIN, TASK_REPORT):
        task = app.tasks[name]
        assert task.acks_late and task.reject_on_worker_lost


def test_each_task_goes_to_its_own_queue(app) -> None:  # noqa: ANN001
    routes = {name: app.amqp.router.route({}, name)["queue"].name
              for name in (TASK_PREPARE, TASK_INTERPRET_DRAIN, TASK_REPORT)}
    assert routes == {TASK_PREPARE: "prepare", TASK_INTERPRET_DRAIN: "interpret", TASK_REPORT: "report"}
    keys = {queue.name: queue.routing_key for queue in app.conf.task_queues}
    assert keys == {"prepare": "prepare", "interpret": "interpret", "report": "report"}


def test_celery_never_retries_or_cancels_a_task_itself(app) -> None:  # noqa: ANN001
    """Recovery is the leases' and the reconciler's (worker/leases.py): a task waits out a
    database outage itself, and a lost broker connection does not kill running tasks (which
    the leases would count as a death of each study's holder)."""
    assert app.conf.worker_cancel_long_running_tasks_on_connection_loss is False
    for name in (TASK_PREPARE, TASK_INTERPRET_DRAIN, TASK_REPORT):
        assert not getattr(app.tasks[name], "autoretry_for", ())


def test_without_a_broker_there_is_no_celery_app() -> None:
    with pytest.raises(ValueError, match="ECGWL_REDIS_URL"):
        make_celery(Settings(redis_url=None))
