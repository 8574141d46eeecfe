"""The process's collaborators, each built the first time it is asked for and then kept.

Entry points ask `get()` for a `Deps`; tests and the local stack build the same object from an
environment (emulators, simulators, a loopback token issuer) and nothing else changes.

A collaborator is built (and its modules imported) only when a request first needs it, from the
collaborators it needs in turn, so a function pays at its cold start for what it uses and no more:
a status check of a finished job builds the verifier, the store and the per-user limiter, and never
a provider, the queue or the task workers::

    settings -> verifier
             -> store -> users, health, quota, refresh_gate
             -> providers, queue
             -> runner (store, providers, queue, quota, health) -> poller

A collaborator given to `Deps(...)` or `build(..., queue=...)` is used as it is. `dataclasses.replace`
(tests swap one collaborator) first builds every other one over the original's, so the copy is
wired as a container built all at once would be.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from config import Settings, load_settings
from logs import configure, get_logger, redact_values

if TYPE_CHECKING:
    from jobs.admission import UserAdmission
    from jobs.generate import Intake
    from jobs.guards import HealthStore, QuotaGuard, RefreshGate
    from jobs.plans import CallLimiter
    from jobs.runner import Runner
    from jobs.store import JobStore
    from jobs.views import Links
    from providers.base import Provider, ProviderError
    from tasks.cleanup import Cleanup
    from tasks.poll import Poller
    from tasks.queue import TaskQueue
    from web.auth import Verifier

log = get_logger("web.deps")


class _Built:
    """A `Deps` field built on first use by `Deps._build_<name>()`, once (under the container's lock)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, deps: Deps | None, owner: type) -> Any:
        if deps is None:
            return None  # the dataclass default: not given, so built when first asked for
        value = deps.__dict__.get(self.name)
        if value is None:
            with deps._lock:
                value = deps.__dict__.get(self.name)
                if value is None:
                    value = deps.__dict__[self.name] = getattr(deps, f"_build_{self.name}")()
        return value

    def __set__(self, deps: Deps, value: Any) -> None:
        deps.__dict__[self.name] = value


@dataclass(eq=False, repr=False)
class Deps:
    settings: Settings
    store: JobStore = _Built()
    providers: dict[str, Provider] = _Built()
    queue: TaskQueue = _Built()
    verifier: Verifier = _Built()
    health: HealthStore = _Built()
    quota: QuotaGuard = _Built()
    runner: Runner = _Built()
    poller: Poller = _Built()
    users: UserAdmission = _Built()
    refresh_gate: RefreshGate = _Built()
    calls: CallLimiter = _Built()
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False)

    def built(self) -> set[str]:
        """The names of the collaborators built (or given) so far."""
        names = (f.name for f in fields(self) if f.name not in ("settings", "_lock"))
        return {name for name in names if self.__dict__.get(name) is not None}

    @property
    def intake(self) -> Intake:
        """What `generate_video` works with."""
        from jobs.generate import Intake

        return Intake(
            self.settings, self.store, self.providers, self.health, self.quota, self.runner, self.users
        )

    def links(self, now: datetime) -> Links | None:
        """Download links for the job views (None without a bucket); storage loads at the first link."""
        if self.settings.storage_bucket is None:
            return None

        @functools.cache
        def signer() -> Links | None:  # one storage client and signer per request, at its first link
            from tasks.finalize import links_for
            from tasks.storage import storage_for

            return links_for(storage_for(self.settings), now)

        def link(path: str) -> Any:
            sign = signer()
            return sign(path) if sign is not None else None

        return link

    def _build_store(self) -> JobStore:
        from google.cloud import firestore

        from jobs.store import JobStore

        return JobStore(firestore.Client(project=self.settings.project_id), self.settings)

    def _build_providers(self) -> dict[str, Provider]:
        from providers.registry import build_providers

        return build_providers(self.settings)

    def _build_queue(self) -> TaskQueue:
        from tasks.queue import CloudTasksQueue

        return CloudTasksQueue(self.settings)

    def _build_verifier(self) -> Verifier:
        from web.auth import Verifier

        s = self.settings
        return Verifier(
            firebase_project=s.firebase_project,
            firebase_certs_url=s.firebase_certs_url,
            google_certs_url=s.google_certs_url,
        )

    def _build_health(self) -> HealthStore:
        from jobs.guards import HealthStore

        return HealthStore(self.store.client, self.settings)

    def _build_quota(self) -> QuotaGuard:
        from jobs.guards import QuotaGuard

        return QuotaGuard(self.store.client, self.settings)

    def _build_runner(self) -> Runner:
        from jobs.runner import Runner
        from tasks.poll import FirstPoll

        health = self.health
        return Runner(
            self.store,
            self.providers,
            FirstPoll(self.queue),
            admit=self.quota.try_acquire,
            observe=lambda provider, error, latency_ms: _observe(health, provider, error, latency_ms),
        )

    def _build_poller(self) -> Poller:
        from tasks.poll import Poller

        return Poller(self.store, self.providers, self.queue, self.runner)

    def _build_users(self) -> UserAdmission:
        from jobs.admission import UserAdmission

        return UserAdmission(self.store, self.settings)

    def _build_refresh_gate(self) -> RefreshGate:
        from jobs.access import STALE_AFTER
        from jobs.guards import RefreshGate

        return RefreshGate(self.store.client, self.settings, STALE_AFTER.total_seconds())

    def _build_calls(self) -> CallLimiter:
        from jobs.plans import CallLimiter

        return CallLimiter()


def build(settings: Settings, *, queue: TaskQueue | None = None) -> Deps:
    """The collaborators over `settings` (each built when first used); `queue` replaces Cloud Tasks."""
    configure()
    redact_values(settings.secret_values())  # no configured key or secret is ever logged
    return Deps(settings, queue=queue)


def _observe(health: HealthStore, provider: str, error: ProviderError | None, latency_ms: float) -> None:
    """Feed the circuit breaker; a failure to record health never fails the request itself."""
    from providers.circuit import Outcome

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
    from tasks.storage import storage_for

    storage = storage_for(d.settings)
    return Cleanup(
        d.store, d.providers, d.poller, d.runner, d.queue, storage, d.settings, clock=d.store.clock
    )
