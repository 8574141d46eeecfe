"""The pure job model: allowed transitions, monotone progress, final terminal states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs import rules
from jobs.records import Attempt, AttemptStatus, Job, TaskRecord
from jobs.rules import Verdict
from providers.base import TERMINAL_STATUSES, ProviderSnapshot, Status

statuses = st.sampled_from(list(Status))
progress = st.floats(min_value=0, max_value=100, allow_nan=False)


@pytest.mark.parametrize(
    ("old", "new", "allowed"),
    [
        (Status.QUEUED, Status.PROCESSING, True),
        (Status.QUEUED, Status.COMPLETED, True),
        (Status.PROCESSING, Status.QUEUED, False),
        (Status.PROCESSING, Status.TIMED_OUT, True),
        (Status.COMPLETED, Status.FAILED, False),
        (Status.CANCELLED, Status.PROCESSING, False),
        (Status.QUEUED, Status.QUEUED, True),
    ],
)
def test_transition_table(old, new, allowed):
    assert rules.can_transition(old, new) is allowed


def test_a_reading_with_lower_progress_is_stale():
    decision = rules.decide(Status.PROCESSING, 50, Status.PROCESSING, 30)
    assert decision.verdict is Verdict.STALE
    assert decision.progress == 50


def test_a_status_advance_keeps_the_higher_progress():
    decision = rules.decide(Status.PROCESSING, 60, Status.FAILED, 0)
    assert (decision.verdict, decision.status, decision.progress) == (Verdict.APPLY, Status.FAILED, 60)


def test_completion_sets_progress_to_100():
    assert rules.decide(Status.PROCESSING, 40, Status.COMPLETED, 0).progress == 100


def test_anything_after_a_terminal_state_is_final():
    assert rules.decide(Status.COMPLETED, 100, Status.PROCESSING, 10).verdict is Verdict.FINAL


def test_a_poll_at_or_below_the_last_applied_is_stale():
    assert rules.is_stale_poll(3, 3)
    assert rules.is_stale_poll(2, 3)
    assert not rules.is_stale_poll(4, 3)
    assert not rules.is_stale_poll(None, 3)


def test_next_candidate_skips_providers_already_tried():
    tried = [Attempt("j-a1", 1, "heygen", AttemptStatus.FAILED)]
    assert rules.next_candidate(("heygen", "runwayml"), tried) == "runwayml"
    tried.append(Attempt("j-a2", 2, "runwayml", AttemptStatus.FAILED))
    assert rules.next_candidate(("heygen", "runwayml"), tried) is None


@given(statuses, progress, statuses, progress)
def test_decide_never_leaves_a_terminal_state(old, old_p, new, new_p):
    decision = rules.decide(old, old_p, new, new_p)
    if old in TERMINAL_STATUSES:
        assert decision.status == old
        assert not decision.changes


@given(statuses, progress, statuses, progress)
def test_decide_never_lowers_progress(old, old_p, new, new_p):
    assert rules.decide(old, old_p, new, new_p).progress >= old_p


@given(statuses, progress, statuses, progress)
def test_decide_only_applies_allowed_transitions(old, old_p, new, new_p):
    decision = rules.decide(old, old_p, new, new_p)
    if decision.changes:
        assert rules.can_transition(old, decision.status)


@given(st.lists(st.tuples(statuses, progress), max_size=30))
def test_any_sequence_of_readings_moves_only_forward(readings):
    status, prog, seen_terminal = Status.QUEUED, 0.0, None
    for new, new_p in readings:
        decision = rules.decide(status, prog, new, new_p)
        assert decision.progress >= prog
        if seen_terminal is not None:
            assert decision.status == seen_terminal
        status, prog = decision.status, decision.progress
        if status in TERMINAL_STATUSES:
            seen_terminal = status


def test_no_attempt_begins_once_the_deadline_has_passed():
    deadline = datetime(2026, 1, 1, tzinfo=UTC)
    job = Job("j", "u", Status.QUEUED, candidates=("heygen",), deadline_at=deadline)
    assert rules.begin_attempt(job, "heygen", deadline - timedelta(seconds=1)) is not None
    assert rules.begin_attempt(job, "heygen", deadline) is None


def test_a_poll_keeps_what_the_polling_schedule_needs_of_its_reading():
    created = datetime(2026, 1, 1, tzinfo=UTC)
    task = TaskRecord("t1", "runwayml", "j1", "j1-a1", Status.QUEUED, created_at=created)

    def polled(task: TaskRecord, status: Status, progress: float, at_s: float, poll: int | None = 1):
        snap = ProviderSnapshot("t1", status, "X", progress=progress)
        decision = rules.decide(task.status, task.progress, status, progress)
        return rules.task_after(task, decision, snap, poll, created + timedelta(seconds=at_s))

    task = polled(task, Status.QUEUED, 0.0, 16.0)
    assert (task.queued_until_s, task.first_reading_s, task.last_reading_s) == (16.0, None, None)
    task = polled(task, Status.PROCESSING, 20.0, 31.0, poll=2)
    assert (task.first_reading_s, task.first_progress) == (31.0, 20.0)
    assert (task.last_reading_s, task.last_progress) == (31.0, 20.0)
    task = polled(task, Status.PROCESSING, 60.0, 41.0, poll=3)
    assert (task.first_reading_s, task.first_progress) == (31.0, 20.0)  # the first stays
    assert (task.last_reading_s, task.last_progress, task.queued_until_s) == (41.0, 60.0, 16.0)
    # a status check's reading is off the polls' grid: it moves neither figure
    refreshed = polled(task, Status.PROCESSING, 70.0, 43.0, poll=None)
    assert refreshed.progress == 70.0
    assert (refreshed.first_reading_s, refreshed.last_reading_s, refreshed.last_progress) == (
        31.0,
        41.0,
        60.0,
    )
    fresh = TaskRecord("t1", "runwayml", "j1", "j1-a1", Status.QUEUED, created_at=created)
    assert polled(fresh, Status.PROCESSING, 50.0, 20.0, poll=None).first_reading_s is None
