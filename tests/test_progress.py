"""Progress that moves and an estimated finish time: the pure estimate, and poll sequences through
the emulators and the simulators (the store's clock follows the simulators' clock)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs import progress
from jobs.progress import LIVE_MAX, estimate
from jobs.records import Attempt, AttemptStatus, Job, TaskRecord
from jobs.views import user_view
from providers import registry
from providers.base import Status

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HEYGEN_S = registry.spec("heygen").typical_render_s
LIVE = st.sampled_from([Status.QUEUED, Status.PROCESSING])
PERCENT = st.floats(min_value=0, max_value=100, allow_nan=False)
SECONDS = st.floats(min_value=0, max_value=1e6, allow_nan=False)
TYPICAL = st.floats(min_value=1, max_value=3600, allow_nan=False)


# -- the estimate (pure) ----------------------------------------------------------------------------


@given(LIVE, PERCENT, SECONDS, TYPICAL)
def test_a_live_estimate_is_below_100_and_finishes_in_the_future(status, reported, elapsed, typical):
    guess = estimate(status, reported, elapsed, typical)
    assert 0 <= guess.progress <= LIVE_MAX < 100
    assert guess.remaining_s >= 0


@given(SECONDS, SECONDS, TYPICAL)
def test_without_reported_progress_it_grows_with_time(earlier, later, typical):
    earlier, later = sorted((earlier, later))
    assert (
        estimate(Status.PROCESSING, 0, earlier, typical).progress
        <= estimate(Status.PROCESSING, 0, later, typical).progress
    )


def test_a_heygen_render_moves_along_its_typical_time():
    seen = [estimate(Status.PROCESSING, 0, HEYGEN_S * f, HEYGEN_S).progress for f in (0.1, 0.5, 1, 1.5, 3)]
    assert seen == sorted(seen)
    assert len(set(seen)) == len(seen)
    assert seen[2] == pytest.approx(89.1, abs=0.1)  # at its typical time
    assert seen[-1] < 100


def test_reported_progress_is_used_and_its_pace_gives_the_finish():
    guess = estimate(Status.PROCESSING, 25, 30, 60)
    assert (guess.progress, guess.remaining_s) == (25, 90)  # 25 % in 30 s: 75 % in 90 s


def test_too_little_reported_progress_to_tell_a_pace_falls_back_on_the_typical_time():
    assert estimate(Status.PROCESSING, 0.5, 10, 60) == progress.Estimate(0.5, 50)


def test_reported_100_before_the_end_is_held_at_99():
    assert estimate(Status.PROCESSING, 100, 30, 60).progress == LIVE_MAX


def test_an_overdue_task_is_expected_soon_not_in_the_past():
    assert estimate(Status.PROCESSING, 0, 2 * HEYGEN_S, HEYGEN_S).remaining_s == HEYGEN_S / 10


def test_a_queued_task_is_expected_after_its_typical_time():
    assert estimate(Status.QUEUED, 0, 0, HEYGEN_S).remaining_s == HEYGEN_S


# -- applied to a job (pure) ------------------------------------------------------------------------


def job_and_task(status: Status, job_progress: float, task_progress: float) -> tuple[Job, TaskRecord]:
    attempt = Attempt("j-a1", 1, "heygen", AttemptStatus.ACTIVE, "v1", started_at=T0)
    job = Job("j", "alice", status, progress=job_progress, attempts=(attempt,))
    task = TaskRecord("v1", "heygen", "j", "j-a1", status, progress=task_progress, created_at=T0)
    return job, task


@given(LIVE, PERCENT, PERCENT, SECONDS)
def test_a_live_job_never_goes_back_and_never_shows_100(status, stored, reported, elapsed):
    stored = min(stored, LIVE_MAX)  # what a live job can hold
    job, task = job_and_task(status, stored, reported)
    now = T0 + timedelta(seconds=elapsed)

    after = progress.advanced(job, dataclasses.replace(job, progress=max(stored, reported)), task, now, 600)

    assert stored <= after.progress <= LIVE_MAX
    assert after.estimated_ready_at is not None
    assert after.estimated_ready_at >= now


def test_an_ended_job_is_left_as_it_is():
    job, task = job_and_task(Status.COMPLETED, 100, 100)
    assert progress.advanced(job, job, task, T0 + timedelta(minutes=5), 600) == job


def test_a_reading_of_an_earlier_attempt_moves_nothing():
    job, task = job_and_task(Status.PROCESSING, 10, 0)
    old = dataclasses.replace(task, attempt_id="j-a0")
    assert progress.advanced(job, job, old, T0 + timedelta(minutes=5), 600) == job


# -- poll sequences on the emulators ----------------------------------------------------------------


def follow_simulated_time(stack) -> None:
    """The store's clock (task ages, estimates) moves with the simulators' clock."""
    start = datetime.now(UTC)
    stack.deps.store.clock = lambda: start + timedelta(seconds=stack.clock.now())


def watch(stack, job_id: str, step_s: float) -> list[tuple[str, float, datetime | None, datetime]]:
    """(status, progress, estimatedReadyAt, now) of the owner's stored view after each round of polls."""
    rows = []
    for _ in range(60):
        view = stack.deps.store.user_view_ref(job_id).get().to_dict()
        assert view == {**user_view(stack.deps.store.get_job(job_id)), **_stamps(view)}
        rows.append((view["status"], view["progress"], view["estimatedReadyAt"], stack.deps.store.clock()))
        if view["status"] not in ("queued", "processing"):
            return rows
        stack.deliver_polls(advance_s=step_s)
    raise AssertionError("the job did not end")


def _stamps(view: dict) -> dict:
    return {"updatedAt": view["updatedAt"], "expireAt": view["expireAt"]}


def assert_moves_forward_with_an_eta(rows) -> None:
    progresses = [p for _, p, _, _ in rows]
    assert progresses == sorted(progresses), "progress went back"
    *live, last = rows
    assert all(p < 100 for _, p, _, _ in live)
    assert all(eta is not None and eta >= now - timedelta(seconds=1) for _, _, eta, now in live)
    assert (last[0], last[1], last[2]) == ("completed", 100, None)


def test_a_heygen_job_moves_with_time_and_always_says_when(stack):
    follow_simulated_time(stack)
    job_id = stack.generate().get_json()["jobId"]

    rows = watch(stack, job_id, step_s=30)

    assert_moves_forward_with_an_eta(rows)
    processing = {p for status, p, _, _ in rows if status == "processing"}
    assert len(processing) >= 5  # no fixed midpoint: it moves on every poll
    etas = [eta for status, _, eta, _ in rows if status == "processing"]
    assert etas == sorted(etas)  # its typical time from the start, then "soon" once overdue


def test_a_runwayml_job_shows_the_progress_it_reports(stack):
    follow_simulated_time(stack)
    job_id = stack.generate(provider="runwayml").get_json()["jobId"]

    rows = watch(stack, job_id, step_s=5)

    assert_moves_forward_with_an_eta(rows)
    task_id = stack.deps.store.get_job(job_id).current_attempt.task_id
    assert stack.deps.store.get_task("runwayml", task_id).poll_count >= 2
    assert any(0 < p < 99 for status, p, _, _ in rows if status == "processing")
