"""`ecg-worklist batch` and `demo` in-process (SQLite, no broker): drafts from the samples,
originals never touched, a rerun redoes nothing, a stopped run resumes."""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reports import store
from tests.worker.conftest import copy_sample
from tests.worker.helpers import audit_actions, reports, studies
from worker.batch import run_batch, run_in_process
from worker.cli import main
from worker.context import PipelineContext
from worker.dispatch import InProcessDispatcher
from worker.settings import Settings


def _snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every path under `root` with its mtime, size and content hash."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def _archive(root: Path) -> Path:
    """A small hospital archive: the four samples in nested folders, and a stray text file."""
    copy_sample("dicom", root / "2024" / "01")
    copy_sample("wfdb", root / "2024" / "02")
    copy_sample("pdf", root / "2024" / "02")
    copy_sample("scan", root / "scans")
    (root / "scans" / "index.txt").write_text("list of scans")
    return root


def _draft_paths(output: str) -> list[Path]:
    """The .hl7 files the summary lists (absolute paths, one per line)."""
    return [Path(word) for word in output.split() if word.startswith("/") and word.endswith(".hl7")]


def _run(args: list[str], data_dir: Path, **extra_env: str) -> Result:
    env = {"ECGWL_DATA_DIR": str(data_dir), "ECGWL_DATABASE_URL": "", "ECGWL_REDIS_URL": "", **extra_env}
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def engine_for(tmp_path: Path):  # noqa: ANN201
    engines = []

    def make() -> object:
        engine = store.make_engine(Settings(data_dir=tmp_path / "var").effective_database_url)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


def test_batch_makes_drafts_without_touching_the_originals(tmp_path: Path, engine_for: Callable) -> None:
    root = _archive(tmp_path / "archive")
    before = _snapshot(root)
    _run(["db", "upgrade"], tmp_path / "var")
    result = _run(["batch", "--no-progress", str(root)], tmp_path / "var")
    assert "5 items found: 4 new, 0 already registered, 1 not usable" in result.output
    assert "draft reports awaiting cardiologist sign-off: 4" in result.output
    assert _snapshot(root) == before  # nothing moved, changed or added under the archive
    engine = engine_for()
    for study in studies(engine):
        assert Path(study.source_path).is_relative_to(root.resolve()) and study.archive_path is None
        assert study.origin == "batch:archive" and study.state == "awaiting_signoff"
    assert sorted(version for _, version, *_ in reports(engine)) == [1, 1, 1, 1]
    drafts = _draft_paths(result.output)
    assert len(drafts) == 4 and all(path.read_text().startswith("MSH|") for path in drafts)


def test_a_rerun_skips_what_is_registered_and_redoes_nothing(tmp_path: Path, engine_for: Callable) -> None:
    root = _archive(tmp_path / "archive")
    _run(["db", "upgrade"], tmp_path / "var")
    _run(["batch", "--no-progress", str(root)], tmp_path / "var")
    engine = engine_for()
    audit_before = audit_actions(engine)
    copy_sample("dicom", root / "2025")  # the same DICOM filed a second time
    result = _run(["batch", "--no-progress", str(root)], tmp_path / "var")
    assert "6 items found: 0 new, 5 already registered" in result.output
    assert audit_actions(engine) == audit_before and len(reports(engine)) == 4


