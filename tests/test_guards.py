"""Request budget and provider health against Google's Firestore emulator, with a clock we move."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from google.cloud import firestore

from config import ConfigError, load_settings
from jobs.guards import HealthStore, QuotaGuard
from providers import quota
from providers.base import ContentRejected, ProviderUnavailable
from providers.circuit import Outcome, Phase
from tests.conftest import TEST_PROJECT
from tests.test_job_store import Clock, run_in_threads

T0 = datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)
SMALL = {"GOOGLE_CLOUD_PROJECT": TEST_PROJECT, "RUNWAYML_QUOTA": "3/60,5/3600,100/86400"}


@pytest.fixture
def clock():
    return Clock(T0)


@pytest.fixture
def guard(firestore_client, clock):
    return QuotaGuard(firestore_client, load_settings(SMALL), clock)


@pytest.fixture
def health(firestore_client, settings, clock):
    return HealthStore(firestore_client, settings, clock)


def acquire_many(guard, provider, count):
    return [guard.try_acquire(provider) for _ in range(count)]


# -- quota ----------------------------------------------------------------------------------------


def test_acquires_are_allowed_up_to_the_minute_limit_then_refused_until_the_minute_ends(guard, clock):
    clock.now = T0 + timedelta(seconds=15)
    assert [d.allowed for d in acquire_many(guard, "runwayml", 3)] == [True] * 3
    refused = guard.try_acquire("runwayml")
    assert (refused.allowed, refused.window, refused.retry_after_s) == (False, "minute", 45.0)


def quota_docs(firestore_client, settings):
    return {s.id: s.to_dict() for s in firestore_client.collection(settings.collection("quota")).stream()}


def test_a_refusal_writes_nothing(guard, firestore_client, settings):
    acquire_many(guard, "runwayml", 3)
    before = quota_docs(firestore_client, settings)
    assert not guard.try_acquire("runwayml").allowed
    assert quota_docs(firestore_client, settings) == before
    assert sum(d["count"] for d in before.values() if d["window"] == "minute") == 3


def test_each_window_is_split_over_shards_that_never_pass_their_share(firestore_client, clock):
    settings = load_settings({**SMALL, "RUNWAYML_QUOTA": "20/60,100/3600", "COUNTER_SHARDS": "4"})
    guard = QuotaGuard(firestore_client, settings, clock)
    assert all(d.allowed for d in acquire_many(guard, "runwayml", 20))
    assert not guard.try_acquire("runwayml").allowed
    minutes = [d for d in quota_docs(firestore_client, settings).values() if d["window"] == "minute"]
    assert sorted(d["count"] for d in minutes) == [5, 5, 5, 5]  # each shard full at its share
    assert guard.usage("runwayml")["windows"]["minute"]["count"] == 20


def test_a_limit_smaller_than_the_shard_count_uses_fewer_shards():
    limits = quota.parse_limits("2/60,100/3600")
    assert quota.shard_count(limits, 8) == 2
    assert [quota.shard_limits(limits, k, 2)[limits[0]].limit for k in (0, 1)] == [1, 1]
    assert sum(quota.shard_limits(limits, k, 2)[limits[1]].limit for k in (0, 1)) == 100
    assert quota.shard_count(quota.parse_limits("0/60"), 8) == 0


def test_the_provider_spend_cap_stops_creates_and_says_until_when(firestore_client, clock, caplog):
    settings = load_settings({**SMALL, "PROVIDER_SPEND_CAPS_USD_PER_DAY": "runwayml=5"})
    guard = QuotaGuard(firestore_client, settings, clock)
    assert guard.try_acquire("runwayml", 3.0).allowed
    before = quota_docs(firestore_client, settings)
    refused = guard.try_acquire("runwayml", 3.0)
    assert (refused.allowed, refused.window) == (False, "provider spend")
    assert refused.retry_after_s == (T0 + timedelta(days=1) - T0).total_seconds() - 10 * 3600
    assert quota_docs(firestore_client, settings) == before
    assert any(getattr(r, "event", None) == "spend_cap_reached" for r in caplog.records)
    assert guard.try_acquire("heygen", 3.0).allowed  # no cap of its own, under the total
    assert guard.usage("runwayml")["spendUsdToday"] == 3.0


def test_the_total_spend_cap_counts_every_provider(firestore_client, clock):
    settings = load_settings({**SMALL, "SPEND_CAP_USD_PER_DAY": "10"})
    guard = QuotaGuard(firestore_client, settings, clock)
    assert guard.try_acquire("heygen", 6.0).allowed
    assert not guard.check("runwayml", 5.0).allowed
    refused = guard.try_acquire("runwayml", 5.0)
    assert (refused.allowed, refused.window) == (False, "total spend")
    assert guard.try_acquire("runwayml", 4.0).allowed
    clock.now = T0 + timedelta(days=1)  # a new UTC day
    assert guard.try_acquire("runwayml", 9.0).allowed


def test_an_acquire_decides_the_caps_with_the_spend_its_caller_just_assessed(firestore_client, clock):
    settings = load_settings({**SMALL, "PROVIDER_SPEND_CAPS_USD_PER_DAY": "runwayml=5"})
    guard = QuotaGuard(firestore_client, settings, clock)
    decision, spend = guard.assess("runwayml", 3.0)
    assert decision.allowed
    assert spend == {}
    assert guard.try_acquire("runwayml", 3.0, spend).allowed
    decision, spend = guard.assess("runwayml", 3.0)
    assert (decision.allowed, decision.window, spend) == (False, "provider spend", {"runwayml": 3.0})
    assert not guard.try_acquire("runwayml", 3.0, spend).allowed
    assert guard.try_acquire("runwayml", 3.0, {}).allowed  # the spend given is not read again


def test_a_new_minute_allows_again_but_the_hour_limit_still_binds(guard, clock):
    acquire_many(guard, "runwayml", 3)
    clock.now = T0 + timedelta(minutes=1, seconds=30)
    assert [d.allowed for d in acquire_many(guard, "runwayml", 2)] == [True, True]
    refused = guard.try_acquire("runwayml")
    assert (refused.allowed, refused.window) == (False, "hour")
    assert refused.retry_after_s == (T0 + timedelta(hours=1) - clock.now).total_seconds()
    clock.now = T0 + timedelta(hours=1)
    assert guard.try_acquire("runwayml").allowed


def test_providers_have_separate_budgets(guard):
    acquire_many(guard, "runwayml", 3)
    assert guard.try_acquire("heygen").allowed
    assert guard.usage("heygen")["windows"]["minute"]["count"] == 1


def test_check_answers_like_an_acquire_without_taking_anything(guard):
    acquire_many(guard, "runwayml", 2)
    assert guard.check("runwayml").allowed
    assert guard.check("runwayml").allowed
    assert guard.usage("runwayml")["windows"]["minute"] == {
        "count": 2,
        "limit": 3,
        "remaining": 1,
        "resetsAt": T0 + timedelta(minutes=1),
    }
    guard.try_acquire("runwayml")
    assert not guard.check("runwayml").allowed


def test_counter_documents_carry_their_window_and_expiry(guard, firestore_client, settings):
    guard.try_acquire("runwayml")
    minute_ids = [quota.counter_id("runwayml", quota.Window(60, 3), T0, k) for k in range(3)]
    snaps = firestore_client.get_all(
        [firestore_client.collection(settings.collection("quota")).document(i) for i in minute_ids]
    )
    [doc] = [s.to_dict() for s in snaps if s.exists]
    assert doc["count"] == 1
    assert (doc["provider"], doc["window"], doc["limit"]) == ("runwayml", "minute", 3)
    assert doc["windowEnd"] == T0 + timedelta(minutes=1)
    assert doc["expireAt"] == T0 + timedelta(minutes=1, days=1)
    assert isinstance(doc["updatedAt"], datetime)


def test_concurrent_acquires_never_overshoot_the_limit(firestore_client, clock):
    settings = load_settings({**SMALL, "RUNWAYML_QUOTA": "10/60"})
    QuotaGuard(firestore_client, settings, clock)  # the limits parse

    def acquire(_):
        client = firestore.Client(project=TEST_PROJECT)
        try:
            return QuotaGuard(client, settings, clock).try_acquire("runwayml").allowed
        finally:
            client.close()

    results = run_in_threads(12, acquire)
    assert results.count(True) == 10
    assert QuotaGuard(firestore_client, settings, clock).usage("runwayml")["windows"]["minute"]["count"] == 10


def test_an_unknown_provider_or_a_bad_budget_is_refused(guard, firestore_client):
    with pytest.raises(ValueError, match="no request budget"):
        guard.try_acquire("sora")
    bad = load_settings({**SMALL, "HEYGEN_QUOTA": "5/60,6/60"})
    with pytest.raises(ConfigError, match="HEYGEN_QUOTA is invalid"):
        QuotaGuard(firestore_client, bad)


# -- health ---------------------------------------------------------------------------------------


def test_missing_health_documents_read_as_closed(health):
    states = health.get_states(("heygen", "runwayml"))
    assert set(states) == {"heygen", "runwayml"}
    assert all(s.state is Phase.CLOSED for s in states.values())


def test_the_circuit_opens_after_five_failures_and_half_opens_after_the_cool_down(health, clock):
    for _ in range(4):
        health.record("runwayml", Outcome.UNAVAILABLE, latency_ms=100)
    assert health.get_states(("heygen", "runwayml"))["runwayml"].state is Phase.CLOSED
    assert health.record("runwayml", Outcome.TIMEOUT).state is Phase.OPEN
    clock.now = T0 + timedelta(seconds=59)
    assert health.get_states(("heygen", "runwayml"))["runwayml"].state is Phase.OPEN
    clock.now = T0 + timedelta(seconds=60)
    assert health.get_states(("heygen", "runwayml"))["runwayml"].state is Phase.HALF_OPEN
    assert health.get_states(("heygen", "runwayml"))["heygen"].state is Phase.CLOSED
    assert health.record("runwayml", Outcome.SUCCESS).state is Phase.CLOSED


def test_a_failure_while_half_open_reopens(health, clock):
    for _ in range(5):
        health.record("heygen", Outcome.RATE_LIMITED)
    clock.now = T0 + timedelta(seconds=61)
    reopened = health.record_error("heygen", ProviderUnavailable("503", code="server_error"))
    assert reopened.state is Phase.OPEN
    assert reopened.opened_until == clock.now + timedelta(seconds=60)


def test_a_circuit_another_instance_opened_is_seen_within_a_second(health, firestore_client, settings, clock):
    assert health.get_states(["heygen"])["heygen"].state is Phase.CLOSED
    other = HealthStore(firestore_client, settings, clock)
    for _ in range(5):
        other.record("heygen", Outcome.UNAVAILABLE)
    clock.now = T0 + timedelta(seconds=0.5)
    assert health.get_states(["heygen"])["heygen"].state is Phase.CLOSED  # read half a second ago
    clock.now = T0 + timedelta(seconds=1)
    assert health.get_states(["heygen"])["heygen"].state is Phase.OPEN


def test_content_rejections_never_open_the_circuit(health):
    for _ in range(8):
        health.record_error("heygen", ContentRejected("moderation", code="moderation_failed"))
    assert health.get_states(["heygen"])["heygen"].state is Phase.CLOSED


def test_counters_keep_successes_failures_last_error_and_latency(health, firestore_client, settings):
    health.record("runwayml", Outcome.SUCCESS, latency_ms=200)
    health.record("runwayml", Outcome.SUCCESS, latency_ms=400)
    health.record_error("runwayml", ProviderUnavailable("502", code="bad_gateway"), latency_ms=900)
    counters = health.health("runwayml")["counters"]
    assert (counters["successes"], counters["failures"]) == (2, {"unavailable": 1})
    assert counters["lastErrorCode"] == "bad_gateway"
    assert counters["avgLatencyMs"] == 500.0
    doc = firestore_client.collection(settings.collection("health")).document("runwayml").get().to_dict()
    assert doc["expireAt"] == T0 + timedelta(days=1)


def test_counters_start_again_in_a_new_hour(health, clock):
    health.record("runwayml", Outcome.SUCCESS)
    clock.now = T0 + timedelta(hours=1)
    health.record("runwayml", Outcome.RATE_LIMITED)
    counters = health.health("runwayml")["counters"]
    assert (counters["successes"], counters["failures"]) == (0, {"rate_limited": 1})


def test_concurrent_failures_are_all_counted(firestore_client, settings, clock):
    def fail(_):
        client = firestore.Client(project=TEST_PROJECT)
        try:
            return HealthStore(client, settings, clock).record("heygen", Outcome.UNAVAILABLE)
        finally:
            client.close()

    run_in_threads(6, fail)
    store = HealthStore(firestore_client, settings, clock)
    assert store.health("heygen")["counters"]["failures"] == {"unavailable": 6}
    assert store.get_states(["heygen"])["heygen"].state is Phase.OPEN


def test_successes_on_a_healthy_circuit_are_written_at_most_every_flush_interval(
    health, firestore_client, settings, clock
):
    ref = firestore_client.collection(settings.collection("health")).document("heygen")
    health.get_states(["heygen"])  # this instance has seen the circuit closed
    health.record("heygen", Outcome.SUCCESS, 100.0)
    written = ref.get().to_dict()
    for _ in range(5):
        health.record("heygen", Outcome.SUCCESS, 100.0)
    assert ref.get().to_dict() == written  # held in memory
    clock.now = T0 + timedelta(seconds=11)
    health.record("heygen", Outcome.SUCCESS, 100.0)
    counters = ref.get().to_dict()["counters"]
    assert (counters["successes"], counters["latencyCount"]) == (7, 7)


def test_a_failure_writes_at_once_with_the_successes_held_before_it(health, firestore_client, settings):
    ref = firestore_client.collection(settings.collection("health")).document("heygen")
    health.get_states(["heygen"])
    health.record("heygen", Outcome.SUCCESS)
    health.record("heygen", Outcome.SUCCESS)
    health.record_error("heygen", ProviderUnavailable("down"))
    doc = ref.get().to_dict()
    assert doc["counters"]["successes"] == 2
    assert doc["circuit"]["consecutiveFailures"] == 1


class CountingClient:
    """Google's Firestore client, counting the write batches and transactions it hands out."""

    def __init__(self, client: firestore.Client) -> None:
        self.client, self.writes = client, 0

    def batch(self):
        self.writes += 1
        return self.client.batch()

    def transaction(self, **options):
        self.writes += 1
        return self.client.transaction(**options)

    def __getattr__(self, name: str):
        return getattr(self.client, name)


