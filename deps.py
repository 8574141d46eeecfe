"""The process's collaborators, built lazily once and cached (nothing heavy at import time).

Entry points ask `get()` for a `Deps`; tests and the local stack build the same object from an
environment (emulators, simulators, a loopback token issuer) and nothing else changes. `reset()`
drops the cache after the environment changed.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from google.cloud import firestore

from auth import Verifier
from config import Settings, load_settings
from jobs.guards import HealthStore, QuotaGuard
from jobs.service import Runner
from jobs.store import JobStore
from logs import get_logger
from providers import build_providers
from providers.base import Provider, ProviderError
from providers.circuit import Outcome
from tasks.poll import Poller
from tasks.queue import CloudTasksQueue, TaskQueue

log = get_logger("deps")


@dataclass
class Deps:
    settings: Settings
    store: JobStore
    providers: dict[str, Provider]
    queue: TaskQueue
    verifier: Verifier
    health: HealthStore
    quota: QuotaGuard
    runner: Runner
    poller: Poller


def build(settings: Settings, *, queue: TaskQueue | None = None) -> Deps:
    client = firestore.Client(project=settings.project_id)
    store = JobStore(client, settings)
    providers = build_providers(settings)
    queue = queue if queue is not None else CloudTasksQueue(settings)
    health = HealthStore(client, settings)
    quota = QuotaGuard(client, settings)
    verifier = Verifier(
        firebase_project=settings.firebase_project,
        firebase_certs_url=settings.firebase_certs_url,
        google_certs_url=settings.google_certs_url,
    )
    poller_box: list[Poller] = []
    runner = Runner(
        store,
        providers,
        lambda job_id, provider, task_id: poller_box[0].schedule_first(job_id, provider, task_id),
        admit=lambda provider: _admit(quota, provider),
        observe=lambda provider, error, latency_ms: _observe(health, provider, error, latency_ms),
    )
    poller = Poller(store, providers, queue, runner)
    poller_box.append(poller)
    return Deps(settings, store, providers, queue, verifier, health, quota, runner, poller)


def _admit(quota: QuotaGuard, provider: str) -> tuple[bool, float | None]:
    decision = quota.try_acquire(provider)
    return decision.allowed, decision.retry_after_s


def _observe(health: HealthStore, provider: str, error: ProviderError | None, latency_ms: float) -> None:
    """Feed the circuit breaker; a failure to record health never fails the request itself."""
    try:
        if error is None:
            health.record(provider, Outcome.SUCCESS, latency_ms)
        else:
            health.record_error(provider, error, latency_ms)
    except Exception:
        log.exception("could not record provider health", extra={"provider": provider})


_override: list[Deps] = []


@functools.lru_cache(maxsize=1)
def _from_environment() -> Deps:
    return build(load_settings(os.environ))


def get() -> Deps:
    """The process's collaborators: built once from the environment, unless `use` set others."""
    return _override[-1] if _override else _from_environment()


def use(replacement: Deps | None) -> None:
    """Serve `replacement` from `get()` (tests, the local stack); None goes back to the environment."""
    _override.clear()
    if replacement is not None:
        _override.append(replacement)


def reset() -> None:
    _from_environment.cache_clear()
