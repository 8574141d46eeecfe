"""The job life cycle as pure data and decisions (no I/O; `jobs/store.py` does the writing).

A *job* is what the user asked for; an *attempt* is one try at one provider; a *task record* is
what that provider's task last looked like. Statuses (`providers.base.Status`)::

    queued ----> processing ----> completed
      |              |-----------> failed
      |              |-----------> cancelled
      `--------------+-----------> timed_out        (terminal states are final)

Rules every write obeys, decided here:

- a terminal status never changes; `processing -> queued` is a backward move and is refused;
- progress never decreases (a lower reading is stale; a status advance keeps the higher progress);
- a poll numbered at or below the last applied one is stale (duplicate or reordered delivery);
- a failed attempt whose failure another provider could fix starts the next untried candidate,
  and the job stays `queued` meanwhile; otherwise the job fails.

Attempt statuses: `submitting` (create about to be sent) -> `active` (task id known) ->
`succeeded | failed | cancelled`; or `submitting -> unknown` when the create's outcome is unknown
(never re-sent to the same provider).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from providers.base import Status, is_terminal

_RANK = {Status.QUEUED: 0, Status.PROCESSING: 1}


class AttemptStatus(enum.StrEnum):
    SUBMITTING = "submitting"
    ACTIVE = "active"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


OPEN_ATTEMPT_STATUSES = frozenset({AttemptStatus.SUBMITTING, AttemptStatus.ACTIVE})


class Verdict(enum.StrEnum):
    APPLY = "apply"
    NOOP = "noop"  # nothing new (same status and progress)
    STALE = "stale"  # older than what is recorded (duplicate or reordered delivery)
    FINAL = "final"  # the record is already terminal
    BACKWARD = "backward"  # the move would go back (processing -> queued)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    status: Status
    progress: float

    @property
    def changes(self) -> bool:
        return self.verdict is Verdict.APPLY


def can_transition(old: Status, new: Status) -> bool:
    """True when `old -> new` is allowed (staying in a non-terminal status counts as allowed)."""
    if is_terminal(old):
        return False
    if is_terminal(new):
        return True
    return _RANK[new] >= _RANK[old]


def decide(old: Status, old_progress: float, new: Status, new_progress: float) -> Decision:
    """What applying a reading (`new`, `new_progress`) to a record (`old`, `old_progress`) does."""
    if is_terminal(old):
        return Decision(Verdict.FINAL, old, old_progress)
    if not can_transition(old, new):
        return Decision(Verdict.BACKWARD, old, old_progress)
    progress = 100.0 if new is Status.COMPLETED else clamp_progress(new_progress)
    if new == old:
        if progress < old_progress:
            return Decision(Verdict.STALE, old, old_progress)
        if progress == old_progress:
            return Decision(Verdict.NOOP, old, old_progress)
    return Decision(Verdict.APPLY, new, max(progress, old_progress))


def clamp_progress(value: float) -> float:
    return min(100.0, max(0.0, float(value)))


def is_stale_poll(poll_number: int | None, last_poll_number: int) -> bool:
    """A numbered poll at or below the last applied one is a duplicate or arrived out of order."""
    return poll_number is not None and poll_number <= last_poll_number


# ---------------------------------------------------------------------------------------------------
# Records


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
        return {
            "attemptId": self.attempt_id,
            "number": self.number,
            "provider": self.provider,
            "status": str(self.status),
            "taskId": self.task_id,
            "error": dict(self.error) if self.error is not None else None,
            "costUsd": self.cost_usd,
            "startedAt": self.started_at,
        }


@dataclass(frozen=True)
class Job:
    """A user's job as stored in `enhanced_video_jobs/{jobId}` (the fields decisions need)."""

    job_id: str
    owner_uid: str
    status: Status
    progress: float
    candidates: tuple[str, ...]
    attempts: tuple[Attempt, ...] = ()
    deadline_at: datetime | None = None
    doc: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def current_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def provider(self) -> str | None:
        attempt = self.current_attempt
        return attempt.provider if attempt else None

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Job:
        return cls(
            job_id=doc["jobId"],
            owner_uid=doc["ownerUid"],
            status=Status(doc["status"]),
            progress=float(doc.get("progress", 0.0)),
            candidates=tuple(doc.get("candidates", ())),
            attempts=tuple(Attempt.from_doc(a) for a in doc.get("attempts", ())),
            deadline_at=doc.get("deadlineAt"),
            doc=dict(doc),
        )


@dataclass(frozen=True)
class TaskRecord:
    """One provider task, as stored in `runwayml_jobs/{taskId}` or `heygen_jobs/{videoId}`."""

    task_id: str
    provider: str
    job_id: str
    attempt_id: str
    status: Status
    progress: float
    last_poll_number: int = 0
    poll_count: int = 0
    doc: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> TaskRecord:
        return cls(
            task_id=doc["taskId"],
            provider=doc["provider"],
            job_id=doc["jobId"],
            attempt_id=doc["attemptId"],
            status=Status(doc["status"]),
            progress=float(doc.get("progress", 0.0)),
            last_poll_number=int(doc.get("lastPollNumber", 0)),
            poll_count=int(doc.get("pollCount", 0)),
            doc=dict(doc),
        )


# ---------------------------------------------------------------------------------------------------
# Attempts and fallback


def next_candidate(candidates: Sequence[str], attempts: Sequence[Attempt]) -> str | None:
    """The first ranked provider not tried yet by this job, or None."""
    tried = {a.provider for a in attempts}
    return next((p for p in candidates if p not in tried), None)


def replace_attempt(attempts: Sequence[Attempt], updated: Attempt) -> tuple[Attempt, ...]:
    return tuple(updated if a.attempt_id == updated.attempt_id else a for a in attempts)


def attempt_id_for(job_id: str, number: int) -> str:
    """Deterministic: the same job and attempt number always give the same id (idempotency)."""
    return f"{job_id}-a{number}"


def total_cost(attempts: Sequence[Attempt]) -> float | None:
    costs = [a.cost_usd for a in attempts if a.cost_usd is not None]
    return round(sum(costs), 6) if costs else None
