"""What each plan lets one user do, decided from their ledger (pure, except the per-instance limiter).

A user's plan is the `tier` custom claim of their Firebase ID token (none, or one not configured:
`free`); its limits are `Settings.tier_limits` (`config.TierLimits`, `TIER_LIMITS`). Two kinds of
refusal, both before anything is written or any provider is called:

    what the plan may never ask       quality, clip length, script length, one video's cost -> 403
    what the plan may not ask *now*   jobs per minute / hour / day, live jobs, USD per day    -> 429
                                                                                    + Retry-After

A user's ledger (`jobs/admission.py` keeps it in one document per user) holds an entry per job they
were admitted for today, plus any older job still live: when it was admitted, what it costs (the
estimate until the job ends, then its actual cost) and whether that cost is settled. Counts and
spend are read off the ledger, so a lost update can never leave a user locked out: a live job is
one whose record is not terminal, looked up on each admission.

Windows are fixed and UTC-aligned like the provider budget's (`providers/quota.py`): the minute,
hour and day that contain now.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import errors
from config import Settings, TierLimits
from jobs.records import Job, JobRequest
from logs import get_logger
from providers.base import Status, is_terminal
from providers.quota import bucket_of, window_end

log = get_logger("jobs.plans")

DEFAULT_TIER = "free"
# an admitted job whose record is not written yet (the admission commits first) counts as live
PENDING_GRACE = timedelta(seconds=60)
# a live job frees its slot when it ends; until then, ask again after this long
LIVE_RETRY_S = 30.0
_WINDOWS = (  # (limit, TierLimits field, window seconds, "videos ...")
    ("jobsPerMinute", "jobs_per_minute", 60, "a minute"),
    ("jobsPerHour", "jobs_per_hour", 3600, "an hour"),
    ("jobsPerDay", "jobs_per_day", 86400, "a day"),
)


def limits_for(settings: Settings, tier: str | None) -> tuple[str, TierLimits]:
    """The plan a caller is on and its limits (an unknown or missing tier is the free plan)."""
    if tier in settings.tier_limits:
        return tier, settings.tier_limits[tier]
    if tier not in (None, DEFAULT_TIER):
        log.warning("unknown plan; using the free plan", extra={"tier": str(tier)[:40]})
    return DEFAULT_TIER, settings.tier_limits[DEFAULT_TIER]


def _not_in_plan(plan: str, limit: str, message: str) -> errors.Forbidden:
    return errors.Forbidden(f"the {plan} plan {message}", code="not_in_plan", limit=limit, plan=plan)


def check_request(plan: str, limits: TierLimits, script: str, request: JobRequest) -> None:
    """Refuse (403 `not_in_plan`, naming the limit) what this plan may never ask for."""
    if request.quality not in limits.qualities:
        allowed = ", ".join(limits.qualities) or "none"
        raise _not_in_plan(plan, "qualities", f"offers {allowed} quality, not {request.quality}")
    if request.duration_s > limits.max_duration_s:
        message = f"makes clips of at most {limits.max_duration_s} s, not {request.duration_s} s"
        raise _not_in_plan(plan, "maxDurationS", message)
    if len(script) > limits.max_script_chars:
        message = f"takes scripts of at most {limits.max_script_chars} characters, not {len(script)}"
        raise _not_in_plan(plan, "maxScriptChars", message)


def check_cost(plan: str, limits: TierLimits, usd: float | None) -> None:
    """One video that alone costs more than the plan's daily spend can never be made (403)."""
    if usd is not None and usd > limits.usd_per_day:
        message = f"spends at most ${limits.usd_per_day:.2f} a day; this video would cost ${usd:.2f}"
        raise _not_in_plan(plan, "usdPerDay", message)


@dataclass(frozen=True)
class Entry:
    """One admitted job in a user's ledger."""

    at: datetime
    usd: float = 0.0
    settled: bool = False  # the job has ended and `usd` is what it cost

    def to_doc(self) -> dict[str, Any]:
        return {"at": self.at, "usd": round(self.usd, 4), "settled": self.settled}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Entry:
        return cls(at=doc["at"], usd=float(doc.get("usd") or 0.0), settled=bool(doc.get("settled")))


Ledger = Mapping[str, Entry]  # job id -> entry


