"""The project's request budget and provider health in Firestore, shared by every function instance.

The decisions are pure (`providers.quota`, `providers.circuit`); this module reads, asks and writes,
each change in one transaction with no side effect inside (a transaction may run several times).

Quota counters (`QuotaGuard`), collection `settings.collection("quota")` (default `video_quota`)::

    {provider}_{m|h|d}_{bucket}    provider, window, bucket, limit, count, windowStart, windowEnd,
                                   updatedAt (server time), expireAt (window end + 1 day, for TTL)

`try_acquire` reads the provider's current minute, hour and day documents and either refuses
(writes nothing) or increments all three, in one transaction: no instance can overshoot a limit.
`check` reads the same documents without writing, for ranking; `usage` is the monitoring view.

Design limit (Firestore sustains about 1 write per second per document). Only allowed acquires
write, one write to each of the provider's three documents, so the three take the same writes and
the tightest window sets their rate. The minute window sets the peak and makes its document the hot
one: at the defaults (RunwayML 25/min, HeyGen 20/min) at most 0.42 writes/s per document averaged
over a minute, and the hourly limits (100/h, 200/h) hold the sustained rate to 0.03-0.06 writes/s.
Acquires of one provider also serialize on these documents (each transaction holds them for a
round trip of tens of ms). Sharding is needed once the budget lets more than about 60 requests a
minute through for minutes on end (minute limit above 60 with an hour limit above 3600): N
documents per window (`{provider}_m_{bucket}_{k}`) with `limit / N` each; an acquire picks a
random shard and tries the next when it is full, a refusal needs every shard full, `usage` sums
them. Over budget, the caller tries the next provider, and with none left answers 429 with
`Retry-After` from `QuotaDecision.retry_after_s`.

Provider health (`HealthStore`), collection `settings.collection("health")` (default `video_health`)::

    {provider}    provider, circuit {state, consecutiveFailures, openedUntil, changedAt},
                  counters {hour, successes, failures {kind: n}, lastErrorCode, avgLatencyMs, ...},
                  updatedAt, expireAt (1 day after the last outcome or the end of the cool-down)

A missing document is a closed circuit. Every `record` writes the provider's one document, so record
the outcomes of creates and of failures, not every successful poll: that stays below the request
budget plus the failure rate, far under 1 write/s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from google.cloud import firestore

from config import ENV_VARS, ConfigError, Settings
from jobs.txn import run_transaction, utcnow
from logs import get_logger
from providers import quota, registry
from providers.base import ProviderError
from providers.circuit import (
    CircuitPolicy,
    CircuitState,
    HealthCounters,
    Outcome,
    Phase,
    count_outcome,
    effective_state,
    outcome_for_error,
    record_outcome,
)
from providers.quota import QuotaDecision, Window

Clock = Callable[[], datetime]
log = get_logger("jobs.guards")
COUNTER_MARGIN = timedelta(days=1)  # yesterday's counters stay readable for monitoring
HEALTH_TTL = timedelta(days=1)


# Counters are hot documents: one client attempt, then re-runs after a longer jittered backoff, so
# contenders spread out. Measured on the emulator, 12 simultaneous acquires settle in about 5 s this
# way, while immediate re-runs keep aborting each other for as long as they are allowed to.
def run_counter_transaction(client: firestore.Client, fn: Callable[[firestore.Transaction], Any]) -> Any:
    return run_transaction(client, fn, client_attempts=1, reruns=12, backoff_s=0.5, max_wait_s=8.0)


def quota_limits(settings: Settings, provider: str) -> tuple[Window, ...]:
    """The provider's budget (its spec's default, or its setting); a bad value names its variable."""
    spec = registry.spec(provider)
    try:
        return quota.parse_limits(spec.quota(settings))
    except ValueError as exc:
        variable = ENV_VARS[spec.quota_field][0] if spec.quota_field else f"the {provider} default budget"
        raise ConfigError(f"{variable} is invalid: {exc}") from None


class QuotaGuard:
    """The project's own request budget per provider, enforced across all instances."""

    def __init__(self, client: firestore.Client, settings: Settings, clock: Clock = utcnow) -> None:
        self.client = client
        self.clock = clock
        self.collection = settings.collection("quota")
        self.settings = settings
        # every registered provider's budget is checked now, so a bad setting fails at start-up
        self.limits = {spec.name: quota_limits(settings, spec.name) for spec in registry.specs()}

    def try_acquire(self, provider: str) -> QuotaDecision:
        """Take one request from every window of the provider's budget, or refuse and say how long."""
        now = self.clock()
        refs = self._refs(provider, now)

        def run(txn: firestore.Transaction) -> QuotaDecision:
            counts = self._counts(refs, txn)
            decision = quota.decide(counts, self._limits(provider), now)
            if decision.allowed:
                for window, ref in refs.items():
                    txn.set(ref, self._counter_doc(provider, window, now, counts[window.name] + 1))
            return decision

        return run_counter_transaction(self.client, run)

    def check(self, provider: str) -> QuotaDecision:
        """What `try_acquire` would answer now, without taking anything (for ranking)."""
        now = self.clock()
        return quota.decide(self._counts(self._refs(provider, now)), self._limits(provider), now)

    def usage(self, provider: str) -> dict[str, Any]:
        """Monitoring view: per window its count, limit, what remains and when it resets."""
        now = self.clock()
        counts = self._counts(self._refs(provider, now))
        return {"provider": provider, "windows": quota.describe(counts, self._limits(provider), now)}

    def _limits(self, provider: str) -> tuple[Window, ...]:
        if provider not in self.limits:  # registered after start-up
            try:
                self.limits[provider] = quota_limits(self.settings, provider)
            except registry.UnknownProvider:
                raise ValueError(f"no request budget is configured for provider {provider!r}") from None
        return self.limits[provider]

    def _refs(self, provider: str, now: datetime) -> dict[Window, firestore.DocumentReference]:
        collection = self.client.collection(self.collection)
        return {w: collection.document(quota.counter_id(provider, w, now)) for w in self._limits(provider)}

    def _counts(
        self, refs: Mapping[Window, firestore.DocumentReference], txn: firestore.Transaction | None = None
    ) -> dict[str, int]:
        docs = {
            snap.id: snap.to_dict() or {}
            for snap in self.client.get_all(list(refs.values()), transaction=txn)
        }
        return {window.name: int(docs.get(ref.id, {}).get("count", 0)) for window, ref in refs.items()}

    @staticmethod
    def _counter_doc(provider: str, window: Window, now: datetime, count: int) -> dict[str, Any]:
        end = quota.window_end(now, window.seconds)
        return {
            "provider": provider,
            "window": window.name,
            "bucket": quota.bucket_of(now, window.seconds),
            "limit": window.limit,
            "count": count,
            "windowStart": quota.window_start(now, window.seconds),
            "windowEnd": end,
            "updatedAt": firestore.SERVER_TIMESTAMP,
            "expireAt": end + COUNTER_MARGIN,
        }