def test_a_stopped_batch_resumes_where_it_stopped(tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    root = _archive(tmp_path / "archive")
    settings = make_settings(prepare_batch_size=1)  # one study a step, so two steps stop half-way
    store.upgrade(settings.effective_database_url)
    ctx = PipelineContext.create(settings)
    run_batch(ctx, root, progress=False)
    steps = []

    def interrupt_after_two(*_args: object) -> None:
        steps.append(1)
        if len(steps) == 2:
            raise KeyboardInterrupt  # Ctrl-C half-way through the stages

    assert isinstance(ctx.dispatcher, InProcessDispatcher)
    with pytest.raises(KeyboardInterrupt):
        ctx.dispatcher.run_until_idle(ctx, on_progress=interrupt_after_two)
    ctx.close()
    states = [study.state for study in studies(store.make_engine(settings.effective_database_url))]
    # Two studies were prepared (their interpret batch of 3 was not full yet); two wait.
    assert states == ["queued_interpret", "queued_interpret", "queued_prepare", "queued_prepare"]

    result = _run(["batch", "--no-progress", str(root)], settings.data_dir)
    assert "resuming an earlier run: re-enqueued 4 studies (prepare: 2, interpret: 2)" in result.output
    assert "0 new, 4 already registered" in result.output
    engine = store.make_engine(settings.effective_database_url)
    assert [study.state for study in studies(engine)] == ["awaiting_signoff"] * 4
    assert sorted(sid for sid, *_ in reports(engine)) == [1, 2, 3, 4]  # one draft each
    engine.dispose()


def test_the_demo_main_job_prints_where_the_drafts_are(tmp_path: Path) -> None:
    result = _run(["demo"], tmp_path / "var")
    out = result.output
    assert "4 items found: 4 new" in out and "draft reports awaiting cardiologist sign-off: 4" in out
    drafts = _draft_paths(out)
    assert len(drafts) == 4 and all(path.is_file() and path.is_relative_to(tmp_path / "var") for path in drafts)
    # The audit command as a reader can paste it: this run's data folder is not the default one.
    assert f"`ECGWL_DATA_DIR={shlex.quote(str((tmp_path / 'var').resolve()))} ecg-worklist audit verify`" in out
    # The embedded default interpreter is the bundled demonstration model, and every draft says so.
    assert "interpreted by the bundled demonstration model" in out
    for path in drafts:  # an NTE segment of its own (its set id follows the notes before it)
        assert any(line.startswith("NTE|") and line.endswith("|L|DEMONSTRATION MODEL - NOT FOR CLINICAL USE")
                   for line in path.read_text().splitlines())
    again = _run(["demo"], tmp_path / "var")  # a second run finds everything done
    assert "4 items found: 0 new, 4 already registered" in again.output
    assert "audit chain intact" in _run(["audit", "verify"], tmp_path / "var").output


def test_a_configured_interpreter_wins_over_the_demo_model(tmp_path: Path) -> None:
    out = _run(["demo"], tmp_path / "var", ECGWL_INTERPRETER="protocol").output
    assert "interpreted by the protocol interpreter" in out
    for path in _draft_paths(out):
        message = path.read_text()
        assert "Interpreter: protocol-reader" in message and "DEMONSTRATION MODEL" not in message


def test_in_process_runner_refuses_a_broker_context(make_settings: Callable[..., Settings]) -> None:
    class NotInProcess:
        pass

    settings = make_settings()
    store.upgrade(settings.effective_database_url)
    ctx = PipelineContext.create(settings, dispatcher=NotInProcess())  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="in-process"):
        run_in_process(ctx, progress=False)
    ctx.close()


def test_reconcile_command_requeues_and_with_no_broker_runs_the_studies(
    tmp_path: Path, make_settings: Callable[..., Settings],
) -> None:
    root = _archive(tmp_path / "archive")
    settings = make_settings()
    store.upgrade(settings.effective_database_url)
    ctx = PipelineContext.create(settings)
    run_batch(ctx, root, progress=False)  # registered and queued, then the process "died"
    ctx.close()
    result = _run(["reconcile"], settings.data_dir)  # their messages died with the process: sent again
    assert "re-enqueued 4 studies (prepare: 4)" in result.output
    engine = store.make_engine(settings.effective_database_url)
    assert [study.state for study in studies(engine)] == ["awaiting_signoff"] * 4
    assert _run(["reconcile"], settings.data_dir).output.startswith("re-enqueued 0 studies")
    engine.dispose()
