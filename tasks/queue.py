"""Cloud Tasks client: named HTTP tasks with OIDC, deterministic names, one error seam.

Map::

    TaskQueue (protocol)     enqueue(function, payload, name_key, delay_s) -> True created / False existed
    |                        enqueue_poll(...), enqueue_finalize(...): payloads carry ids only
    |-- CloudTasksQueue      Cloud Tasks, or the local emulator when CLOUD_TASKS_EMULATOR_HOST is set
    `-- InMemoryQueue        tasks/memory.py: records tasks, refuses duplicate names (unit tests)

Error tree (the decision lives on the error; foreign exceptions are translated in `translate_error`)::

    QueueError               retryable  cause
      code "unavailable"     yes        UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL,
                                        ABORTED, or the client's retry deadline passed
      code "queue_not_found" no         NOT_FOUND: TASKS_QUEUE / TASKS_LOCATION name no queue
      code "permission_denied" no       PERMISSION_DENIED / UNAUTHENTICATED: IAM bindings missing
      code "credentials"     no         no usable Google credentials in this process
      code "invalid_task"    no         INVALID_ARGUMENT / FAILED_PRECONDITION
      code "cloud_tasks_*"   no         anything else google-api-core raises

    ALREADY_EXISTS (gRPC) or a plain 409 (REST) is not an error: the named task exists, so the work
    is already scheduled and `enqueue` returns False.

One task, as created: an HTTP POST to `settings.function_url(function)` with a JSON body and
`Content-Type: application/json`; `oidc_token = {service_account_email: TASKS_SERVICE_ACCOUNT,
audience: the URL without its query string}`; `schedule_time` = clock + delay, clamped to
[now, now + 30 days - 1 min]; `dispatch_deadline` 10 min by default, which must stay >= the target
function's timeout or Cloud Tasks retries a call that is still running.

Names: `<queue path>/tasks/<sha256 hex of name_key>-<kind>` where kind is the key's first `:` part
(`poll`, `finalize`). The hash comes first so names spread over the key space (Google warns that
sequential prefixes such as timestamps slow dispatch); the kind makes a name readable in the console.
Same key, same name: a repeated enqueue of the same poll collapses into one task.

Retries of the create call: only UNAVAILABLE and DEADLINE_EXCEEDED, for at most ~20 s. This is safe
only because every task is named: if a first attempt did reach Google, the repeat gets ALREADY_EXISTS,
which is success.

The emulator (local/tasks_emulator.py) accepts duplicate names (never ALREADY_EXISTS) and sends no
OIDC header, so ALREADY_EXISTS handling is tested with a small fake client. Without
TASKS_SERVICE_ACCOUNT the emulator path creates tasks without a token; the real service requires it.
Local stack only: `task_headers` adds headers to every task; the local stack (`local/serve.py`)
uses it to send `Authorization: Bearer <OIDC token for its URL>` signed by the loopback issuer,
standing in for the header the emulator does not add. Nothing deployed sets it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.auth import exceptions as auth_exc

import logs
from config import Settings
from errors import AppError
from jobs.txn import utcnow

POLL_FUNCTION = "runwayml_polling_task"
FINALIZE_FUNCTION = "finalize_video_task"
MAX_SCHEDULE_DELAY_S = 30 * 86400 - 60  # Cloud Tasks refuses > 30 days; a minute spare for clock skew
DEFAULT_DISPATCH_DEADLINE_S = 600.0
DEFAULT_RPC_TIMEOUT_S = 10.0

Clock = Callable[[], datetime]
TaskHeaders = Callable[[str], Mapping[str, str]]  # target URL -> extra headers of its task
log = logs.get_logger(__name__)


class QueueError(AppError):
    """Creating a task failed; `retryable` says whether trying again later can help."""

    default_code = "queue_error"


# ---------------------------------------------------------------------------------------------------
# Names and delays (pure)


def poll_name_key(job_id: str, provider: str, task_id: str, poll_number: int) -> str:
    return f"poll:{job_id}:{provider}:{task_id}:{poll_number}"


def finalize_name_key(job_id: str, attempt_id: str) -> str:
    return f"finalize:{job_id}:{attempt_id}"


def _renewed(key: str, renewal: str | None) -> str:
    return key if renewal is None else f"{key}:{renewal}"


def task_id_for(name_key: str) -> str:
    """The deterministic task id (last part of the task name) for a de-duplication key."""
    digest = hashlib.sha256(name_key.encode("utf-8")).hexdigest()
    kind = re.sub(r"[^A-Za-z0-9_-]", "-", name_key.split(":", 1)[0])[:32]
    return f"{digest}-{kind}" if kind else digest


def clamp_delay(delay_s: float) -> float:
    """A delay Cloud Tasks accepts: not in the past, not past 30 days."""
    if math.isnan(delay_s):
        raise ValueError("delay_s is NaN")
    return min(max(delay_s, 0.0), float(MAX_SCHEDULE_DELAY_S))


def queue_path(settings: Settings) -> str:
    return f"projects/{settings.project_id}/locations/{settings.queue_location}/queues/{settings.tasks_queue}"


def audience_for(url: str) -> str:
    """The OIDC audience of a target: its URL without query string or fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


