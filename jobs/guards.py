"""The project's request budget and provider health in Firestore, shared by every function instance.

The decisions are pure (`providers.quota`, `providers.circuit`); this module reads, asks and writes,
each change in one atomic write that holds only if what it was decided from is unchanged
(`jobs.txn.run_optimistic`; decided again otherwise, so nothing with a side effect runs inside).

Quota counters (`QuotaGuard`), collection `settings.collection("quota")` (default `video_quota`)::

    {provider}_{m|h|d}_{bucket}_{k}   provider, window, bucket, limit, count (of shard k), windowStart,
                                      windowEnd, updatedAt (server time), expireAt (window end + 1 day)
    {provider}_usd_{day}_{k}          provider, usd (estimated spend sent today, shard k), windowEnd, ...

Each window's limit is split over `COUNTER_SHARDS` shards (`quota.shard_limits`; fewer when a limit
is smaller than that). `try_acquire` starts at a random shard, reads that shard's minute, hour and
day documents (in the same read as today's spend) and either refuses or writes all three, one more
each, adding the create's estimated cost to the shard's spend (an `Increment`, never read back);
the write holds only if none of the three changed since it was read (`jobs.txn.run_optimistic`: no
transaction, so no lock for a concurrent acquire to wait on), else the shard is read and decided
again. A full shard sends it to the next, and only when every shard is full is the request
refused. No shard passes its share, so no window passes its limit, and concurrent acquires contend
only when they pick the same shard: at 10 creates a second and 8 shards, about 1.3 writes/s per
document. `check` sums the shards and today's spend in one read, without writing (exact: some shard
has room exactly when the sum is below the limit), for ranking; `usage` is the monitoring view.
The ranking's sums (every shard of every window, and every provider's spend shards: dozens of
documents) are read at most once per `BUDGET_READ_S` per instance and provider, and this instance's
own acquisitions are added to them meanwhile; another instance's are seen within that second. A
ranking that missed them only sends a create to `try_acquire`, which decides on its shard as read
then; the spend caps were a soft check already.

The spend caps are checked before that write by summing today's spend shards of every
provider: a soft check, so creates admitted at the same moment may pass a cap by their own cost.
A refusal by a cap logs the `spend_cap_reached` event (an alert policy fires on it). Over budget,
the caller tries the next provider, and with none left answers 429 (request budget) or 503 (spend
cap) with `Retry-After` from `QuotaDecision.retry_after_s`.

Provider health (`HealthStore`), collection `settings.collection("health")` (default `video_health`)::

    {provider}    provider, circuit {state, consecutiveFailures, openedUntil, changedAt},
                  counters {hour, successes, failures {kind: n}, lastErrorCode, avgLatencyMs, ...},
                  updatedAt, expireAt (1 day after the last outcome or the end of the cool-down)

A missing document is a closed circuit. A failure is written at once; a success on a healthy circuit
is held in the instance and written with its next outcome, at most every `SUCCESS_FLUSH_S` and by
one thread at a time (the first success of an interval claims it; the others keep holding), so the
document takes about one write per instance every 10 s plus the failure rate, far under 1 write/s,
and an instance's concurrent creates never queue on it together.
Held successes of an instance that stops are lost to the counters (never to the circuit).
A circuit this instance read or wrote less than `CIRCUIT_READ_S` ago is not read again for the
ranking of a create: another instance's opening of it is seen within that second.

Status refreshes (`RefreshGate`), collection `settings.collection("refresh")`: one document per job
and refresh interval, created by the one caller that refreshes; TTL on `expireAt`.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from config import ENV_VARS, ConfigError, Settings
from jobs.txn import guarded_write, run_optimistic, utcnow
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
CIRCUIT_READ_S = 1.0  # a circuit read or written here this recently is taken as current
BUDGET_READ_S = 1.0  # the budget's sums as read here this recently are taken as current for ranking


def quota_limits(settings: Settings, provider: str) -> tuple[Window, ...]:
    """The provider's budget (its spec's default, or its setting); a bad value names its variable."""
    spec = registry.spec(provider)
    try:
        return quota.parse_limits(spec.quota(settings))
    except ValueError as exc:
        variable = ENV_VARS[spec.quota_field][0] if spec.quota_field else f"the {provider} default budget"
        raise ConfigError(f"{variable} is invalid: {exc}") from None


@dataclass
class _Sums:
    """One reading of a provider's budget: today's spend per provider and each window's total."""

    at: datetime
    counters: frozenset[str]  # the counter documents summed (their ids name the windows' buckets)
    spend: dict[str, float]
    totals: dict[str, int]


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
        self._sums: dict[str, _Sums] = {}  # by provider: the last reading for ranking
        self._sums_lock = threading.Lock()

    def try_acquire(
        self, provider: str, usd: float | None = None, spend: Mapping[str, float] | None = None
    ) -> QuotaDecision:
        """Take one request from every window of one shard of the provider's budget and add `usd` to
        its spend, or refuse (writing nothing) and say how long to wait. `spend`: today's spend as
        the caller read it a moment ago (`assess`), so it is not read again; the cap is a soft check."""
        now, cost = self.clock(), usd or 0.0
        limits = self._limits(provider)
        count = quota.shard_count(limits, self.shards)
        first = random.randrange(count) if count else 0
        shards = [(first + i) % count for i in range(count)]
        first_refs = self._shard_refs(provider, limits, shards[0], count, now) if shards else {}
        if spend is None:
            spend, snaps = self._read(now, list(first_refs.values()))  # the spend and one shard: one read
        else:
            snaps = self._snaps(list(first_refs.values()))
        refused = self._spend_refusal(provider, cost, spend, now)
        if refused is not None:
            return refused
        if count == 0:
            return quota.decide({}, limits, now)
        refusals = []
        for shard in shards:
            known = snaps if shard == shards[0] else None
            decision = self._acquire_shard(provider, limits, shard, count, cost, now, known)
            if decision.allowed:
                self._warn_near_cap(provider, spend, cost)
                self._count_in(provider, cost)
                return decision
            refusals.append(decision)
        return min(refusals, key=lambda d: d.retry_after_s or 0.0)

    def check(self, provider: str, usd: float | None = None) -> QuotaDecision:
        """What `try_acquire` would answer now, without taking anything (exact: a window has room in
        some shard exactly when its total is below the limit)."""
        return self.assess(provider, usd)[0]

    def assess(self, provider: str, usd: float | None = None) -> tuple[QuotaDecision, dict[str, float]]:
        """`check`, and today's spend per provider it was decided with (for `try_acquire`)."""
        now = self.clock()
        spend, counts = self._totals(provider, now, recent=True)
        refused = self._spend_refusal(provider, usd or 0.0, spend, now)
        if refused is not None:
            return refused, spend
        return quota.decide(counts, self._limits(provider), now), spend

    def usage(self, provider: str) -> dict[str, Any]:
        """Monitoring view: per window its count, limit, what remains and when it resets; spend today."""
        now = self.clock()
        spend, counts = self._totals(provider, now)
        windows = quota.describe(counts, self._limits(provider), now)
        return {
            "provider": provider,
            "windows": windows,
            "spendUsdToday": round(spend.get(provider, 0.0), 2),
            "spendCapUsd": self.settings.provider_spend_caps_usd_per_day.get(provider),
            "totalSpendUsdToday": round(sum(spend.values()), 2),
            "totalSpendCapUsd": self.settings.spend_cap_usd_per_day,
        }

    def _acquire_shard(
        self,
        provider: str,
        limits: tuple[Window, ...],
        shard: int,
        count: int,
        usd: float,
        now: datetime,
        known: Mapping[str, firestore.DocumentSnapshot] | None = None,
    ) -> QuotaDecision:
        """Take one request from every window of `shard`, or refuse; a commit that finds a counter
        changed since it was read reads the shard again (`run_optimistic`), so no share is passed."""
        refs = self._shard_refs(provider, limits, shard, count, now)
        shares = quota.shard_limits(limits, shard, count)
        spend_ref = self.client.collection(self.collection).document(quota.spend_id(provider, now, shard))
        pending = [known] if known is not None else []  # the first try may use what was read already

        def attempt() -> QuotaDecision:
            read = pending.pop() if pending else self._snaps(list(refs.values()))
            counts = {w.name: _count(read.get(ref.id)) for w, ref in refs.items()}
            decision = quota.decide(counts, tuple(shares.values()), now)
            if decision.allowed:
                batch = self.client.batch()
                for window, ref in refs.items():
                    doc = self._counter_doc(provider, limits, window, now, counts[window.name] + 1)
                    guarded_write(batch, ref, read.get(ref.id), doc)
                if usd:  # added, not read: the spend caps are checked before, from a plain read
                    batch.set(spend_ref, self._spend_doc(provider, now, usd), merge=True)
                batch.commit()
            return decision

        return run_optimistic(attempt)

    def _shard_refs(
        self, provider: str, limits: tuple[Window, ...], shard: int, count: int, now: datetime
    ) -> dict[Window, firestore.DocumentReference]:
        collection = self.client.collection(self.collection)
        return {w: collection.document(quota.counter_id(provider, w, now, shard)) for w in limits}

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

    def _read(
        self, now: datetime, refs: list[firestore.DocumentReference]
    ) -> tuple[dict[str, float], dict[str, firestore.DocumentSnapshot]]:
        """Today's estimated spend per provider (every provider's shards) and the snapshots of `refs`,
        in one batched read."""
        collection = self.client.collection(self.collection)
        spend_refs = [
            collection.document(quota.spend_id(name, now, shard))
            for name in self.limits
            for shard in range(self.shards)
        ]
        snaps = self._snaps(spend_refs + refs)
        spend: dict[str, float] = {}
        for ref in spend_refs:
            doc = (snaps[ref.id].to_dict() or {}) if ref.id in snaps else {}
            if doc:
                spend[doc["provider"]] = spend.get(doc["provider"], 0.0) + float(doc.get("usd") or 0.0)
        return spend, {ref.id: snaps[ref.id] for ref in refs if ref.id in snaps}

    def _snaps(self, refs: list[firestore.DocumentReference]) -> dict[str, firestore.DocumentSnapshot]:
        found = self.client.get_all(refs, field_paths=["provider", "usd", "window", "count"])
        return {snap.id: snap for snap in found if snap.exists}

    def _limits(self, provider: str) -> tuple[Window, ...]:
        if provider not in self.limits:  # registered after start-up
            try:
                self.limits[provider] = quota_limits(self.settings, provider)
            except registry.UnknownProvider:
                raise ValueError(f"no request budget is configured for provider {provider!r}") from None
        return self.limits[provider]

    def _totals(
        self, provider: str, now: datetime, *, recent: bool = False
    ) -> tuple[dict[str, float], dict[str, int]]:
        """Spend today per provider, and each of the provider's windows summed over its shards
        (`recent`: as read here less than `BUDGET_READ_S` ago, in the same windows, if so)."""
        limits = self._limits(provider)
        count = max(quota.shard_count(limits, self.shards), 1)
        refs = [
            ref for k in range(count) for ref in self._shard_refs(provider, limits, k, count, now).values()
        ]
        ids = frozenset(ref.id for ref in refs)
        with self._sums_lock:
            sums = self._sums.get(provider)
            if recent and sums is not None and sums.counters == ids and _within(sums.at, now, BUDGET_READ_S):
                return dict(sums.spend), dict(sums.totals)
        spend, snaps = self._read(now, refs)
        totals = {w.name: 0 for w in limits}
        for snap in snaps.values():
            doc = snap.to_dict() or {}
            totals[doc["window"]] = totals.get(doc["window"], 0) + int(doc.get("count", 0))
        with self._sums_lock:
            self._sums[provider] = _Sums(now, ids, dict(spend), dict(totals))
        return spend, totals

    def _count_in(self, provider: str, usd: float) -> None:
        """Add an acquisition made here to the last reading of the sums (until it is read again)."""
        with self._sums_lock:
            sums = self._sums.get(provider)
            if sums is not None:
                sums.totals = {name: n + 1 for name, n in sums.totals.items()}
                if usd:
                    sums.spend = {**sums.spend, provider: sums.spend.get(provider, 0.0) + usd}

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