def test_concurrent_successes_after_the_flush_interval_write_the_record_once(
    firestore_client, settings, clock
):
    counting = CountingClient(firestore_client)
    health = HealthStore(counting, settings, clock)
    health.get_states(["heygen"])
    health.record("heygen", Outcome.SUCCESS, 100.0)
    clock.now = T0 + timedelta(seconds=11)

    run_in_threads(8, lambda _: health.record("heygen", Outcome.SUCCESS, 100.0))

    assert counting.writes == 2  # the first success, then one flush for the eight
    clock.now = T0 + timedelta(seconds=22)
    health.record("heygen", Outcome.SUCCESS, 100.0)
    assert health.health("heygen")["counters"]["successes"] == 10  # none lost, none counted twice


def test_concurrent_acquires_of_one_shard_wait_for_no_lock(firestore_client, clock):
    settings = load_settings({**SMALL, "RUNWAYML_QUOTA": "100/60", "COUNTER_SHARDS": "1"})

    def acquire(_):
        client = firestore.Client(project=TEST_PROJECT)
        try:
            began = time.monotonic()
            allowed = QuotaGuard(client, settings, clock).try_acquire("runwayml").allowed
            return allowed, time.monotonic() - began
        finally:
            client.close()

    results = run_in_threads(8, acquire)
    assert [allowed for allowed, _ in results] == [True] * 8
    # in transactions, contenders wait on each other's locks until the emulator times them out (5 s+)
    assert max(took for _, took in results) < 4.0
    assert QuotaGuard(firestore_client, settings, clock).usage("runwayml")["windows"]["minute"]["count"] == 8


def test_the_rankings_budget_is_read_once_a_second_and_counts_this_instances_acquisitions(
    firestore_client, settings, clock, monkeypatch
):
    guard = QuotaGuard(firestore_client, settings, clock)
    reads = []
    read = guard._read
    monkeypatch.setattr(guard, "_read", lambda now, refs: reads.append(now) or read(now, refs))
    assert guard.assess("runwayml", 1.0)[1] == {}
    assert guard.try_acquire("runwayml", 1.0, {}).allowed
    spend = guard.assess("runwayml", 1.0)[1]
    assert (len(reads), spend) == (1, {"runwayml": 1.0})  # not read again; this instance's own create added
    QuotaGuard(firestore_client, settings, clock).try_acquire("runwayml", 2.0)  # another instance
    clock.now = T0 + timedelta(seconds=1)
    assert guard.assess("runwayml", 1.0)[1] == {"runwayml": 3.0}  # read again after a second
    assert len(reads) == 2
    assert guard.usage("runwayml")["spendUsdToday"] == 3.0  # the monitoring view always reads