def settle(entry: Entry, job: Job | None, now: datetime) -> Entry:
    """The entry once its job's state is known: an ended job's cost replaces the estimate.

    An ended job without an actual cost keeps its estimate if a provider ever took it (the render
    may be billed), and costs nothing if none did. A job not found is still being created within
    `PENDING_GRACE`, and after that was never created (it costs nothing).
    """
    if entry.settled:
        return entry
    if job is None:
        return entry if now - entry.at < PENDING_GRACE else replace(entry, usd=0.0, settled=True)
    if not is_terminal(job.status):
        return entry
    if job.actual_cost_usd is not None:
        return replace(entry, usd=job.actual_cost_usd, settled=True)
    taken = job.status is Status.COMPLETED or any(a.task_id for a in job.attempts)
    return replace(entry, usd=entry.usd if taken else 0.0, settled=True)


@dataclass(frozen=True)
class Refusal:
    limit: str
    message: str
    retry_after_s: float


def decide(plan: str, limits: TierLimits, ledger: Ledger, usd: float, now: datetime) -> Refusal | None:
    """None when the plan allows one more job costing `usd` now; else the limit that binds longest."""
    refusals = []
    for limit, field, seconds, per in _WINDOWS:
        allowed = getattr(limits, field)
        bucket = bucket_of(now, seconds)
        count = sum(1 for e in ledger.values() if bucket_of(e.at, seconds) == bucket)
        if count >= allowed:
            wait = (window_end(now, seconds) - now).total_seconds()
            refusals.append(Refusal(limit, f"the {plan} plan makes {allowed} videos {per}", wait))
    live = sum(1 for e in ledger.values() if not e.settled)
    if live >= limits.live_jobs:
        message = f"the {plan} plan makes {limits.live_jobs} videos at once; wait for one to finish"
        refusals.append(Refusal("liveJobs", message, LIVE_RETRY_S))
    today = bucket_of(now, 86400)
    spent = sum(e.usd for e in ledger.values() if bucket_of(e.at, 86400) == today)
    if spent + usd > limits.usd_per_day + 1e-9:
        wait = (window_end(now, 86400) - now).total_seconds()
        message = f"the {plan} plan spends ${limits.usd_per_day:.2f} a day; ${spent:.2f} is used"
        refusals.append(Refusal("usdPerDay", message, wait))
    return max(refusals, key=lambda r: r.retry_after_s, default=None)


def prune(ledger: Ledger, now: datetime) -> dict[str, Entry]:
    """What the ledger must keep: today's entries (the longest window) and any job still live."""
    today = bucket_of(now, 86400)
    return {j: e for j, e in ledger.items() if not e.settled or bucket_of(e.at, 86400) == today}


class CallLimiter:
    """Status checks and cancels per user and minute, counted in this instance (thread-safe).

    A per-instance count costs no Firestore write per call; across N instances a user gets at most
    N times the limit, and the provider is protected separately (one refresh per job and interval,
    `jobs/guards.RefreshGate`).
    """

    MAX_USERS = 10_000  # bounded memory: the table is emptied when a new minute starts or it is full

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.minute = -1
        self.counts: dict[str, int] = {}

    def take(self, uid: str, per_minute: int) -> float | None:
        """None when the call may go on; else the seconds until the next minute."""
        now = self.clock()
        with self.lock:
            minute = int(now // 60)
            if minute != self.minute or len(self.counts) >= self.MAX_USERS:
                self.minute, self.counts = minute, {}
            count = self.counts.get(uid, 0)
            if count >= per_minute:
                return (minute + 1) * 60 - now
            self.counts[uid] = count + 1
            return None


def throttle(limiter: CallLimiter, settings: Settings, uid: str | None, tier: str | None) -> None:
    """429 `user_limit` when a user calls status or cancel more often than their plan allows."""
    if uid is None:  # operators are not limited
        return
    plan, limits = limits_for(settings, tier)
    wait = limiter.take(uid, limits.status_checks_per_minute)
    if wait is not None:
        message = f"the {plan} plan allows {limits.status_checks_per_minute} status checks a minute"
        raise errors.OverLimit(message, code="user_limit", retry_after=wait, limit="statusChecksPerMinute")
