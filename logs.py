"""Structured logs: one JSON object per line on stdout, as Cloud Logging and Error Reporting read them.

Use the standard `logging` API with context in `extra`::

    log = logs.get_logger(__name__)
    log.info("poll applied", extra={"jobId": job_id, "provider": "runwayml", "pollNumber": 3})

Only the context keys in `CONTEXT_KEYS` are copied into the entry, so an object that happens to
hold a secret cannot slip into a log line through `extra`. A line logged with an exception
(`log.exception`) carries the exception's message and its traceback (`stack_trace`), typed as a
`ReportedErrorEvent` with a `serviceContext`, so Error Reporting groups it. Every string written is
redacted first: the configured secrets (`redact_values`) and anything shaped like a bearer token,
a JWT, a RunwayML `key_...` or a webhook `whsec_...` secret.

The request being served (`request_context`) adds its trace id (`logging.googleapis.com/trace`) and
the function's name to every line logged while it runs. `configure()` is called once by the entry
points (`web/deps.py`, `main.py`); modules only ask `get_logger`.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterable, Iterator
from typing import Any

CONTEXT_KEYS = (
    "jobId",
    "provider",
    "toProvider",
    "taskId",
    "attempt",
    "attemptId",
    "pollNumber",
    "status",
    "code",
    "event",
    "function",
    "durationMs",
    "count",
    "host",
    "step",
    "action",
    "report",
    "try",
    "sizeBytes",
    "problems",
    "logging.googleapis.com/trace",
)
TRACE_KEY = "logging.googleapis.com/trace"
ERROR_EVENT = "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"
REDACTED = "[REDACTED]"
# shapes of credentials, whatever their source: bearer tokens, JWTs, RunwayML keys, webhook secrets
PATTERNS = re.compile(
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]+"
    r"|eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"
    r"|\bkey_[A-Za-z0-9]{8,}"
    r"|\bwhsec_[A-Za-z0-9+/=_-]{4,}"
)
# every match of PATTERNS holds one of these (its first alternative in any case): a line without them
# needs no regex scan, which on a short line costs more than the rest of its formatting
_HINTS = ("eyJ", "key_", "whsec_")
_SEVERITY = {"WARNING": "WARNING", "CRITICAL": "CRITICAL", "ERROR": "ERROR", "INFO": "INFO"}
_secrets: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None  # the configured secrets, longest first
_request: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("request", default=None)


def redact_values(values: Iterable[str]) -> None:
    """Never write these strings (the configured keys and secrets) in a log line."""
    global _secret_pattern
    _secrets.update(v for v in values if v and len(v) >= 4)
    longest_first = sorted(_secrets, key=len, reverse=True)  # a secret inside another goes with it
    _secret_pattern = re.compile("|".join(map(re.escape, longest_first))) if longest_first else None


def redact(text: str) -> str:
    """`text` with every configured secret and every credential-shaped string replaced."""
    if _secret_pattern is not None:
        text = _secret_pattern.sub(REDACTED, text)
    if any(hint in text for hint in _HINTS) or "bearer" in text.lower():
        text = PATTERNS.sub(REDACTED, text)
    return text


@contextlib.contextmanager
def request_context(*, function: str, trace: str | None = None) -> Iterator[None]:
    """Stamp every line logged inside with the function's name and the request's trace."""
    token = _request.set({"function": function, **({TRACE_KEY: trace} if trace else {})})
    try:
        yield
    finally:
        _request.reset(token)


def service_name() -> str:
    """The function being served (Error Reporting's `serviceContext.service`)."""
    current = (_request.get() or {}).get("function")
    return current or os.environ.get("FUNCTION_TARGET") or os.environ.get("K_SERVICE") or "cvplus"


class JsonFormatter(logging.Formatter):
    """Formats a record as a Cloud Logging structured entry (an Error Reporting event with a traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelname, "DEBUG"),
            "message": record.getMessage(),
            "logger": record.name,
            **(_request.get() or {}),
        }
        entry.update((key, record.__dict__[key]) for key in CONTEXT_KEYS if key in record.__dict__)
        if record.exc_info and record.exc_info[0] is not None:
            kind, exc, tb = record.exc_info
            entry["message"] = f"{entry['message']}: {kind.__name__}: {exc}"
            entry["stack_trace"] = "".join(traceback.format_exception(kind, exc, tb))
            entry["@type"] = ERROR_EVENT
            entry["serviceContext"] = {"service": service_name()}
        return redact(json.dumps(_redacted(entry), default=str))


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    return value


_configured = False


def configure(level: int = logging.INFO) -> None:
    """Send the project's loggers to stdout as JSON (once per process; later calls do nothing)."""
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


def emit(logger: logging.Logger, level: int, message: str, context: dict[str, Any]) -> None:
    """`logger.log(level, message, extra=context)` without looking up the calling source line, which
    no line shows (the formatter writes `CONTEXT_KEYS`, not the file and line): for lines written on
    every request."""
    if logger.isEnabledFor(level):
        logger.handle(logger.makeRecord(logger.name, level, "", 0, message, (), None, extra=context))


def get_logger(name: str) -> logging.Logger:
    """A logger under the project's root (configured by the entry points, not here)."""
    return logging.getLogger(f"cvplus.{name}")
