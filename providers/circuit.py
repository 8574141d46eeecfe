"""A circuit breaker per provider, as pure functions over stored state (time is passed in).

States and moves (N = `CircuitPolicy.failure_threshold`, default 5; cool-down default 60 s)::

              N consecutive counting failures
    closed ------------------------------------> open
      ^                                            |
      |  success                                   | cool-down over (`effective_state`)
      |                                            v
      `---------------------------------------- half_open
                   a counting failure: back to open for another cool-down

Only failures that another provider could fix *count* (`Outcome.counts`): an outage (5xx, connect,
malformed body), a timeout or unknown create outcome, a rate limit, exhausted credits, a task the
provider failed on its side. A content rejection, bad input, an authentication problem or an unknown
id says nothing about the provider's health: such outcomes are neutral, they neither count nor break
a run of counting failures. While open (before the cool-down ends) outcomes of calls already under
way change nothing. A success slower than `slow_call_ms` (off by default) counts as a timeout.

`HealthCounters` are the monitoring side: successes, failures by kind, the last error code and the
average latency over the current hour (they start again when the hour changes).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from providers import base


class Phase(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Outcome(enum.StrEnum):
    """What one provider call came to."""

    SUCCESS = "success"
    UNAVAILABLE = "unavailable"  # 5xx, connection failure, malformed body
    TIMEOUT = "timeout"  # read timeout, create with unknown outcome
    RATE_LIMITED = "rate_limited"
    NO_CREDITS = "no_credits"
    TASK_FAILED = "task_failed"  # the provider failed the task on its side (fallback allowed)
    CONTENT_REJECTED = "content_rejected"
    INVALID_REQUEST = "invalid_request"
    AUTH_FAILED = "auth_failed"
    NOT_FOUND = "not_found"
    OTHER = "other"

    @property
    def counts(self) -> bool:
        """True for the failures that count towards opening the circuit."""
        return self in COUNTING_OUTCOMES


COUNTING_OUTCOMES = frozenset(
    {Outcome.UNAVAILABLE, Outcome.TIMEOUT, Outcome.RATE_LIMITED, Outcome.NO_CREDITS, Outcome.TASK_FAILED}
)

_ERROR_OUTCOMES: tuple[tuple[type[base.ProviderError], Outcome], ...] = (
    (base.ProviderUnavailable, Outcome.UNAVAILABLE),
    (base.RateLimited, Outcome.RATE_LIMITED),
    (base.InsufficientCredits, Outcome.NO_CREDITS),
    (base.OutcomeUnknown, Outcome.TIMEOUT),
    (base.ContentRejected, Outcome.CONTENT_REJECTED),
    (base.InvalidRequest, Outcome.INVALID_REQUEST),
    (base.AuthenticationFailed, Outcome.AUTH_FAILED),
    (base.NotFound, Outcome.NOT_FOUND),
)


def outcome_for_error(exc: base.ProviderError) -> Outcome:
    """The outcome a provider error stands for (`RequestInProgress` and the like: `OTHER`)."""
    return next((outcome for kind, outcome in _ERROR_OUTCOMES if isinstance(exc, kind)), Outcome.OTHER)


@dataclass(frozen=True)
class CircuitPolicy:
    failure_threshold: int = 5
    cooldown_s: float = 60.0
    slow_call_ms: float | None = None

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.cooldown_s <= 0:
            raise ValueError("failure_threshold must be >= 1 and cooldown_s > 0")


@dataclass(frozen=True)
class CircuitState:
    state: Phase = Phase.CLOSED
    consecutive_failures: int = 0
    opened_until: datetime | None = None
    changed_at: datetime | None = None

    def to_doc(self) -> dict[str, Any]:
        return {
            "state": str(self.state),
            "consecutiveFailures": self.consecutive_failures,
            "openedUntil": self.opened_until,
            "changedAt": self.changed_at,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any] | None) -> CircuitState:
        if not doc:
            return cls()
        return cls(
            state=Phase(doc.get("state", Phase.CLOSED)),
            consecutive_failures=int(doc.get("consecutiveFailures", 0)),
            opened_until=doc.get("openedUntil"),
            changed_at=doc.get("changedAt"),
        )


CLOSED = CircuitState()
DEFAULT_POLICY = CircuitPolicy()


def effective_state(state: CircuitState, now: datetime) -> CircuitState:
    """The state as of `now`: an open circuit whose cool-down is over is half-open."""
    if state.state is Phase.OPEN and (state.opened_until is None or now >= state.opened_until):
        return replace(state, state=Phase.HALF_OPEN, changed_at=state.opened_until or now)
    return state


def record_outcome(
    state: CircuitState,
    outcome: Outcome,
    now: datetime,
    policy: CircuitPolicy = DEFAULT_POLICY,
    latency_ms: float | None = None,
) -> CircuitState:
    """The circuit after one call's outcome."""
    current = effective_state(state, now)
    outcome = _judge(Outcome(outcome), latency_ms, policy)
    if current.state is Phase.OPEN or not (outcome is Outcome.SUCCESS or outcome.counts):
        return current
    if outcome is Outcome.SUCCESS:
        if current.state is Phase.CLOSED:
            return replace(current, consecutive_failures=0)
        return CircuitState(changed_at=now)
    failures = current.consecutive_failures + 1
    if current.state is Phase.HALF_OPEN or failures >= policy.failure_threshold:
        return _open(failures, now, policy)
    return replace(current, consecutive_failures=failures)


