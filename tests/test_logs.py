"""Logs that explain every 500: message, redacted traceback, trace id, Error Reporting's shape."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

import logs
from tests.conftest import ROOT, TEST_PROJECT
from tests.stack import HEYGEN_KEY, TASKS_SA

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def lines() -> Iterator[list[dict]]:
    """Every line the project's loggers write, as Cloud Logging would read it."""
    captured: list[dict] = []
    handler = logging.Handler()
    handler.emit = lambda record: captured.append(json.loads(logs.JsonFormatter().format(record)))  # type: ignore[method-assign]
    root = logging.getLogger("cvplus")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield captured
    root.removeHandler(handler)
    root.setLevel(level)


class Exploding:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def poll(self, **_: object) -> None:
        raise self.error


def poll_with(stack, error: Exception, headers: dict[str, str]):
    stack.deps.poller = Exploding(error)
    payload = {"jobId": "j1", "provider": "runwayml", "taskId": "t1", "pollNumber": 1}
    auth = stack.service(TASKS_SA, "runwayml_polling_task")
    return stack.client("runwayml_polling_task").post("/", json=payload, headers=auth | headers)


def test_a_500_is_logged_with_its_message_traceback_and_trace_id(stack, lines):
    answer = poll_with(
        stack, ZeroDivisionError("division by zero"), {"X-Cloud-Trace-Context": f"{TRACE}/1;o=1"}
    )
    assert answer.status_code == 500
    assert "Traceback" not in answer.get_data(as_text=True)
    (line,) = [entry for entry in lines if entry.get("event") == "http_5xx"]
    assert line["severity"] == "ERROR"
    assert "ZeroDivisionError: division by zero" in line["message"]
    assert line["stack_trace"].startswith("Traceback (most recent call last)")
    assert "raise self.error" in line["stack_trace"]
    assert line["logging.googleapis.com/trace"] == f"projects/{TEST_PROJECT}/traces/{TRACE}"
    assert line["@type"] == logs.ERROR_EVENT
    assert line["serviceContext"] == {"service": "runwayml_polling_task"}
    assert line["function"] == "runwayml_polling_task"


def test_the_w3c_traceparent_header_gives_the_trace_too(stack, lines):
    poll_with(stack, ZeroDivisionError("x"), {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"})
    (line,) = [entry for entry in lines if entry.get("event") == "http_5xx"]
    assert line["logging.googleapis.com/trace"] == f"projects/{TEST_PROJECT}/traces/{TRACE}"


def test_a_configured_secret_in_an_exception_message_is_redacted(stack, lines):
    answer = poll_with(stack, RuntimeError(f"upstream answered: bad key {HEYGEN_KEY}"), {})
    assert answer.status_code == 500
    text = json.dumps(lines)
    assert HEYGEN_KEY not in text
    (line,) = [entry for entry in lines if entry.get("event") == "http_5xx"]
    assert "bad key [REDACTED]" in line["message"]
    assert "bad key [REDACTED]" in line["stack_trace"]


@pytest.mark.parametrize(
    "secret",
    [
        "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
        "key_" + "f00d" * 32,
        "whsec_Zm9yZ2VkLXNlY3JldA==",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
        "BEARER opaque-token_123",
        "bEaReR\topaque-token_123",
    ],
)
def test_anything_shaped_like_a_credential_is_redacted(secret):
    record = logging.LogRecord("cvplus.t", logging.WARNING, __file__, 1, f"saw {secret} here", None, None)
    line = logs.JsonFormatter().format(record)
    assert secret not in line
    assert secret.split()[-1] not in line
    assert "[REDACTED]" in line


def test_context_the_code_passes_is_kept_when_whitelisted():
    record = logging.LogRecord("cvplus.t", logging.INFO, __file__, 1, "m", None, None)
    context = {
        "step": "retention",
        "report": {"retention": {"jobs": 2}},
        "try": 2,
        "sizeBytes": 9,
        "action": "poll",
    }
    record.__dict__.update(context, apiKey="no")
    entry = json.loads(logs.JsonFormatter().format(record))
    assert {key: entry[key] for key in context} == context
    assert "apiKey" not in entry


def test_importing_a_module_configures_no_logging_but_the_entry_module_does():
    probe = (
        "import logging, sys; import tasks.poll, jobs.runner; n = len(logging.getLogger('cvplus').handlers); "
        "import main; print(n, len(logging.getLogger('cvplus').handlers))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "1"]


def test_a_line_emitted_without_its_source_line_reads_as_one_logged_the_usual_way(lines):
    log = logs.get_logger("t")
    context = {"event": "e", "function": "f", "status": 200, "apiKey": "no"}
    log.warning("answered", extra=context)
    logs.emit(log, logging.WARNING, "answered", context)
    assert len(lines) == 2
    assert lines[0] == lines[1]
    assert (lines[0]["severity"], lines[0]["status"]) == ("WARNING", 200)
    assert "apiKey" not in lines[0]


def test_a_line_without_a_credential_shape_is_left_as_it_is():
    text = "job j-1 of user u_2 (key) answered 200: Bearer-free, eyj lowercase"
    assert logs.redact(text) == text
