"""`provider_health`: how each provider is doing, for operators and alerting.

Per provider, in one answer::

    health    Provider.health(): reachable, latency, credits or wallet, model limits (live call)
    circuit   HealthStore.health: breaker state now and this hour's call counters
    quota     QuotaGuard.usage: the project's own request budget, per window
    jobs      over the last `windowHours`, from the job records (statistics below, all pure)

Job statistics use the jobs that ended in the window (terminal, `updatedAt` and `endedAt` in it;
at most MAX_WINDOW_JOBS, the oldest first, with `truncated` saying when more exist). A job counts for
the provider of its last attempt::

    successRate         completed / (completed + failed + timed_out); a user's cancel is no failure
    attemptSuccessRate  attempts at the provider that succeeded / those that ended otherwise than
                        cancelled -- a failure hidden by a fallback still counts here
    avg/p95 seconds     createdAt -> endedAt of completed jobs (p95 by nearest rank)
    avgCostUsd          actualCostUsd of completed jobs (all attempts of the job)

Undefined values (no jobs) are null, never 0.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from google.cloud.firestore_v1.base_query import FieldFilter

from jobs.model import AttemptStatus, Job
from jobs.store import JobStore
from providers.base import TERMINAL_STATUSES, Provider, ProviderHealth, Status

if TYPE_CHECKING:
    from deps import Deps

MAX_WINDOW_JOBS = 5000
_FIELDS = ["jobId", "ownerUid", "status", "progress", "candidates", "attempts", "deadlineAt"]
_FIELDS += ["createdAt", "endedAt", "updatedAt", "actualCostUsd"]
_FAILED = (Status.FAILED, Status.TIMED_OUT)
_ATTEMPT_FAILED = (AttemptStatus.FAILED, AttemptStatus.UNKNOWN)


def provider_health(deps: Deps, window_hours: int) -> dict[str, Any]:
    """The monitoring view of every configured provider."""
    now = deps.store.clock()
    since = now - timedelta(hours=window_hours)
    jobs, truncated = jobs_in_window(deps.store, since)
    names = sorted(deps.providers)
    live = _live_health(deps.providers[name] for name in names)
    return {
        "windowHours": window_hours,
        "since": since,
        "jobsConsidered": len(jobs),
        "truncated": truncated,
        "providers": {
            name: {
                "health": health,
                **deps.health.health(name),
                "quota": deps.quota.usage(name)["windows"],
                "jobs": provider_stats(jobs, name),
            }
            for name, health in zip(names, live, strict=True)
        },
    }


def _live_health(providers: Iterable[Provider]) -> list[dict[str, Any]]:
    """`Provider.health()` of each, side by side (each call is a round trip to the provider)."""
    providers = list(providers)
    with ThreadPoolExecutor(max_workers=max(1, len(providers))) as pool:
        return [health_view(h) for h in pool.map(lambda p: p.health(), providers)]


def health_view(health: ProviderHealth) -> dict[str, Any]:
    """`ProviderHealth` as the wire spells it (camelCase; model names kept as they are)."""
    return {
        "reachable": health.reachable,
        "latencyMs": health.latency_ms,
        "creditBalance": health.credit_balance,
        "balanceUsd": health.balance_usd,
        "limits": {
            model: {"maxConcurrent": m.max_concurrent, "maxDaily": m.max_daily, "usedToday": m.used_today}
            for model, m in health.limits.items()
        },
        "error": health.error,
    }


def jobs_in_window(store: JobStore, since: datetime) -> tuple[list[Job], bool]:
    """Jobs that ended at or after `since` (only the fields the statistics need)."""
    query = store.client.collection(store.settings.jobs_collection)
    query = query.where(filter=FieldFilter("status", "in", [str(s) for s in TERMINAL_STATUSES]))
    query = query.where(filter=FieldFilter("updatedAt", ">=", since)).order_by("updatedAt")
    snaps = list(query.select(_FIELDS).limit(MAX_WINDOW_JOBS + 1).stream())
    jobs = [Job.from_doc(s.to_dict()) for s in snaps[:MAX_WINDOW_JOBS]]
    ended = [j for j in jobs if j.doc.get("endedAt") is None or j.doc["endedAt"] >= since]
    return ended, len(snaps) > MAX_WINDOW_JOBS


# -- statistics (pure) ----------------------------------------------------------------------------


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (`q` in 0-100): an observed value, never an interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def generation_seconds(job: Job) -> float | None:
    created, ended = job.doc.get("createdAt"), job.doc.get("endedAt")
    if created is None or ended is None:
        return None
    return (ended - created).total_seconds()


def provider_stats(jobs: Iterable[Job], provider: str) -> dict[str, Any]:
    """Success rates, generation times and cost of `provider` over `jobs`."""
    jobs = list(jobs)
    mine = [j for j in jobs if j.provider == provider and j.status in TERMINAL_STATUSES]
    by_status = Counter(str(j.status) for j in mine)
    completed = [j for j in mine if j.status is Status.COMPLETED]
    failed = sum(by_status[str(s)] for s in _FAILED)
    seconds = [s for s in map(generation_seconds, completed) if s is not None]
    costs = [float(c) for c in (j.doc.get("actualCostUsd") for j in completed) if c is not None]
    attempts = [a for j in jobs for a in j.attempts if a.provider == provider]
    succeeded = sum(1 for a in attempts if a.status is AttemptStatus.SUCCEEDED)
    attempt_failures = sum(1 for a in attempts if a.status in _ATTEMPT_FAILED)
    return {
        "jobsEnded": len(mine),
        "byStatus": dict(by_status),
        "successRate": ratio(len(completed), len(completed) + failed),
        "attemptSuccessRate": ratio(succeeded, succeeded + attempt_failures),
        "attemptFailures": attempt_failures,
        "avgGenerationSeconds": mean(seconds),
        "p95GenerationSeconds": percentile(seconds, 95),
        "avgCostUsd": mean(costs),
    }
