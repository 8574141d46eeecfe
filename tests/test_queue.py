"""The Cloud Tasks client: against the real emulator where it can tell, a small fake client where not.

The emulator accepts duplicate names and sends no OIDC header, so ALREADY_EXISTS handling and the
request's token fields are pinned with `RecordingClient`, a stand-in for Google's client.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from msgspec.structs import replace

import tasks
from config import ConfigError, Settings, load_settings
from local.procs import StartupError, port_open
from local.tasks_emulator import TasksEmulator, ensure_venv
from tasks.memory import InMemoryQueue
from tasks.queue import (
    MAX_SCHEDULE_DELAY_S,
    CloudTasksQueue,
    QueueError,
    audience_for,
    finalize_name_key,
    poll_name_key,
    task_id_for,
)
from tests.tasks_fixtures import TASKS_SERVICE_ACCOUNT, TaskReceiver

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
POLL = {"job_id": "job-1", "provider": "runwayml", "task_id": "rw-42", "poll_number": 3}


class RecordingClient:
    """Stands in for `CloudTasksClient.create_task`: records calls, optionally raises."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[dict] = []
        self.error = error

    def create_task(self, *, request: dict, retry: object = None, timeout: float | None = None) -> object:
        self.calls.append({"request": request, "retry": retry, "timeout": timeout})
        if self.error is not None:
            raise self.error
        return request["task"]


def cloud_settings(**extra: str) -> Settings:
    env = {
        "GOOGLE_CLOUD_PROJECT": "cvplus-test",
        "FUNCTION_REGION": "europe-west1",
        "FUNCTIONS_BASE_URL": "https://europe-west1-cvplus-test.cloudfunctions.net",
        "TASKS_SERVICE_ACCOUNT": TASKS_SERVICE_ACCOUNT,
    }
    return load_settings({**env, **extra})


def fake_queue(client: RecordingClient, settings: Settings | None = None) -> CloudTasksQueue:
    return CloudTasksQueue(settings or cloud_settings(), client_factory=lambda: client, clock=lambda: NOW)


@pytest.fixture
def emulator_queue(emulator_queue_settings: Settings) -> Iterator[CloudTasksQueue]:
    queue = CloudTasksQueue(emulator_queue_settings)
    yield queue
    queue.close()


# --- against the emulator -------------------------------------------------------------------------


def test_poll_task_reaches_the_function_url_with_its_json_payload_after_the_delay(
    emulator_queue: CloudTasksQueue, task_receiver: TaskReceiver
):
    # Given a queue on the emulator whose functions URL is the loopback receiver
    before = datetime.now(UTC).timestamp()
    # When a poll is enqueued one second ahead
    assert emulator_queue.enqueue_poll(**POLL, delay_s=1.0) is True
    # Then the receiver gets exactly that POST, not before its scheduled time
    [received] = task_receiver.wait_for(1)
    assert received.method == "POST"
    assert received.path == "/runwayml_polling_task"
    assert received.headers["content-type"] == "application/json"
    assert json.loads(received.body) == {
        "jobId": "job-1",
        "provider": "runwayml",
        "taskId": "rw-42",
        "pollNumber": 3,
    }
    assert received.headers["x-cloudtasks-taskname"] == task_id_for(
        poll_name_key("job-1", "runwayml", "rw-42", 3)
    )
    eta = float(received.headers["x-cloudtasks-tasketa"])
    assert eta >= before + 1.0 - 1e-3
    assert received.received_at >= eta


def test_emulator_stores_the_name_token_and_deadline_of_a_pending_task(
    emulator_queue: CloudTasksQueue, tasks_emulator: TasksEmulator
):
    emulator_queue.enqueue_finalize(job_id="job-1", attempt_id="a1", delay_s=3600)
    [task] = tasks_emulator.list_tasks(emulator_queue.parent)
    assert task.name == f"{emulator_queue.parent}/tasks/{task_id_for(finalize_name_key('job-1', 'a1'))}"
    assert task.http_request.url.endswith("/finalize_video_task")
    assert task.http_request.oidc_token.service_account_email == TASKS_SERVICE_ACCOUNT
    assert task.http_request.oidc_token.audience == task.http_request.url
    assert task.dispatch_deadline == timedelta(minutes=10)
    assert task.schedule_time > datetime.now(UTC) + timedelta(minutes=59)


def test_emulator_gap_duplicate_names_are_accepted(
    emulator_queue: CloudTasksQueue, tasks_emulator: TasksEmulator
):
    # This is why ALREADY_EXISTS is tested with RecordingClient below.
    assert emulator_queue.enqueue_poll(**POLL, delay_s=3600) is True
    assert emulator_queue.enqueue_poll(**POLL, delay_s=3600) is True
    names = [task.name for task in tasks_emulator.list_tasks(emulator_queue.parent)]
    assert len(names) == 2
    assert len(set(names)) == 1


