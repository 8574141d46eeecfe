"""The project's request budget and provider health in Firestore, shared by every function instance.

The decisions are pure (`providers.quota`, `providers.circuit`); this module reads, asks and writes,
each change in one transaction with no side effect inside (a transaction may run several times).

Quota counters (`QuotaGuard`), collection `settings.collection("quota")` (default `video_quota`)::

    {provider}_{m|h|d}_{bucket}_{k}   provider, window, bucket, limit, count (of shard k), windowStart,
                                      windowEnd, updatedAt (server time), expireAt (window end + 1 day)
    {provider}_usd_{day}_{k}          provider, usd (estimated spend sent today, shard k), windowEnd, ...

Each window's limit is split over `COUNTER_SHARDS` shards (`quota.shard_limits`; fewer when a limit
is smaller than that). `try_acquire` starts at a random shard and, in one transaction, reads that
shard's minute, hour and day documents and either refuses or increments all three and adds the
create's estimated cost to the shard's spend; a full shard sends it to the next, and only when every
shard is full is the request refused. No shard passes its share, so no window passes its limit, and
concurrent acquires contend only when they pick the same shard: at 10 creates a second and 8 shards,
about 1.3 writes/s per document. `check` sums the shards without writing (exact: some shard has room
exactly when the sum is below the limit), for ranking; `usage` is the monitoring view.

The spend caps are checked before that transaction by summing today's spend shards of every
provider: a soft check, so creates admitted at the same moment may pass a cap by their own cost.
A refusal by a cap logs the `spend_cap_reached` event (an alert policy fires on it). Over budget,
the caller tries the next provider, and with none left answers 429 (request budget) or 503 (spend
cap) with `Retry-After` from `QuotaDecision.retry_after_s`.

Provider health (`HealthStore`), collection `settings.collection("health")` (default `video_health`)::

    {provider}    provider, circuit {state, consecutiveFailures, openedUntil, changedAt},
                  counters {hour, successes, failures {kind: n}, lastErrorCode, avgLatencyMs, ...},
                  updatedAt, expireAt (1 day after the last outcome or the end of the cool-down)

A missing document is a closed circuit. A failure is written at once; a success on a healthy circuit
is held in the instance and written with its next outcome, at most every `SUCCESS_FLUSH_S`, so the
document takes about one write per instance every 10 s plus the failure rate, far under 1 write/s.
Held successes of an instance that stops are lost to the counters (never to the circuit).

Status refreshes (`RefreshGate`), collection `settings.collection("refresh")`: one document per job
and refresh interval, created by the one caller that refreshes; TTL on `expireAt`.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
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
REFRESH_TTL = timedelta(hours=1)
SUCCESS_FLUSH_S = 10.0  # a healthy provider's successes are written at most this often per instance


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
    """The project's own budget per provider (requests per window, USD per day), across instances."""

    def __init__(self, client: firestore.Client, settings: Settings, clock: Clock = utcnow) -> None:
        self.client = client
        self.clock = clock
        self.collection = settings.collection("quota")
        self.settings = settings
        self.shards = settings.counter_shards
        # every registered provider's budget is checked now, so a bad setting fails at start-up
        self.limits = {spec.name: quota_limits(settings, spec.name) for spec in registry.specs()}

    def try_acquire(self, provider: str, usd: float | None = None) -> QuotaDecision:
        """Take one request from every window of one shard of the provider's budget and add `usd` to
        its spend, or refuse (writing nothing) and say how long to wait."""
        now, cost = self.clock(), usd or 0.0
        spend = self._spend(now)
        refused = self._spend_refusal(provider, cost, spend, now)
        if refused is not None:
            return refused
        limits = self._limits(provider)
        count = quota.shard_count(limits, self.shards)
        if count == 0:
            return quota.decide({}, limits, now)
        refusals = []
        first = random.randrange(count)
        for shard in ((first + i) % count for i in range(count)):
            decision = self._acquire_shard(provider, limits, shard, count, cost, now)
            if decision.allowed:
                self._warn_near_cap(provider, spend, cost)
                return decision
            refusals.append(decision)
        return min(refusals, key=lambda d: d.retry_after_s or 0.0)

    def check(self, provider: str, usd: float | None = None) -> QuotaDecision:
        """What `try_acquire` would answer now, without taking anything (exact: a window has room in
        some shard exactly when its total is below the limit)."""
        now = self.clock()
        refused = self._spend_refusal(provider, usd or 0.0, self._spend(now), now)
        if refused is not None:
            return refused
        return quota.decide(self._counts(provider, now), self._limits(provider), now)

    def usage(self, provider: str) -> dict[str, Any]:
        """Monitoring view: per window its count, limit, what remains and when it resets; spend today."""
        now = self.clock()
        windows = quota.describe(self._counts(provider, now), self._limits(provider), now)
        spend = self._spend(now)
        return {
            "provider": provider,
            "windows": windows,
            "spendUsdToday": round(spend.get(provider, 0.0), 2),
            "spendCapUsd": self.settings.provider_spend_caps_usd_per_day.get(provider),
            "totalSpendUsdToday": round(sum(spend.values()), 2),
            "totalSpendCapUsd": self.settings.spend_cap_usd_per_day,
        }

    def _acquire_shard(
        self, provider: str, limits: tuple[Window, ...], shard: int, count: int, usd: float, now: datetime
    ) -> QuotaDecision:
        collection = self.client.collection(self.collection)
        shares = quota.shard_limits(limits, shard, count)
        refs = {w: collection.document(quota.counter_id(provider, w, now, shard)) for w in shares}
        spend_ref = collection.document(quota.spend_id(provider, now, shard))

        def run(txn: firestore.Transaction) -> QuotaDecision:
            counts = self._read_counts(refs, txn)
            decision = quota.decide(counts, tuple(shares.values()), now)
            if decision.allowed:
                for window, ref in refs.items():
                    txn.set(ref, self._counter_doc(provider, limits, window, now, counts[window.name] + 1))
                if usd:  # written, not read: the spend caps are checked before, outside the transaction
                    txn.set(spend_ref, self._spend_doc(provider, now, usd), merge=True)
            return decision

        return run_counter_transaction(self.client, run)

    def _caps(self, provider: str) -> dict[str, float | None]:
        return {provider: self.settings.provider_spend_caps_usd_per_day.get(provider)}

    def _spend_refusal(
        self, provider: str, usd: float, spend: Mapping[str, float], now: datetime
    ) -> QuotaDecision | None:
        """Refused when this create would take the provider's or the project's spend today past its
        cap. Concurrent creates may each pass this check: the overshoot is at most their cost."""
        total = self.settings.spend_cap_usd_per_day
        reached = quota.spend_refusal(spend, self._caps(provider), total, provider, usd, now)
        if reached is not None:
            context = {"event": "spend_cap_reached", "provider": provider, "window": reached.window}
            context["spendUsd"] = round(sum(spend.values()), 2)
            log.warning(f"the {reached.window} cap stops new {provider} videos today", extra=context)
        return reached

    def _warn_near_cap(self, provider: str, spend: Mapping[str, float], usd: float) -> None:
        """Log `spend_near_cap` once, for the create that takes a cap's spend past its warning share."""
        total = self.settings.spend_cap_usd_per_day
        crossed = quota.near_cap(spend, self._caps(provider), total, provider, usd)
        if crossed is not None:
            context = {"event": "spend_near_cap", "provider": provider, "window": crossed}
            context["spendUsd"] = round(sum(spend.values()) + usd, 2)
            log.warning(f"the {crossed} today passed {quota.NEAR_CAP:.0%} of its cap", extra=context)

    def _spend(self, now: datetime) -> dict[str, float]:
        """Today's estimated spend per provider (every provider's shards, one batched read)."""
        collection = self.client.collection(self.collection)
        refs = [
            collection.document(quota.spend_id(name, now, shard))
            for name in self.limits
            for shard in range(self.shards)
        ]
        spend: dict[str, float] = {}
        for snap in self.client.get_all(refs, field_paths=["provider", "usd"]):
            if snap.exists:
                doc = snap.to_dict() or {}
                spend[doc["provider"]] = spend.get(doc["provider"], 0.0) + float(doc.get("usd") or 0.0)
        return spend

    def _limits(self, provider: str) -> tuple[Window, ...]:
        if provider not in self.limits:  # registered after start-up
            try:
                self.limits[provider] = quota_limits(self.settings, provider)
            except registry.UnknownProvider:
                raise ValueError(f"no request budget is configured for provider {provider!r}") from None
        return self.limits[provider]

    def _counts(self, provider: str, now: datetime) -> dict[str, int]:
        """Each window's count summed over its shards."""
        limits = self._limits(provider)
        collection = self.client.collection(self.collection)
        count = max(quota.shard_count(limits, self.shards), 1)
        refs = [
            collection.document(quota.counter_id(provider, w, now, k)) for w in limits for k in range(count)
        ]
        totals = {w.name: 0 for w in limits}
        for snap in self.client.get_all(refs, field_paths=["window", "count"]):
            if snap.exists:
                doc = snap.to_dict() or {}
                totals[doc["window"]] = totals.get(doc["window"], 0) + int(doc.get("count", 0))
        return totals

    def _read_counts(
        self, refs: Mapping[Window, firestore.DocumentReference], txn: firestore.Transaction
    ) -> dict[str, int]:
        docs = {
            snap.id: snap.to_dict() or {}
            for snap in self.client.get_all(list(refs.values()), transaction=txn)
        }
        return {window.name: int(docs.get(ref.id, {}).get("count", 0)) for window, ref in refs.items()}

    @staticmethod
    def _counter_doc(
        provider: str, limits: tuple[Window, ...], window: Window, now: datetime, count: int
    ) -> dict[str, Any]:
        end = quota.window_end(now, window.seconds)
        return {
            "provider": provider,
            "window": window.name,
            "bucket": quota.bucket_of(now, window.seconds),
            "limit": next(w.limit for w in limits if w.seconds == window.seconds),
            "count": count,
            "windowStart": quota.window_start(now, window.seconds),
            "windowEnd": end,
            "updatedAt": firestore.SERVER_TIMESTAMP,
            "expireAt": end + COUNTER_MARGIN,
        }

    @staticmethod
    def _spend_doc(provider: str, now: datetime, usd: float) -> dict[str, Any]:
        end = quota.window_end(now, 86400)
        return {
            "provider": provider,
            "window": "spend",
            "usd": firestore.Increment(usd),
            "windowEnd": end,
            "updatedAt": firestore.SERVER_TIMESTAMP,
            "expireAt": end + COUNTER_MARGIN,
        }


