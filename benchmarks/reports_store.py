"""What the audit chain, the store and the HL7 validation cost, against plain baselines.

Measured in the same run, on the same database:

    audit append      one `reports.audit.append` per transaction (head row lock + hash)
                      vs one plain INSERT of a row of the same shape per transaction
    study to draft    register -> prepare -> interpret -> draft_report (ORU built, validated,
                      stored, outbox row), every step its own transaction, as the worker does it
    ORU build         `build_oru` (segments written directly) vs `hl7.parse` of the same message
    ORU validate      `validate_oru` (hl7apy strict parse + table checks) vs `hl7.parse`
    ORU validate, hot path   the table checks alone (`structure=False`, what the store runs on a
                      message `build_oru` just wrote) vs `hl7.parse`

On Postgres (a scratch database made and dropped here; ECGWL_TEST_POSTGRES_URL or the local
server) and on a SQLite file.

Run: .venv/bin/python benchmarks/reports_store.py [--count 200] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from ingest.ecg import Demographics, Measurements, Sex
from ingest.interpretation import Interpretation
from ingest.report_format import format_output, parse_output
from reports import audit, store
from reports.hl7_oru import HL7Endpoints, OruReport, OruStudy, build_oru, new_control_id
from reports.hl7_validate import validate_oru

ADMIN_URL = os.environ.get("ECGWL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
ENDPOINTS = HL7Endpoints()
PATIENT = Demographics(patient_id="BENCH-1", patient_name="Bench^Mark", sex=Sex.MALE,
                       birth_date=dt.date(1960, 1, 1), acquired_at=dt.datetime(2026, 11, 24, 8, 0))
MEASURED = Measurements(hr_bpm=72, pr_ms=160, qrs_ms=92, qt_ms=380, qtc_ms=415, p_axis_deg=45,
                        qrs_axis_deg=30, t_axis_deg=40)


def _interpretation() -> Interpretation:
    step = "The rhythm is regular at 72 per minute with a P wave before every QRS complex. " * 4
    text = format_output({n: step for n in range(1, 7)}, "Sinus rhythm. Normal ECG.", ["sinus rhythm", "normal ECG"])
    return Interpretation(interpreter="protocol-reader", interpreter_version="bench", modalities=["ecg"],
                          raw_text=text, parsed=parse_output(text))


def _per_item_ms(function: Callable[[int], object], count: int) -> float:
    function(-1)  # warm-up: lazy imports, prepared statements, pool
    start = time.perf_counter()
    for n in range(count):
        function(n)
    return (time.perf_counter() - start) * 1000 / count


def _median_ms(function: Callable[[], object], repeat: int) -> float:
    function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _database_rows(url: str, count: int) -> list[tuple[str, float, float | None]]:
    store.upgrade(url)
    engine = store.make_engine(url)
    scratch = sa.Table(  # the baseline: a row like an audit event, no chain, no lock
        "bench_plain", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True)), sa.Column("actor", sa.String(255)),
        sa.Column("action", sa.String(64)), sa.Column("entity_type", sa.String(32)),
        sa.Column("entity_id", sa.String(64)), sa.Column("details", sa.JSON),
        sa.Column("prev_hash", sa.String(64)), sa.Column("row_hash", sa.String(64)),
    )
    scratch.create(engine)
    details = {"from": "queued_prepare", "to": "prepared", "attempts": 0}

    def plain(n: int) -> None:
        with store.session_scope(engine) as session:
            session.execute(scratch.insert().values(
                at=dt.datetime.now(dt.UTC), actor="bench", action="study.state", entity_type="study",
                entity_id=str(n), details=details, prev_hash="0" * 64, row_hash=uuid.uuid4().hex * 2))

    def chained(n: int) -> None:
        with store.session_scope(engine) as session:
            audit.append(session, actor="bench", action="study.state", entity_type="study", entity_id=n,
                         details=details)

    def study_to_draft(n: int) -> None:
        sha = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
        with store.session_scope(engine) as session:
            study, _ = store.register_study(session, sha256=sha, source_format="dicom", source_path="/in/x.dcm")
            store.set_state(session, study.id, "queued_prepare", actor="bench")
        with store.session_scope(engine) as session:
            store.save_prepared(session, study.id, actor="bench", demographics=PATIENT, measurements=MEASURED)
            store.set_state(session, study.id, "queued_interpret", actor="bench")
        with store.session_scope(engine) as session:
            store.save_interpretation(session, study.id, _interpretation(), actor="bench")
            store.draft_report(session, study.id, endpoints=ENDPOINTS, actor="bench", destinations=["his"])

    plain_ms = _per_item_ms(plain, count)
    chained_ms = _per_item_ms(chained, count)
    draft_ms = _per_item_ms(study_to_draft, max(count // 4, 10))
    with store.session_scope(engine) as session:
        start = time.perf_counter()
        result = audit.verify_chain(session)
        verify_ms = (time.perf_counter() - start) * 1000 / max(result.events_checked, 1)
    assert result.ok, result.describe()
    engine.dispose()
    return [
        ("audit append / txn", chained_ms, plain_ms),
        ("study to draft (3 txns)", draft_ms, None),
        ("verify per event", verify_ms, None),
    ]


def _hl7_rows(repeat: int) -> list[tuple[str, float, float | None]]:
    import hl7

    study = OruStudy(study_id=1, demographics=PATIENT, placer_order_number="ACC-1", filler_order_number="ECGWL1")
    report = OruReport(labels=["sinus rhythm", "normal ECG"], impression="Sinus rhythm. Normal ECG.")
    interpretation = _interpretation()

    def build() -> str:
        return build_oru(study, report, MEASURED, interpretation, result_status="P", endpoints=ENDPOINTS,
                         control_id=new_control_id())

    message = build()
    assert validate_oru(message) == []
    parse_ms = _median_ms(lambda: hl7.parse(message), repeat)
    return [
        ("ORU build", _median_ms(build, repeat), parse_ms),
        ("ORU validate (+ hl7apy strict)", _median_ms(lambda: validate_oru(message), repeat), parse_ms),
        ("ORU validate, hot path", _median_ms(lambda: validate_oru(message, structure=False), repeat), parse_ms),
    ]


def _print(title: str, rows: list[tuple[str, float, float | None]], baseline: str) -> None:
    print(f"\n{title}")
    print(f"{'':28s}{'ours ms':>10s}{baseline + ' ms':>16s}{'ours/base':>11s}")
    for name, ours, base in rows:
        tail = f"{base:16.3f}{ours / base:11.1f}" if base else ""
        print(f"{name:28s}{ours:10.3f}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="transactions per database measurement")
    parser.add_argument("--repeat", type=int, default=50, help="repetitions per HL7 measurement")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()

    _print("HL7 (median per message)", _hl7_rows(args.repeat), "hl7.parse")
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.sqlite3'}"
        _print("SQLite file (mean per item)", _database_rows(url, args.count), "plain insert")
    if args.skip_postgres:
        return
    name = f"ecgwl_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        _print("PostgreSQL (mean per item)", _database_rows(url, args.count), "plain insert")
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