def test_emulator_retries_a_task_whose_target_fails(
    emulator_queue: CloudTasksQueue, task_receiver: TaskReceiver
):
    task_receiver.failures_left = 2
    emulator_queue.enqueue_poll(**POLL, delay_s=0)
    attempts = task_receiver.wait_for(3)
    assert [a.headers["x-cloudtasks-taskretrycount"] for a in attempts] == ["0", "1", "2"]
    assert task_receiver.wait_for(1, timeout_s=0.5) == []  # the 2xx ended it


def test_enqueue_to_a_missing_queue_is_a_queue_error(emulator_queue_settings: Settings):
    queue = CloudTasksQueue(replace(emulator_queue_settings, tasks_queue="no-such-queue"))
    try:
        with pytest.raises(QueueError) as caught:
            queue.enqueue_poll(**POLL, delay_s=0)
    finally:
        queue.close()
    assert caught.value.retryable is False
    assert isinstance(caught.value.__cause__, gexc.GoogleAPICallError)


def test_stopped_emulator_leaves_no_process_behind(tmp_path: Path, tasks_emulator: TasksEmulator):
    # tasks_emulator: the venv exists, so this start is quick
    emulator = TasksEmulator(tmp_path).start()
    pid = emulator.process.pid
    emulator.stop()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert not port_open(emulator.port)


def test_ensure_venv_says_what_is_missing(tmp_path: Path):
    with pytest.raises(StartupError, match=r"requirements-tasks-emulator\.txt is missing"):
        ensure_venv(tmp_path)


# --- the request, through a recording client --------------------------------------------------------


def test_create_request_is_an_authenticated_json_post_to_the_function():
    client = RecordingClient()
    assert fake_queue(client).enqueue_poll(**POLL, delay_s=30) is True
    request = client.calls[0]["request"]
    task, http = request["task"], request["task"].http_request
    assert request["parent"] == "projects/cvplus-test/locations/europe-west1/queues/video-polling"
    assert (
        task.name
        == f"{request['parent']}/tasks/{task_id_for(poll_name_key('job-1', 'runwayml', 'rw-42', 3))}"
    )
    assert http.http_method.name == "POST"
    assert http.url == "https://europe-west1-cvplus-test.cloudfunctions.net/runwayml_polling_task"
    assert http.headers["Content-Type"] == "application/json"
    assert json.loads(http.body)["pollNumber"] == 3
    assert http.oidc_token.service_account_email == TASKS_SERVICE_ACCOUNT
    assert http.oidc_token.audience == http.url
    assert task.schedule_time == NOW + timedelta(seconds=30)
    assert task.dispatch_deadline == timedelta(minutes=10)


def test_audience_is_the_url_without_query_string():
    assert audience_for("https://r-p.cloudfunctions.net/fn?x=1#f") == "https://r-p.cloudfunctions.net/fn"


@pytest.mark.parametrize(
    ("delay_s", "expected"),
    [(-5, timedelta(0)), (0, timedelta(0)), (60 * 86400, timedelta(seconds=MAX_SCHEDULE_DELAY_S))],
)
def test_schedule_time_is_clamped_between_now_and_30_days(delay_s: float, expected: timedelta):
    client = RecordingClient()
    fake_queue(client).enqueue_poll(**POLL, delay_s=delay_s)
    scheduled = client.calls[0]["request"]["task"].schedule_time
    assert scheduled == NOW + expected
    assert NOW <= scheduled <= NOW + timedelta(days=30)


def test_nan_delay_is_refused():
    with pytest.raises(ValueError, match="NaN"):
        fake_queue(RecordingClient()).enqueue_poll(**POLL, delay_s=float("nan"))


def test_emulator_without_service_account_sends_no_token():
    settings = replace(cloud_settings(CLOUD_TASKS_EMULATOR_HOST="127.0.0.1:1"), tasks_service_account=None)
    client = RecordingClient()
    fake_queue(client, settings).enqueue_poll(**POLL, delay_s=0)
    assert "oidc_token" not in client.calls[0]["request"]["task"].http_request


def test_real_service_without_service_account_fails_naming_the_variable():
    settings = replace(cloud_settings(), tasks_service_account=None)
    with pytest.raises(ConfigError, match="TASKS_SERVICE_ACCOUNT"):
        fake_queue(RecordingClient(), settings).enqueue_poll(**POLL, delay_s=0)


