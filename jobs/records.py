"""Typed, immutable job records and their one mapping to and from Firestore documents.

Nothing outside this module reads or builds a job or task document by key: the store loads records
with `job_from_doc` / `task_from_doc`, the rules (`jobs/rules.py`) return new records, and the store
writes `job_changes(before, after)` (the top-level fields that differ). A partial document (a
projection) loads with defaults for what it lacks and is never written back.

    enhanced_video_jobs/{jobId}   Job: owner, request (JobRequest), prompt, selection, candidates,
                                  status, progress, estimated finish, attempts (Attempt), costs,
                                  output, error, finalize (FinalizeState), timestamps; `provider`
                                  and `attemptCount` are derived from the attempts (queries use
                                  them). Server only: the owner reads `jobs/views.py`'s user view
    runwayml_jobs/{taskId} ...    TaskRecord: one provider task (one per attempt that was created)

`updatedAt` (server time) and `expireAt` (TTL) are stamped by the store on every write; records
read them but never write them.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from providers.base import TERMINAL_STATUSES as TERMINAL
from providers.base import Status

STAMPS = ("updatedAt", "expireAt")


class AttemptStatus(enum.StrEnum):
    SUBMITTING = "submitting"
    ACTIVE = "active"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


OPEN_ATTEMPT_STATUSES = frozenset({AttemptStatus.SUBMITTING, AttemptStatus.ACTIVE})


@functools.cache  # called for every field of every document read: thousands per batch
def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True)
class JobRequest:
    """The options a job was asked with (the script itself is kept only as its digest)."""

    style: str = "professional"
    quality: str = "standard"
    kind: str = "avatar"
    duration_s: int = 5
    aspect_ratio: str = "16:9"
    resolution: str = "720p"
    format: str = "mp4"
    provider: str | None = None
    image_url: str | None = None
    camera_motion: str | None = None
    camera_intensity: float = 0.5
    seed: int | None = None
    title: str | None = None
    script_sha256: str = ""

    def to_doc(self) -> dict[str, Any]:
        return {key: getattr(self, name) for key, name in _REQUEST_KEYS}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> JobRequest:
        return cls(**{_REQUEST_FIELDS[key]: value for key, value in doc.items() if key in _REQUEST_FIELDS})

    def fingerprint(self) -> str:
        """Same options and script -> same fingerprint (a repeated Idempotency-Key must match it)."""
        return hashlib.sha256(repr(sorted(self.to_doc().items())).encode()).hexdigest()


_REQUEST_KEYS = tuple((_camel(f.name), f.name) for f in fields(JobRequest))  # (document key, field)
_REQUEST_FIELDS = dict(_REQUEST_KEYS)  # document key -> field


@dataclass(frozen=True)
class Attempt:
    attempt_id: str
    number: int
    provider: str
    status: AttemptStatus
    task_id: str | None = None
    error: Mapping[str, Any] | None = None
    cost_usd: float | None = None
    started_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_ATTEMPT_STATUSES

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Attempt:
        return cls(
            attempt_id=doc["attemptId"],
            number=int(doc["number"]),
            provider=doc["provider"],
            status=AttemptStatus(doc["status"]),
            task_id=doc.get("taskId"),
            error=doc.get("error"),
            cost_usd=doc.get("costUsd"),
            started_at=doc.get("startedAt"),
        )

    def to_doc(self) -> dict[str, Any]:
        doc = {_camel(f.name): getattr(self, f.name) for f in fields(self)}
        return {**doc, "status": str(self.status), "error": _plain(self.error)}


@dataclass(frozen=True)
class FinalizeState:
    """The finalize step of a completed attempt: its lease, tries and what happened last."""

    attempt_id: str
    tries: int = 0
    lease_until: datetime | None = None
    last_error: Mapping[str, Any] | None = None
    requested_at: datetime | None = None
    deadline_at: datetime | None = None
    last_tried_at: datetime | None = None
    requeued_at: datetime | None = None
    finalized_at: datetime | None = None

    def to_doc(self) -> dict[str, Any]:
        doc = {_camel(f.name): getattr(self, f.name) for f in fields(self)}
        return {**doc, "lastError": _plain(self.last_error)}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> FinalizeState:
        values = {_FINALIZE_FIELDS[key]: value for key, value in doc.items() if key in _FINALIZE_FIELDS}
        return cls(**{**values, "tries": int(values.get("tries") or 0)})


_FINALIZE_FIELDS = {_camel(f.name): f.name for f in fields(FinalizeState)}  # document key -> field


@dataclass(frozen=True)
class Job:
    """A user's job, as stored in `enhanced_video_jobs/{jobId}`."""

    job_id: str
    owner_uid: str
    status: Status
    progress: float = 0.0
    candidates: tuple[str, ...] = ()
    attempts: tuple[Attempt, ...] = ()
    request: JobRequest = field(default_factory=JobRequest)
    prompt: Mapping[str, Any] = field(default_factory=dict)
    selection: Mapping[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    request_fingerprint: str | None = None
    estimated_cost_usd: float | None = None
    estimated_credits: float | None = None
    actual_cost_usd: float | None = None
    actual_credits: float | None = None
    provider_task_id: str | None = None
    provider_status: str | None = None
    error: Mapping[str, Any] | None = None
    last_error: Mapping[str, Any] | None = None
    output: Mapping[str, Any] | None = None
    provider_output: Mapping[str, Any] | None = None
    finalizing: bool = False
    finalize: FinalizeState | None = None
    created_at: datetime | None = None
    deadline_at: datetime | None = None
    ended_at: datetime | None = None
    estimated_ready_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def current_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def provider(self) -> str | None:
        attempt = self.current_attempt
        return attempt.provider if attempt else None

    # what the prompt builder stored (`providers.prompts.PromptResult.to_dict`)
    @property
    def runway_prompt(self) -> str:
        return str(self.prompt.get("runwayPrompt") or "")

    @property
    def heygen_script(self) -> str:
        return str(self.prompt.get("heygenScript") or "")

    @property
    def camera_motion(self) -> str | None:
        return self.prompt.get("cameraMotion")

    @property
    def quality_score(self) -> int | None:
        return self.prompt.get("qualityScore")

    # outputs: the provider's own links, or the copies in the project's bucket
    @property
    def provider_video_urls(self) -> tuple[str, ...]:
        return tuple((self.provider_output or {}).get("videoUrls") or ())

    @property
    def stored_video_path(self) -> str | None:
        return (self.output or {}).get("videoPath")

    @property
    def stored_gif_path(self) -> str | None:
        return (self.output or {}).get("gifPath")

    @property
    def wants_gif(self) -> bool:
        return self.request.format == "gif"

    @property
    def output_in_storage(self) -> bool:
        return bool(self.output) and self.output.get("source") == "storage"


@dataclass(frozen=True)
class TaskRecord:
    """One provider task, as stored in its provider's task collection (`ProviderSpec.records`)."""

    task_id: str
    provider: str
    job_id: str
    attempt_id: str
    status: Status
    progress: float = 0.0
    model: str | None = None
    provider_status: str | None = None
    last_poll_number: int = 0
    poll_count: int = 0
    estimated_credits: float | None = None
    created_at: datetime | None = None
    last_checked_at: datetime | None = None
    output_urls: tuple[str, ...] = ()
    gif_url: str | None = None
    thumbnail_url: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    cost_credits: float | None = None
    cost_usd: float | None = None
    first_reading_s: float | None = None  # when a poll first saw a progress figure (since created)
    first_progress: float | None = None  # and the figure
    last_reading_s: float | None = None  # when a poll last saw one (status-check readings excluded)
    last_progress: float | None = None
    queued_until_s: float | None = None  # the last poll that saw the task queued (since created)
    updated_at: datetime | None = None

    @property
    def checked_at(self) -> datetime | None:
        """When the provider was last asked about it (its creation, if never)."""
        return self.last_checked_at or self.created_at


# ---------------------------------------------------------------------------------------------------
# The mapping


def _plain(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(value) if value is not None else None


_JOB_SCALARS = (
    "idempotency_key",
    "request_fingerprint",
    "estimated_cost_usd",
    "estimated_credits",
    "actual_cost_usd",
    "actual_credits",
    "provider_task_id",
    "provider_status",
    "created_at",
    "deadline_at",
    "ended_at",
    "estimated_ready_at",
)
_JOB_MAPS = ("prompt", "selection", "error", "last_error", "output", "provider_output")
_SCALAR_KEYS = tuple((name, _camel(name)) for name in _JOB_SCALARS)  # (field, document key)
_MAP_KEYS = tuple((name, _camel(name)) for name in _JOB_MAPS)


def job_from_doc(doc: Mapping[str, Any], job_id: str | None = None) -> Job:
    """A job from its document (or a projection of it; `job_id` for projections without `jobId`)."""
    finalize = doc.get("finalize")
    return Job(
        job_id=doc.get("jobId") or job_id or "",
        owner_uid=doc.get("ownerUid") or "",
        status=Status(doc.get("status") or Status.QUEUED),
        progress=float(doc.get("progress") or 0.0),
        candidates=tuple(doc.get("candidates") or ()),
        attempts=tuple(Attempt.from_doc(a) for a in doc.get("attempts") or ()),
        request=JobRequest.from_doc(doc.get("request") or {}),
        finalizing=bool(doc.get("finalizing")),
        finalize=FinalizeState.from_doc(finalize) if finalize else None,
        updated_at=doc.get("updatedAt"),
        **{name: doc.get(key) for name, key in _SCALAR_KEYS},
        **{name: _plain(doc.get(key)) for name, key in _MAP_KEYS},
    )


def job_to_doc(job: Job) -> dict[str, Any]:
    """The document of a job (without the store's stamps)."""
    current = job.current_attempt
    return {
        "jobId": job.job_id,
        "ownerUid": job.owner_uid,
        "status": str(job.status),
        "progress": job.progress,
        "candidates": list(job.candidates),
        "attempts": [a.to_doc() for a in job.attempts],
        "provider": current.provider if current else None,
        "attemptCount": len(job.attempts),
        "request": job.request.to_doc(),
        "finalizing": job.finalizing,
        "finalize": job.finalize.to_doc() if job.finalize else None,
        **{_camel(name): getattr(job, name) for name in _JOB_SCALARS},
        **{_camel(name): _plain(getattr(job, name)) for name in _JOB_MAPS},
    }


def task_from_doc(doc: Mapping[str, Any]) -> TaskRecord:
    values = {_TASK_FIELDS[key]: value for key, value in doc.items() if key in _TASK_FIELDS}
    return TaskRecord(
        **{
            **values,
            "status": Status(doc["status"]),
            "progress": float(doc.get("progress") or 0.0),
            "last_poll_number": int(doc.get("lastPollNumber") or 0),
            "poll_count": int(doc.get("pollCount") or 0),
            "output_urls": tuple(doc.get("outputUrls") or ()),
        }
    )


_TASK_FIELDS = {_camel(f.name): f.name for f in fields(TaskRecord)}  # document key -> field


def task_to_doc(task: TaskRecord) -> dict[str, Any]:
    doc = {_camel(k): v for k, v in asdict(task).items() if _camel(k) not in STAMPS}
    return {**doc, "status": str(task.status), "outputUrls": list(task.output_urls)}


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level fields of `after` that differ from `before` (what a write must send)."""
    return {key: value for key, value in after.items() if key not in STAMPS and before.get(key) != value}


def job_changes(before: Job, after: Job) -> dict[str, Any]:
    return changes(job_to_doc(before), job_to_doc(after))


def task_changes(before: TaskRecord, after: TaskRecord) -> dict[str, Any]:
    return changes(task_to_doc(before), task_to_doc(after))


# ---------------------------------------------------------------------------------------------------
# What the retention purge reads: few, flat fields (decoding whole attempts costs more than the
# emulator's own work); jobs with several attempts have theirs read in a second, batched get.

PURGE_FIELDS = (
    "status",
    "endedAt",
    "attemptCount",
    "provider",
    "providerTaskId",
    "output.videoPath",
    "output.gifPath",
    "finalize.attemptId",
)


@dataclass(frozen=True)
class ExpiredJob:
    """A terminal job past retention: its task records, and its stored objects (known or possible)."""

    job_id: str
    tasks: tuple[tuple[str, str], ...] | None  # (provider, task id); None: not read yet
    objects: tuple[str, ...]  # object paths named by the job's output
    stored: bool  # a finalize step ran: objects may exist under jobs/{jobId}/ even without output


def expired_from_doc(job_id: str, doc: Mapping[str, Any], only_unended: bool) -> ExpiredJob | None:
    """From the purge projection: None unless the job is terminal (and, with `only_unended`, has no
    `endedAt`). One attempt: its task is the job's `provider`/`providerTaskId`; more than one: `tasks`
    is None and the attempts are read (`attempt_tasks`)."""
    if doc.get("status") not in TERMINAL or (only_unended and doc.get("endedAt")):
        return None
    count = int(doc.get("attemptCount") or 0)
    tasks: tuple[tuple[str, str], ...] | None = ()
    if count > 1:
        tasks = None
    elif count == 1 and doc.get("provider") and doc.get("providerTaskId"):
        tasks = ((doc["provider"], doc["providerTaskId"]),)
    output = doc.get("output") or {}
    paths = tuple(p for p in (output.get("videoPath"), output.get("gifPath")) if p)
    return ExpiredJob(job_id, tasks, paths, stored=bool(doc.get("finalize")))


def attempt_tasks(doc: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """(provider, task id) of every attempt that created a task, from a job's `attempts` field."""
    attempts = doc.get("attempts") or ()
    return tuple((a["provider"], a["taskId"]) for a in attempts if a.get("taskId") and a.get("provider"))