class HealthStore:
    """Circuit state and monitoring counters per provider, shared by all instances."""

    def __init__(self, client: firestore.Client, settings: Settings, clock: Clock = utcnow) -> None:
        self.client = client
        self.clock = clock
        self.collection = settings.collection("health")
        self.policy = CircuitPolicy(settings.circuit_failure_threshold, settings.circuit_cooldown_s)

    def get_states(self, providers: Iterable[str]) -> dict[str, CircuitState]:
        """Each provider's circuit as of now (an expired open one is half-open; missing: closed)."""
        now = self.clock()
        docs = self._docs(providers)
        return {p: effective_state(CircuitState.from_doc(docs[p].get("circuit")), now) for p in docs}

    def health(self, provider: str) -> dict[str, Any]:
        """Monitoring view of one provider: its circuit now and this hour's counters."""
        doc = self._docs([provider])[provider]
        circuit = effective_state(CircuitState.from_doc(doc.get("circuit")), self.clock())
        counters = HealthCounters.from_doc(doc.get("counters"))
        return {"provider": provider, "circuit": circuit.to_doc(), "counters": counters.to_doc()}

    def record(
        self,
        provider: str,
        outcome: Outcome | str,
        latency_ms: float | None = None,
        error_code: str | None = None,
    ) -> CircuitState:
        """Apply one call's outcome to the provider's circuit and counters; return the new circuit."""
        now, ref, outcome = self.clock(), self._ref(provider), Outcome(outcome)

        def run(txn: firestore.Transaction) -> CircuitState:
            doc = ref.get(transaction=txn).to_dict() or {}
            circuit = CircuitState.from_doc(doc.get("circuit"))
            circuit = record_outcome(circuit, outcome, now, self.policy, latency_ms)
            counters = HealthCounters.from_doc(doc.get("counters"))
            counters = count_outcome(counters, outcome, now, latency_ms, error_code)
            txn.set(ref, self._health_doc(provider, circuit, counters, now))
            return circuit

        circuit = run_counter_transaction(self.client, run)
        if circuit.state is Phase.OPEN and circuit.changed_at == now:  # opened by this outcome
            context = {"event": "circuit_opened", "provider": provider, "code": error_code}
            log.warning(f"{provider} circuit opened until {circuit.opened_until}", extra=context)
        return circuit

    def record_error(
        self, provider: str, exc: ProviderError, latency_ms: float | None = None
    ) -> CircuitState:
        """`record` for a provider error: its outcome kind and its code."""
        return self.record(provider, outcome_for_error(exc), latency_ms, exc.code)

    def _ref(self, provider: str) -> firestore.DocumentReference:
        return self.client.collection(self.collection).document(provider)

    def _docs(self, providers: Iterable[str]) -> dict[str, dict[str, Any]]:
        names = list(dict.fromkeys(providers))
        found = {snap.id: snap.to_dict() or {} for snap in self.client.get_all([self._ref(p) for p in names])}
        return {p: found.get(p, {}) for p in names}

    @staticmethod
    def _health_doc(
        provider: str, circuit: CircuitState, counters: HealthCounters, now: datetime
    ) -> dict[str, Any]:
        last = max(now, circuit.opened_until) if circuit.opened_until is not None else now
        return {
            "provider": provider,
            "circuit": circuit.to_doc(),
            "counters": counters.to_doc(),
            "updatedAt": firestore.SERVER_TIMESTAMP,
            "expireAt": last + HEALTH_TTL,
        }
