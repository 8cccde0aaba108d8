"""Log lines of the long-running commands (`watch`, `deliver`, `metrics serve`, the workers).

    configure_logging(settings.log_format, level="INFO")

Two forms, chosen by ECGWL_LOG_FORMAT: `text` (the default; one readable line:
`2026-12-04 23:10:02,113 INFO worker.watch_loop: scan: 2 new, 1 quarantined`) and `json`
(one JSON object per line, for a log shipper: time in UTC ISO 8601, level, logger, message,
and the traceback as `exc` when there is one). Messages are the same words in both forms;
they never carry a patient identifier (the callers log inbox names, hashes and study ids).
"""

from __future__ import annotations

import datetime as dt
import json
import logging

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: what a log shipper (Loki, Elasticsearch, journald) indexes."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(log_format: str = "text", level: str = "INFO") -> None:
    """Set the root logger's one handler (stderr) to the chosen form; repeated calls replace it."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Python warnings (a library's, Celery's "running as root") become log lines in the same form.
    logging.captureWarnings(True)
    # Alembic announces each of its plugins at INFO whenever a revision is read: noise, not news.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
