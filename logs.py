"""Structured logs: one JSON object per line on stdout, as Cloud Logging reads them.

Use the standard `logging` API with context in `extra`::

    log = logs.get_logger(__name__)
    log.info("poll applied", extra={"jobId": job_id, "provider": "runwayml", "pollNumber": 3})

Only the context keys in `CONTEXT_KEYS` are copied into the entry, so an object that happens to
hold a secret cannot slip into a log line through `extra`.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

CONTEXT_KEYS = (
    "jobId",
    "provider",
    "taskId",
    "attempt",
    "attemptId",
    "pollNumber",
    "status",
    "code",
    "event",
    "durationMs",
    "count",
    "host",
    "logging.googleapis.com/trace",
)

_SEVERITY = {"WARNING": "WARNING", "CRITICAL": "CRITICAL", "ERROR": "ERROR", "INFO": "INFO"}


class JsonFormatter(logging.Formatter):
    """Formats a record as a Cloud Logging structured entry."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelname, "DEBUG"),
            "message": record.getMessage(),
            "logger": record.name,
        }
        for key in CONTEXT_KEYS:
            if key in record.__dict__:
                entry[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str)


_configured = False


def configure(level: int = logging.INFO) -> None:
    """Send the project's loggers to stdout as JSON (once per process)."""
    global _configured
    if _configured:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("cvplus")
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    _configured = True


def get_logger(name: str) -> logging.Logger:
    """A logger under the project's root, configured on first use."""
    configure()
    return logging.getLogger(f"cvplus.{name}")
