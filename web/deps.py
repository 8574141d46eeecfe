"""The process's collaborators, built lazily once and cached (nothing heavy at import time).

Entry points ask `get()` for a `Deps`; tests and the local stack build the same object from an
environment (emulators, simulators, a loopback token issuer) and nothing else changes.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from google.cloud import firestore

from config import Settings, load_settings
from jobs.access import STALE_AFTER
from jobs.admission import UserAdmission
from jobs.guards import HealthStore, QuotaGuard, RefreshGate
from jobs.plans import CallLimiter
from jobs.runner import Runner
from jobs.store import JobStore
from logs import configure, get_logger, redact_values
from providers.base import Provider, ProviderError
from providers.circuit import Outcome
from providers.registry import build_providers
from tasks.poll import FirstPoll, Poller
from tasks.queue import CloudTasksQueue, TaskQueue
from tasks.storage import storage_for
from web.auth import Verifier

if TYPE_CHECKING:  # imported when first used: a status check never loads the prompt composer
    from jobs.generate import Intake
    from tasks.cleanup import Cleanup

log = get_logger("web.deps")


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
    users: UserAdmission
    refresh_gate: RefreshGate
    calls: CallLimiter = field(default_factory=CallLimiter)

    @property
    def intake(self) -> Intake:
        """What `generate_video` works with."""
        from jobs.generate import Intake

        return Intake(
            self.settings, self.store, self.providers, self.health, self.quota, self.runner, self.users
        )


def build(settings: Settings, *, queue: TaskQueue | None = None) -> Deps:
    configure()
    redact_values(settings.secret_values())  # no configured key or secret is ever logged
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
    runner = Runner(
        store,
        providers,
        FirstPoll(queue),
        admit=quota.try_acquire,
        observe=lambda provider, error, latency_ms: _observe(health, provider, error, latency_ms),
    )
    poller = Poller(store, providers, queue, runner)
    users = UserAdmission(store, settings)
    gate = RefreshGate(client, settings, STALE_AFTER.total_seconds())
    return Deps(settings, store, providers, queue, verifier, health, quota, runner, poller, users, gate)


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


def cleanup_for(d: Deps) -> Cleanup:
    """The scheduled cleanup over `d`."""
    from tasks.cleanup import Cleanup

    storage = storage_for(d.settings)
    return Cleanup(
        d.store, d.providers, d.poller, d.runner, d.queue, storage, d.settings, clock=d.store.clock
    )