class HealthStore:
    """Circuit state and monitoring counters per provider, shared by all instances.

    A success on a circuit this instance last saw healthy (closed, no failures) changes nothing but
    the counters, so it is held in memory and written with the next outcome or after
    `SUCCESS_FLUSH_S`: the provider's one document is not written on every create.
    """

    def __init__(self, client: firestore.Client, settings: Settings, clock: Clock = utcnow) -> None:
        self.client = client
        self.clock = clock
        self.collection = settings.collection("health")
        self.policy = CircuitPolicy(settings.circuit_failure_threshold, settings.circuit_cooldown_s)
        self._lock = threading.Lock()
        self._seen: dict[str, CircuitState] = {}  # the circuit as last read or written here
        self._held: dict[str, list[float | None]] = {}  # successes not yet written (their latencies)
        self._written: dict[str, datetime] = {}

    def get_states(self, providers: Iterable[str]) -> dict[str, CircuitState]:
        """Each provider's circuit as of now (an expired open one is half-open; missing: closed)."""
        now = self.clock()
        docs = self._docs(providers)
        states = {p: effective_state(CircuitState.from_doc(docs[p].get("circuit")), now) for p in docs}
        with self._lock:
            self._seen.update(states)
        return states

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
        if outcome is Outcome.SUCCESS and self._hold(provider, latency_ms, now):
            return self._seen[provider]
        with self._lock:
            held = self._held.pop(provider, [])

        def run(txn: firestore.Transaction) -> CircuitState:
            doc = ref.get(transaction=txn).to_dict() or {}
            circuit = CircuitState.from_doc(doc.get("circuit"))
            counters = HealthCounters.from_doc(doc.get("counters"))
            for held_ms in held:
                counters = count_outcome(counters, Outcome.SUCCESS, now, held_ms)
            circuit = record_outcome(circuit, outcome, now, self.policy, latency_ms)
            counters = count_outcome(counters, outcome, now, latency_ms, error_code)
            txn.set(ref, self._health_doc(provider, circuit, counters, now))
            return circuit

        circuit = run_counter_transaction(self.client, run)
        with self._lock:
            self._seen[provider], self._written[provider] = circuit, now
        if circuit.state is Phase.OPEN and circuit.changed_at == now:  # opened by this outcome
            context = {"event": "circuit_opened", "provider": provider, "code": error_code}
            log.warning(f"{provider} circuit opened until {circuit.opened_until}", extra=context)
        return circuit

    def _hold(self, provider: str, latency_ms: float | None, now: datetime) -> bool:
        """Keep a success in memory when the circuit is healthy and was written recently."""
        with self._lock:
            seen, written = self._seen.get(provider), self._written.get(provider)
            healthy = seen is not None and seen.state is Phase.CLOSED and seen.consecutive_failures == 0
            if not healthy or written is None or (now - written).total_seconds() >= SUCCESS_FLUSH_S:
                return False
            self._held.setdefault(provider, []).append(latency_ms)
            return True

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


class RefreshGate:
    """At most one provider read per job and refresh interval, across all instances.

    A caller that wants to refresh a job from its provider creates the document
    `{settings.collection("refresh")}/{jobId}_{interval number}`; creating is atomic, so exactly one
    caller per interval succeeds and the others answer with what is stored, at once.
    """

    def __init__(
        self, client: firestore.Client, settings: Settings, interval_s: float, clock: Clock = utcnow
    ) -> None:
        self.client = client
        self.clock = clock
        self.interval_s = interval_s
        self.collection = settings.collection("refresh")

    def take(self, job_id: str) -> bool:
        now = self.clock()
        interval = int(now.timestamp() // self.interval_s)
        ref = self.client.collection(self.collection).document(f"{job_id}_{interval}")
        try:
            ref.create({"jobId": job_id, "takenAt": now, "expireAt": now + REFRESH_TTL})
        except gexc.Conflict:  # ALREADY_EXISTS: another caller refreshes this interval
            return False
        return True