# ---------------------------------------------------------------------------------------------------
# The protocol


class TaskQueue(Protocol):
    """Schedules a call of one of our functions; duplicates (same name_key) collapse into one task."""

    def enqueue(self, *, function: str, payload: dict[str, Any], name_key: str, delay_s: float) -> bool:
        """Create the task; True if created, False if a task with that name already existed."""
        ...

    def enqueue_poll(
        self,
        *,
        job_id: str,
        provider: str,
        task_id: str,
        poll_number: int,
        delay_s: float,
        renewal: str | None = None,
    ) -> bool:
        """Schedule poll number `poll_number` of one provider task.

        `renewal` makes the name new (the cleanup restarting a chain whose name may be spent)."""
        payload = {"jobId": job_id, "provider": provider, "taskId": task_id, "pollNumber": poll_number}
        key = _renewed(poll_name_key(job_id, provider, task_id, poll_number), renewal)
        return self.enqueue(function=POLL_FUNCTION, payload=payload, name_key=key, delay_s=delay_s)

    def enqueue_finalize(
        self, *, job_id: str, attempt_id: str, delay_s: float = 0.0, renewal: str | None = None
    ) -> bool:
        """Schedule the finalization (output copy, GIF) of a completed attempt."""
        payload = {"jobId": job_id, "attemptId": attempt_id}
        key = _renewed(finalize_name_key(job_id, attempt_id), renewal)
        return self.enqueue(function=FINALIZE_FUNCTION, payload=payload, name_key=key, delay_s=delay_s)


# ---------------------------------------------------------------------------------------------------
# Cloud Tasks


def emulator_client(host: str) -> Any:
    """A `CloudTasksClient` for the local emulator at `host` ("127.0.0.1:PORT"); no credentials."""
    import grpc
    from google.cloud import tasks_v2
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    transport = CloudTasksGrpcTransport(channel=grpc.insecure_channel(host))
    return tasks_v2.CloudTasksClient(transport=transport)


def client_for(settings: Settings) -> Any:
    """The emulator's client when CLOUD_TASKS_EMULATOR_HOST is set, else the real service's."""
    from google.cloud import tasks_v2

    if settings.tasks_emulator_host:
        return emulator_client(settings.tasks_emulator_host)
    return tasks_v2.CloudTasksClient()


def create_retry() -> gretry.Retry:
    """Client-side retry for a named create (safe to repeat, see the module docstring)."""
    return gretry.Retry(
        predicate=gretry.if_exception_type(gexc.ServiceUnavailable, gexc.DeadlineExceeded),
        initial=0.2,
        maximum=2.0,
        multiplier=2.0,
        timeout=20.0,
    )


def _oidc_token(settings: Settings, url: str) -> dict[str, str] | None:
    if settings.tasks_service_account is None and settings.tasks_emulator_host:
        return None  # the emulator sends no token anyway
    account = settings.require("tasks_service_account")
    return {"service_account_email": account, "audience": audience_for(url)}


def build_task(
    settings: Settings,
    *,
    function: str,
    payload: dict[str, Any],
    name_key: str,
    delay_s: float,
    now: datetime,
    dispatch_deadline_s: float = DEFAULT_DISPATCH_DEADLINE_S,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """The `tasks_v2.Task` for one call of `function` (pure apart from the settings)."""
    from google.cloud import tasks_v2

    url = settings.function_url(function)
    http_request: dict[str, Any] = {
        "http_method": tasks_v2.HttpMethod.POST,
        "url": url,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8"),
    }
    token = _oidc_token(settings, url)
    if token is not None:
        http_request["oidc_token"] = token
    return tasks_v2.Task(
        name=f"{queue_path(settings)}/tasks/{task_id_for(name_key)}",
        http_request=http_request,
        schedule_time=now + timedelta(seconds=clamp_delay(delay_s)),
        dispatch_deadline=timedelta(seconds=dispatch_deadline_s),
    )


def _is_already_exists(exc: gexc.GoogleAPICallError) -> bool:
    # gRPC says ALREADY_EXISTS; the REST transport may only say 409. ABORTED is also a 409 class.
    return isinstance(exc, gexc.Conflict) and not isinstance(exc, gexc.Aborted)


_RETRYABLE = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.ResourceExhausted,
    gexc.InternalServerError,
    gexc.Aborted,
)


