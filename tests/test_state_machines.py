"""Stateful property tests: the job state machine and the request budget, each against a reference.

Hypothesis drives random sequences of operations; after every step the system under test must agree
with a small reference model written independently here (not derived from the code under test):

- `JobRecordMachine` -- `jobs.rules.decide` / `can_transition` over random readings (pure).
- `TaskStoreMachine` -- `JobStore.apply_snapshot` on one provider task in the Firestore emulator:
  numbered, unnumbered, duplicate and reordered readings; the task and its job only move forward.
- `QuotaMachine` -- `providers.quota.decide` and `jobs.guards.QuotaGuard` on the emulator against a
  plain counter per fixed window, with a clock the machine moves.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from config import load_settings
from jobs import rules
from jobs.guards import QuotaGuard
from jobs.records import JobRequest
from jobs.rules import Verdict
from jobs.store import JobStore, NewJob
from providers import quota
from providers.base import CreateResult, ProviderSnapshot, Status
from tests.conftest import TEST_PROJECT

TERMINAL = {Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT}
RANK = {Status.QUEUED: 0, Status.PROCESSING: 1} | dict.fromkeys(TERMINAL, 2)
readings = st.tuples(
    st.sampled_from(list(Status)),
    st.one_of(st.floats(allow_nan=False), st.integers(-10, 200).map(float)),
)
# the store machine runs few steps, so it sees the active statuses more often than the terminal ones
store_readings = st.tuples(
    st.sampled_from(
        [Status.QUEUED, Status.PROCESSING] * 3 + [Status.COMPLETED, Status.FAILED, Status.CANCELLED]
    ),
    st.integers(-5, 105).map(float),
)
PURE = settings(max_examples=150, stateful_step_count=25, deadline=None, database=None)
EMULATED = settings(
    max_examples=12,
    stateful_step_count=12,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# ---------------------------------------------------------------------------------------------------
# The reference: what a reading does to a record, written from the design's rules


def reference_apply(old: Status, old_p: float, new: Status, new_p: float) -> tuple[str, Status, float]:
    """(verdict, status, progress) by the design: terminal is final, no backward move, no lower progress."""
    if old in TERMINAL:
        return "final", old, old_p
    if new not in TERMINAL and RANK[new] < RANK[old]:
        return "backward", old, old_p
    p = 100.0 if new is Status.COMPLETED else min(100.0, max(0.0, new_p))
    if new is old and p < old_p:
        return "stale", old, old_p
    if new is old and p == old_p:
        return "noop", old, old_p
    return "apply", new, max(p, old_p)


def test_can_transition_agrees_with_the_reference_for_every_pair():
    for old, new in itertools.product(Status, Status):
        expected = old not in TERMINAL and (new in TERMINAL or RANK[new] >= RANK[old])
        assert rules.can_transition(old, new) is expected, (old, new)


class JobRecordMachine(RuleBasedStateMachine):
    """A record fed random readings: `decide` must match the reference, and only move forward."""

    def __init__(self) -> None:
        super().__init__()
        self.status, self.progress = Status.QUEUED, 0.0
        self.history: list[tuple[Status, float]] = [(self.status, self.progress)]

    @rule(reading=readings)
    def apply_a_reading(self, reading: tuple[Status, float]) -> None:
        new, new_p = reading
        verdict, status, progress = reference_apply(self.status, self.progress, new, new_p)
        decision = rules.decide(self.status, self.progress, new, new_p)
        assert (str(decision.verdict), decision.status, decision.progress) == (verdict, status, progress)
        assert decision.changes is (verdict == "apply")
        if decision.changes:
            self.status, self.progress = decision.status, decision.progress
            self.history.append((self.status, self.progress))

    @invariant()
    def only_forward(self) -> None:
        for (s1, p1), (s2, p2) in itertools.pairwise(self.history):
            assert RANK[s2] >= RANK[s1]
            assert p2 >= p1
            assert s1 not in TERMINAL, "a terminal record changed"


def test_the_job_model_only_moves_forward():
    run_state_machine_as_test(JobRecordMachine, settings=PURE)


# ---------------------------------------------------------------------------------------------------
# The store: one provider task of one job, readings applied through Firestore transactions


def task_store_machine(store: JobStore) -> type[RuleBasedStateMachine]:
    counter = itertools.count()

    class TaskStoreMachine(RuleBasedStateMachine):
        @initialize()
        def a_job_with_one_runwayml_task(self) -> None:
            n = next(counter)
            new = NewJob(
                owner_uid="sm-user",
                idempotency_key=f"sm-{n}",
                request=JobRequest(title=str(n)),
                candidates=("runwayml",),
            )
            job, _ = store.create_job(new)
            attempt = store.begin_attempt(job.job_id, "runwayml")
            self.job_id, self.task_id = job.job_id, f"sm-task-{n}"
            store.record_submission(job.job_id, attempt.attempt_id, CreateResult(self.task_id, "gen4.5"))
            self.ref = (Status.QUEUED, 0.0)
            self.last_poll = 0
            self.job_history: list[tuple[Status, float]] = [(Status.QUEUED, 0.0)]

        @rule(reading=store_readings, poll=st.one_of(st.none(), st.integers(0, 12)))
        def apply_a_reading(self, reading: tuple[Status, float], poll: int | None) -> None:
            new, new_p = reading
            snapshot = ProviderSnapshot(self.task_id, new, provider_status=str(new), progress=new_p)
            outcome = store.apply_snapshot("runwayml", self.task_id, snapshot, poll)
            if poll is not None and poll <= self.last_poll:
                assert outcome.verdict is Verdict.DUPLICATE
                return
            if poll is not None:
                self.last_poll = poll
            verdict, status, progress = reference_apply(*self.ref, new, new_p)
            assert str(outcome.verdict) == verdict
            self.ref = (status, progress)

        @invariant()
        def the_records_agree_with_the_reference(self) -> None:
            task = store.get_task("runwayml", self.task_id)
            job = store.get_job(self.job_id)
            assert (task.status, task.progress, task.last_poll_number) == (*self.ref, self.last_poll)
            assert job.status is task.status
            self.job_history.append((job.status, job.progress))
            for (s1, p1), (s2, p2) in itertools.pairwise(self.job_history):
                assert RANK[s2] >= RANK[s1]
                assert p2 >= p1
                assert s1 not in TERMINAL or (s2, p2) == (s1, p1)

    return TaskStoreMachine


def test_a_task_and_its_job_only_move_forward_in_the_store(firestore_client, settings):
    run_state_machine_as_test(task_store_machine(JobStore(firestore_client, settings)), settings=EMULATED)


# ---------------------------------------------------------------------------------------------------
# The request budget


LIMITS = {"runwayml": "2/60,4/3600", "heygen": "1/60,3/3600,5/86400"}
T0 = datetime(2030, 1, 1, tzinfo=UTC)


class ReferenceBudget:
    """Counts per (provider, window length, window number): the obvious way to keep a budget."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int, int], int] = {}
        self.windows = {
            p: [tuple(map(int, w.split("/")))[::-1] for w in s.split(",")] for p, s in LIMITS.items()
        }

    def full(self, provider: str, now: datetime) -> list[tuple[int, datetime]]:
        """(window seconds, end) of every full window at `now`."""
        elapsed = int((now - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
        full = []
        for seconds, limit in self.windows[provider]:
            bucket = elapsed // seconds
            if self.counts.get((provider, seconds, bucket), 0) >= limit:
                end = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=(bucket + 1) * seconds)
                full.append((seconds, end))
        return full

    def take(self, provider: str, now: datetime) -> None:
        elapsed = int((now - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
        for seconds, _ in self.windows[provider]:
            key = (provider, seconds, elapsed // seconds)
            self.counts[key] = self.counts.get(key, 0) + 1


def quota_machine(firestore_client) -> type[RuleBasedStateMachine]:
    counter = itertools.count()

    class QuotaMachine(RuleBasedStateMachine):
        @initialize(offset_s=st.integers(0, 86400 * 3))
        def a_fresh_budget(self, offset_s: int) -> None:
            env = {"GOOGLE_CLOUD_PROJECT": TEST_PROJECT, "SUPPORT_COLLECTION_PREFIX": f"sm{next(counter)}_"}
            env |= {"RUNWAYML_QUOTA": LIMITS["runwayml"], "HEYGEN_QUOTA": LIMITS["heygen"]}
            self.now = T0 + timedelta(seconds=offset_s)
            self.guard = QuotaGuard(firestore_client, load_settings(env), clock=lambda: self.now)
            self.ref = ReferenceBudget()

        @rule(provider=st.sampled_from(sorted(LIMITS)))
        def acquire(self, provider: str) -> None:
            full = self.ref.full(provider, self.now)
            peek = self.guard.check(provider)
            decision = self.guard.try_acquire(provider)
            assert decision.allowed is peek.allowed is (not full)
            if full:
                seconds, end = max(full, key=lambda f: f[1])
                assert decision.retry_after_s == (end - self.now).total_seconds() > 0
                assert decision.window == quota.Window(seconds, 0).name
            else:
                self.ref.take(provider, self.now)

        @rule(seconds=st.sampled_from([1, 17, 59, 60, 61, 3599, 3600, 86400]))
        def time_passes(self, seconds: int) -> None:
            self.now += timedelta(seconds=seconds)

        @rule(provider=st.sampled_from(sorted(LIMITS)))
        def usage_matches_the_counter(self, provider: str) -> None:
            windows = self.guard.usage(provider)["windows"]
            elapsed = int((self.now - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
            for seconds, limit in self.ref.windows[provider]:
                count = self.ref.counts.get((provider, seconds, elapsed // seconds), 0)
                view = windows[quota.Window(seconds, limit).name]
                assert (view["count"], view["remaining"]) == (count, max(0, limit - count))

    return QuotaMachine


@pytest.mark.parametrize(
    ("counts", "now", "allowed"),
    [({}, T0, True), ({"minute": 2}, T0, False), ({"hour": 4}, T0 + timedelta(seconds=30), False)],
)
def test_decide_examples_agree_with_the_reference(counts, now, allowed):
    assert quota.decide(counts, quota.parse_limits(LIMITS["runwayml"]), now).allowed is allowed


def test_the_request_budget_matches_a_reference_counter(firestore_client):
    run_state_machine_as_test(quota_machine(firestore_client), settings=EMULATED)