def _judge(outcome: Outcome, latency_ms: float | None, policy: CircuitPolicy) -> Outcome:
    slow = policy.slow_call_ms is not None and latency_ms is not None and latency_ms > policy.slow_call_ms
    return Outcome.TIMEOUT if outcome is Outcome.SUCCESS and slow else outcome


def _open(failures: int, now: datetime, policy: CircuitPolicy) -> CircuitState:
    until = now + timedelta(seconds=policy.cooldown_s)
    return CircuitState(Phase.OPEN, failures, opened_until=until, changed_at=now)


# ---------------------------------------------------------------------------------------------------
# Monitoring counters


@dataclass(frozen=True)
class HealthCounters:
    """Outcomes of the current hour, for dashboards; `hour` is the UTC hour they belong to."""

    hour: datetime | None = None
    successes: int = 0
    failures: Mapping[str, int] = field(default_factory=dict)
    last_error_code: str | None = None
    latency_ms_total: float = 0.0
    latency_count: int = 0

    @property
    def avg_latency_ms(self) -> float | None:
        return round(self.latency_ms_total / self.latency_count, 1) if self.latency_count else None

    def to_doc(self) -> dict[str, Any]:
        return {
            "hour": self.hour,
            "successes": self.successes,
            "failures": dict(self.failures),
            "lastErrorCode": self.last_error_code,
            "latencyMsTotal": self.latency_ms_total,
            "latencyCount": self.latency_count,
            "avgLatencyMs": self.avg_latency_ms,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any] | None) -> HealthCounters:
        doc = doc or {}
        return cls(
            hour=doc.get("hour"),
            successes=int(doc.get("successes", 0)),
            failures=dict(doc.get("failures") or {}),
            last_error_code=doc.get("lastErrorCode"),
            latency_ms_total=float(doc.get("latencyMsTotal", 0.0)),
            latency_count=int(doc.get("latencyCount", 0)),
        )


def count_outcome(
    counters: HealthCounters,
    outcome: Outcome,
    now: datetime,
    latency_ms: float | None = None,
    error_code: str | None = None,
) -> HealthCounters:
    """Counters after one outcome; a new hour starts from zero."""
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if counters.hour != hour:
        counters = HealthCounters(hour=hour, last_error_code=counters.last_error_code)
    if outcome is Outcome.SUCCESS:
        counters = replace(counters, successes=counters.successes + 1)
    else:
        failures = {**counters.failures, str(outcome): counters.failures.get(str(outcome), 0) + 1}
        counters = replace(counters, failures=failures, last_error_code=error_code or str(outcome))
    if latency_ms is None:
        return counters
    return replace(
        counters,
        latency_ms_total=counters.latency_ms_total + latency_ms,
        latency_count=counters.latency_count + 1,
    )