def translate_error(exc: Exception, queue: str) -> QueueError:
    """The one seam where google-api-core / google-auth errors become `QueueError`."""
    if isinstance(exc, gexc.RetryError):
        return QueueError(f"Cloud Tasks did not answer in time: {exc}", code="unavailable", retryable=True)
    if isinstance(exc, auth_exc.GoogleAuthError):
        return QueueError(f"no usable Google credentials for Cloud Tasks: {exc}", code="credentials")
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, _RETRYABLE):
        return QueueError(f"Cloud Tasks is unavailable: {message}", code="unavailable", retryable=True)
    if isinstance(exc, gexc.NotFound):
        return QueueError(
            f"queue {queue} not found; check TASKS_QUEUE and TASKS_LOCATION", code="queue_not_found"
        )
    if isinstance(exc, gexc.PermissionDenied | gexc.Unauthenticated | gexc.Unauthorized | gexc.Forbidden):
        return QueueError(
            "permission denied creating a task: the runtime account needs roles/cloudtasks.enqueuer "
            f"and iam.serviceAccounts.actAs on TASKS_SERVICE_ACCOUNT ({message})",
            code="permission_denied",
        )
    if isinstance(exc, gexc.InvalidArgument | gexc.FailedPrecondition):
        return QueueError(f"Cloud Tasks refused the task: {message}", code="invalid_task")
    status = getattr(getattr(exc, "grpc_status_code", None), "name", None) or type(exc).__name__
    return QueueError(f"Cloud Tasks error: {message}", code=f"cloud_tasks_{status.lower()}")


class CloudTasksQueue(TaskQueue):
    """`TaskQueue` on Cloud Tasks; the client is created on first use and cached."""

    def __init__(
        self,
        settings: Settings,
        *,
        client_factory: Callable[[], Any] | None = None,
        clock: Clock = utcnow,
        dispatch_deadline_s: float = DEFAULT_DISPATCH_DEADLINE_S,
        rpc_timeout_s: float = DEFAULT_RPC_TIMEOUT_S,
        task_headers: TaskHeaders | None = None,
    ) -> None:
        if not 15 <= dispatch_deadline_s <= 1800:
            raise ValueError("dispatch_deadline_s must be within 15 s and 30 min (Cloud Tasks limits)")
        self.settings = settings
        self.parent = queue_path(settings)
        self._client_factory = client_factory or functools.partial(client_for, settings)
        self._clock = clock
        self._dispatch_deadline_s = dispatch_deadline_s
        self._rpc_timeout_s = rpc_timeout_s
        self._task_headers = task_headers
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client

    def enqueue(self, *, function: str, payload: dict[str, Any], name_key: str, delay_s: float) -> bool:
        task = build_task(
            self.settings,
            function=function,
            payload=payload,
            name_key=name_key,
            delay_s=delay_s,
            now=self._clock(),
            dispatch_deadline_s=self._dispatch_deadline_s,
            headers=self._task_headers(self.settings.function_url(function)) if self._task_headers else None,
        )
        short = task.name.rsplit("/", 1)[-1][:16]
        try:
            self.client.create_task(
                request={"parent": self.parent, "task": task},
                retry=create_retry(),
                timeout=self._rpc_timeout_s,
            )
        except gexc.GoogleAPICallError as exc:
            if not _is_already_exists(exc):
                raise translate_error(exc, self.parent) from exc
            log.info(f"task {short} for {function} already existed", extra={"event": "task_exists"})
            return False
        except (gexc.RetryError, auth_exc.GoogleAuthError) as exc:
            raise translate_error(exc, self.parent) from exc
        log.info(f"task {short} for {function} created", extra={"event": "task_created"})
        return True

    def close(self) -> None:
        """Close the cached client's channel (tests, local tools); a later enqueue opens a new one."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.transport.close()