def test_client_is_created_on_first_use_and_reused():
    made: list[RecordingClient] = []

    def factory() -> RecordingClient:
        made.append(RecordingClient())
        return made[-1]

    queue = CloudTasksQueue(cloud_settings(), client_factory=factory)
    assert made == []
    queue.enqueue_poll(**POLL, delay_s=0)
    queue.enqueue_finalize(job_id="job-1", attempt_id="a1")
    assert len(made) == 1
    assert len(made[0].calls) == 2


def test_create_is_retried_only_on_transient_errors():
    client = RecordingClient()
    fake_queue(client).enqueue_poll(**POLL, delay_s=0)
    retry = client.calls[0]["retry"]
    assert retry._predicate(gexc.ServiceUnavailable("down"))
    assert retry._predicate(gexc.DeadlineExceeded("slow"))
    assert not retry._predicate(gexc.InvalidArgument("bad"))
    assert client.calls[0]["timeout"] == 10.0


# --- duplicates and errors ------------------------------------------------------------------------


@pytest.mark.parametrize("error", [gexc.AlreadyExists("task exists"), gexc.Conflict("409 from REST")])
def test_existing_task_name_counts_as_success(error: Exception):
    assert fake_queue(RecordingClient(error)).enqueue_poll(**POLL, delay_s=0) is False


@pytest.mark.parametrize(
    ("error", "code", "retryable"),
    [
        (gexc.ServiceUnavailable("down"), "unavailable", True),
        (gexc.DeadlineExceeded("slow"), "unavailable", True),
        (gexc.Aborted("contention"), "unavailable", True),
        (gexc.RetryError("gave up", gexc.ServiceUnavailable("down")), "unavailable", True),
        (gexc.NotFound("queue"), "queue_not_found", False),
        (gexc.PermissionDenied("no"), "permission_denied", False),
        (gexc.InvalidArgument("bad"), "invalid_task", False),
        (gexc.MethodNotImplemented("nope"), "cloud_tasks_unimplemented", False),
    ],
)
def test_google_errors_become_queue_errors(error: Exception, code: str, retryable: bool):
    with pytest.raises(QueueError) as caught:
        fake_queue(RecordingClient(error)).enqueue_poll(**POLL, delay_s=0)
    assert (caught.value.code, caught.value.retryable) == (code, retryable)
    assert caught.value.__cause__ is error


def test_missing_credentials_become_a_queue_error():
    def factory() -> RecordingClient:
        raise auth_exc.DefaultCredentialsError("no credentials found")

    queue = CloudTasksQueue(cloud_settings(), client_factory=factory)
    with pytest.raises(QueueError) as caught:
        queue.enqueue_poll(**POLL, delay_s=0)
    assert caught.value.code == "credentials"
    assert caught.value.retryable is False


# --- names ------------------------------------------------------------------------------------------


def test_same_key_same_name_and_each_poll_its_own():
    key = poll_name_key("job-1", "runwayml", "rw-42", 3)
    assert task_id_for(key) == task_id_for(poll_name_key("job-1", "runwayml", "rw-42", 3))
    assert task_id_for(key) != task_id_for(poll_name_key("job-1", "runwayml", "rw-42", 4))
    assert task_id_for(key) != task_id_for(finalize_name_key("job-1", "rw-42"))


@pytest.mark.parametrize("key", ["poll:j:runwayml:t:1", "finalize:j:a", "x" * 2000, "ünï:cødé/?", ""])
def test_task_ids_are_valid_and_start_with_the_hash(key: str):
    task_id = task_id_for(key)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,500}", task_id)
    assert re.match(r"[0-9a-f]{64}", task_id)


# --- the in-memory queue --------------------------------------------------------------------------


def test_in_memory_queue_records_tasks_and_refuses_duplicates():
    queue = InMemoryQueue()
    assert queue.enqueue_poll(**POLL, delay_s=-1) is True
    assert queue.enqueue_poll(**POLL, delay_s=5) is False
    [task] = queue.take()
    assert (task.function, task.delay_s) == ("runwayml_polling_task", 0.0)
    assert task.payload == {"jobId": "job-1", "provider": "runwayml", "taskId": "rw-42", "pollNumber": 3}
    assert queue.enqueue_poll(**POLL, delay_s=5) is False  # the name stays reserved


def test_in_memory_queue_can_fail_on_purpose():
    queue = InMemoryQueue()
    queue.fail_next(QueueError("down", code="unavailable", retryable=True))
    with pytest.raises(QueueError):
        queue.enqueue_finalize(job_id="job-1", attempt_id="a1")
    assert queue.enqueue_finalize(job_id="job-1", attempt_id="a1") is True
    assert [t.function for t in queue.for_function("finalize_video_task")] == ["finalize_video_task"]


def test_package_exports_what_it_lists():
    for name in tasks.__all__:
        assert hasattr(tasks, name), name
