"""The one configuration object of ecg-worklist, read from the environment at the edges.

Every setting is an environment variable with the prefix `ECGWL_` (for example
`ECGWL_DATABASE_URL`). Processes read `Settings()` once in their entry point and pass
what each function needs down as arguments: no module reads the environment itself.
Secrets (database password, session key) come from the environment only, never from a
file in the repository.

With nothing set, everything is embedded: SQLite in the data folder, tasks run in-process
(no broker), the protocol reader or the bundled demo model interprets.

The data folder is one absolute place whatever directory a command is typed in:
ECGWL_DATA_DIR when set (a relative value is taken from the directory it was given in and
made absolute at once), else the user's state directory, `$XDG_STATE_HOME/ecg-worklist` or
`~/.local/state/ecg-worklist` (the service user's, for a systemd unit or a container, which
set ECGWL_DATA_DIR=/var/lib/ecg-worklist). The inbox defaults to its `inbox/` folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.readers.limits import InputLimits
from reports.destinations import HL7Destination, check_unique_names, parse_destination


class Settings(BaseSettings):
    # `__` reaches into nested settings: ECGWL_INPUT_LIMITS__MAX_PDF_PAGES=30
    model_config = SettingsConfigDict(env_prefix="ECGWL_", env_file=None, extra="ignore", env_nested_delimiter="__")

    # Where everything the system writes lives, unless a path below says otherwise: absolute,
    # so every command and process finds the same database and files (see the module docstring).
    data_dir: Path = Field(default_factory=lambda: default_data_dir())

    # Database: SQLite file under data_dir when unset; Postgres in production,
    # e.g. postgresql+psycopg://ecg@db/ecgworklist
    database_url: str | None = None
    # Broker: None means "run tasks in-process" (the embedded default).
    redis_url: str | None = None

    # Ingest
    inbox_dirs: list[Path] = Field(default_factory=list)  # empty: <data_dir>/inbox
    stable_seconds: float = 2.0  # a file is complete when size+mtime did not change this long
    poll_seconds: float = 1.0
    orphan_seconds: float = 600.0  # a WFDB signal file without its header (or a header without its
    #                                signal file) waits this long for its companion, then is quarantined
    # What one input file may make a reader allocate (ingest/readers/limits.py): samples, pages,
    # pixels, inflated bytes. Past a limit the file is quarantined with the limit's name.
    input_limits: InputLimits = Field(default_factory=InputLimits)

    # Recovery (worker/leases.py states the rules). A worker holds each study it works on with
    # a lease it renews every `heartbeat_seconds`; a lease not renewed for `lease_seconds`
    # means its holder is gone, and the reconciler (inside `watch`, every
    # `reconcile_every_seconds`) hands the study on: back in a queue within
    # lease + reconcile interval (2 minutes with these defaults), whatever the broker does.
    lease_seconds: float = 90.0
    heartbeat_seconds: float = 15.0
    reconcile_every_seconds: float = 30.0
    # A `received` study (registered, archived, not yet queued) is queued by the reconciler
    # after this long: the watcher normally queues it within a second.
    reconcile_after_seconds: float = 120.0
    # Holders on the reconciler's own machine are judged by their process id too, at once.
    check_local_holders: bool = True
    poison_after: int = 3  # a study that killed its worker this many times is quarantined
    # A transient failure (disk full, read-only volume, broker unreachable) retries after
    # retry_base_seconds, doubling up to retry_max_seconds, until it works: never `failed`.
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 60.0
    # A task that cannot reach the database waits for it (up to this long) before letting go.
    database_wait_seconds: float = 3600.0
    # `ecg-worklist check` expects every draft awaiting sign-off to have its outbound .hl7 file;
    # set false when a folder reader removes the files it takes.
    check_outbound_files: bool = True

    # Queues (worker/celery_app.py). Redis re-delivers a message that was taken but not
    # acknowledged after this long. Recovery does not depend on it (the leases do); keep it
    # above the longest task (a GPU batch), so a healthy task is not woken twice.
    visibility_timeout_seconds: int = 6 * 3600

    # HL7 receivers (reports/destinations.py): a JSON list of objects, e.g.
    # [{"name": "his", "host": "10.0.0.5", "port": 2575, "drafts": false}]; a bare name is
    # accepted (the old form). Every report version gets one outbox row per destination;
    # `ecg-worklist deliver` sends them over MLLP.
    hl7_destinations: list[HL7Destination] = Field(default_factory=lambda: [HL7Destination(name="his")])
    delivery_poll_seconds: float = 5.0  # how often `deliver` looks for due outbox rows

    # Audit checkpoints (reports/audit_anchor.py): every so often the audit chain's head is
    # signed (HMAC-SHA256) with this key and appended to this file, OUTSIDE the database, so
    # that `audit verify` catches a superuser who rewrites and re-hashes the chain. The key
    # lives only in the environment of the processes that sign or verify (never in the
    # database); put the file on another volume or host, append-only (chattr +a, WORM).
    # No key: no checkpoints, and `audit verify` checks the chain against itself only.
    audit_checkpoint_key: SecretStr | None = Field(default=None, min_length=32)
    audit_checkpoint_path: Path | None = None  # default: <data_dir>/audit/checkpoints.jsonl
    audit_checkpoint_every_seconds: float = 300.0  # `watch` signs the head this often

    # Preparation: studies a prepare task reads and measures, then saves in one transaction (one
    # Celery message per batch; worker.stages.prepare_studies). A study trickling in alone is a batch of one.
    prepare_batch_size: int = Field(default=4, ge=1)

    # Interpretation
    interpreter: Literal["protocol", "model"] = "protocol"
    model_path: str | None = None  # hub id or folder; None = the bundled demo model
    ecg_tower_path: str | None = None  # separate ECG tower weights, where a checkpoint lacks them
    engine: Literal["hf", "vllm"] = "hf"
    interpret_batch_size: int = 64
    # A Celery interpret task that finds less than a full batch waits, up to this long, while
    # another worker is preparing studies, so the GPU reads full batches (worker.runner).
    interpret_batch_wait_seconds: float = Field(default=2.0, ge=0.0)
    max_new_tokens: int = 2048

    # Reports
    # Drafts a report task builds at once: one transaction to draft them, one to publish them,
    # the outbound folder synced once (worker.stages.build_reports).
    report_batch_size: int = Field(default=16, ge=1)
    sending_facility: str = "ECGWL"
    receiving_facility: str = "HIS"
    draft_result_status: Literal["P", "R"] = "P"

    # Sign-off web app (`ecg-worklist review serve`, reports/review/). Localhost by default:
    # put it behind the hospital's TLS reverse proxy (its cookies are Secure, HTTPS only).
    review_host: str = "127.0.0.1"
    review_port: int = 8080
    # Labels that sort a draft first and mark it, as a JSON list; unset = the protocol
    # vocabulary's critical labels (ST elevation, VT, complete heart block, QTc > 500 ms, ...).
    review_critical_labels: list[str] | None = None
    # A rejection is always a report version with OBR-25 X and outbox rows: "send" delivers
    # the X message, "hold" records the rows as held (shown, never sent).
    review_reject_action: Literal["send", "hold"] = "send"
    # Secure cookies (HTTPS only) by default; false ONLY for plain-http development on localhost.
    review_secure_cookies: bool = True
    review_session_hours: float = 12.0
    # How far rate, PR, QRS, QT, QTc and QRS axis must move from the patient's previous ECG to
    # be listed as a change, as a JSON object; unset keys keep the defaults (reports/review/compare.py
    # says why: hr_bpm 10, pr_ms 20, qrs_ms 20, qt_ms 30, qtc_ms 30, qrs_axis_deg 30).
    review_change_thresholds: dict[str, float] = Field(default_factory=dict)

    # Log lines of watch, deliver, metrics serve and the workers (worker/logs.py):
    # "text" (readable lines) or "json" (one JSON object per line, for a log shipper).
    log_format: Literal["text", "json"] = "text"

    # Prometheus exporter (`ecg-worklist metrics serve`, worker/metrics.py). Localhost by default;
    # a container sets 0.0.0.0 so the scraper can reach it. A reading of Postgres and Redis is
    # reused for this long, however many scrapers ask.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    metrics_min_interval_seconds: float = 10.0
    # Studies by state are read from the counters the database keeps (reports/counts.py: a few
    # rows, exact) every scrape with 0; a positive value reads them this often and keeps them
    # current in between from the audit events each scrape reads.
    metrics_recount_seconds: float = 0.0

    # TEST-ONLY: every pipeline stage sleeps this long per study before its work, so a test can
    # kill a worker in the middle of a task (or of a long batch). Always 0 in production.
    test_stage_delay_seconds: float = 0.0
    # TEST-ONLY: "STAGE:TEXT" (e.g. "prepare:poison"): the worker process working on a study
    # whose file name contains TEXT kills itself (SIGKILL) at that stage, as a file that crashes
    # a reader would. The fault suite's poison file. Always unset in production.
    test_poison: str | None = None

    @field_validator("data_dir", "audit_checkpoint_path")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        # Made absolute where it is read: a relative value means the directory it was typed in,
        # never whichever directory a later process happens to run in.
        return value.expanduser().resolve() if value is not None else None

    @field_validator("inbox_dirs")
    @classmethod
    def _absolute_inboxes(cls, value: list[Path]) -> list[Path]:
        return [folder.expanduser().resolve() for folder in value]

    @model_validator(mode="after")
    def _default_inbox(self) -> Settings:
        if not self.inbox_dirs:
            self.inbox_dirs = [self.data_dir / "inbox"]
        return self

    @field_validator("hl7_destinations", mode="before")
    @classmethod
    def _destinations_from_names_or_objects(cls, value: object) -> object:
        return [parse_destination(v) for v in value] if isinstance(value, list) else value

    @field_validator("hl7_destinations")
    @classmethod
    def _destination_names_unique(cls, value: list[HL7Destination]) -> list[HL7Destination]:
        return check_unique_names(value)

    @property
    def hl7_destination_names(self) -> list[str]:
        """The names to queue outbox rows for (`destinations=` of the store's report calls)."""
        return [d.name for d in self.hl7_destinations]

    @property
    def audit_checkpoint_file(self) -> Path:
        return self.audit_checkpoint_path or self.data_dir / "audit" / "checkpoints.jsonl"

    @property
    def audit_key_bytes(self) -> bytes | None:
        key = self.audit_checkpoint_key
        return key.get_secret_value().encode("utf-8") if key is not None else None

    @property
    def archive_dir(self) -> Path:
        return self.data_dir / "archive"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"

    @property
    def outbound_dir(self) -> Path:
        return self.data_dir / "outbound"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ecg-worklist.sqlite3').resolve()}"


def default_data_dir() -> Path:
    """The data folder when ECGWL_DATA_DIR is unset: the user's state directory (XDG)."""
    state = os.environ.get("XDG_STATE_HOME", "").strip()
    base = Path(state) if state and Path(state).is_absolute() else Path.home() / ".local" / "state"
    return (base / "ecg-worklist").resolve()