def _within(since: datetime | None, now: datetime, seconds: float) -> bool:
    return since is not None and 0 <= (now - since).total_seconds() < seconds


def _count(snap: firestore.DocumentSnapshot | None) -> int:
    return int((snap.to_dict() or {}).get("count", 0)) if snap is not None else 0


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
        self._seen_at: dict[str, datetime] = {}  # when
        self._held: dict[str, list[float | None]] = {}  # successes not yet written (their latencies)
        self._written: dict[str, datetime] = {}

    def get_states(self, providers: Iterable[str]) -> dict[str, CircuitState]:
        """Each provider's circuit as of now (an expired open one is half-open; missing: closed)."""
        now, names = self.clock(), list(dict.fromkeys(providers))
        with self._lock:
            recent = {p: self._seen[p] for p in names if _within(self._seen_at.get(p), now, CIRCUIT_READ_S)}
        if len(recent) == len(names):
            return {p: effective_state(state, now) for p, state in recent.items()}
        docs = self._docs(names)
        states = {p: effective_state(CircuitState.from_doc(docs[p].get("circuit")), now) for p in docs}
        with self._lock:
            self._seen.update(states)
            self._seen_at.update(dict.fromkeys(states, now))
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

        def attempt() -> CircuitState:
            snap = ref.get()
            doc = snap.to_dict() or {}
            circuit = CircuitState.from_doc(doc.get("circuit"))
            counters = HealthCounters.from_doc(doc.get("counters"))
            for held_ms in held:
                counters = count_outcome(counters, Outcome.SUCCESS, now, held_ms)
            circuit = record_outcome(circuit, outcome, now, self.policy, latency_ms)
            counters = count_outcome(counters, outcome, now, latency_ms, error_code)
            batch = self.client.batch()
            guarded_write(batch, ref, snap, self._health_doc(provider, circuit, counters, now))
            batch.commit()
            return circuit

        circuit = run_optimistic(attempt)
        with self._lock:
            self._seen[provider], self._written[provider] = circuit, now
            self._seen_at[provider] = now
        if circuit.state is Phase.OPEN and circuit.changed_at == now:  # opened by this outcome
            context = {"event": "circuit_opened", "provider": provider, "code": error_code}
            log.warning(f"{provider} circuit opened until {circuit.opened_until}", extra=context)
        return circuit

    def _hold(self, provider: str, latency_ms: float | None, now: datetime) -> bool:
        """Keep a success in memory when the circuit is healthy and was written recently; else this
        caller writes, and claims the interval at once, so the instance's other threads keep holding
        meanwhile instead of all writing the one document together."""
        with self._lock:
            seen, written = self._seen.get(provider), self._written.get(provider)
            healthy = seen is not None and seen.state is Phase.CLOSED and seen.consecutive_failures == 0
            if not healthy:
                return False
            if written is None or (now - written).total_seconds() >= SUCCESS_FLUSH_S:
                self._written[provider] = now
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
