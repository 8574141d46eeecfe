"""`provider_health`: how each provider is doing, for operators and alerting.

Per provider, in one answer::

    health    Provider.health(): reachable, latency, credits or wallet, model limits (live call)
    circuit   HealthStore.health: breaker state now and this hour's call counters
    quota     QuotaGuard.usage: the project's own request budget, per window
    spend     QuotaGuard.usage: estimated spend sent today (UTC), the provider's cap and the total's
    jobs      over the last `windowHours`, from the job records (statistics below, all pure)

Job statistics use the jobs that ended in the window (terminal, `updatedAt` and `endedAt` in it;
at most `jobs.queries.MAX_WINDOW_JOBS`, the oldest first, with `truncated` saying when more
exist). A job counts for the provider of its last attempt::

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
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from jobs.guards import HealthStore, QuotaGuard
from jobs.records import AttemptStatus, Job
from jobs.store import JobStore
from providers.base import TERMINAL_STATUSES, Provider, ProviderHealth, Status

_FAILED = (Status.FAILED, Status.TIMED_OUT)
_ATTEMPT_FAILED = (AttemptStatus.FAILED, AttemptStatus.UNKNOWN)


def provider_health(
    store: JobStore,
    providers: Mapping[str, Provider],
    health: HealthStore,
    quota: QuotaGuard,
    window_hours: int,
) -> dict[str, Any]:
    """The monitoring view of every configured provider."""
    now = store.clock()
    since = now - timedelta(hours=window_hours)
    jobs, truncated = store.jobs_ended_since(since)
    names = sorted(providers)
    live = _live_health(providers[name] for name in names)
    return {
        "windowHours": window_hours,
        "since": since,
        "jobsConsidered": len(jobs),
        "truncated": truncated,
        "providers": {
            name: {"health": live_health, **health.health(name), **_budget(quota.usage(name))}
            | {"jobs": provider_stats(jobs, name)}
            for name, live_health in zip(names, live, strict=True)
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
    if job.created_at is None or job.ended_at is None:
        return None
    return (job.ended_at - job.created_at).total_seconds()


def provider_stats(jobs: Iterable[Job], provider: str) -> dict[str, Any]:
    """Success rates, generation times and cost of `provider` over `jobs`."""
    jobs = list(jobs)
    mine = [j for j in jobs if j.provider == provider and j.status in TERMINAL_STATUSES]
    by_status = Counter(str(j.status) for j in mine)
    completed = [j for j in mine if j.status is Status.COMPLETED]
    failed = sum(by_status[str(s)] for s in _FAILED)
    seconds = [s for s in map(generation_seconds, completed) if s is not None]
    costs = [float(j.actual_cost_usd) for j in completed if j.actual_cost_usd is not None]
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


def _budget(usage: dict[str, Any]) -> dict[str, Any]:
    spend = {k: usage[k] for k in ("spendUsdToday", "spendCapUsd", "totalSpendUsdToday", "totalSpendCapUsd")}
    return {"quota": usage["windows"], "spend": spend}
