"""The job store against Google's Firestore emulator: idempotency, transactions, forward-only state."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from google.cloud import firestore

from config import load_settings
from jobs.records import AttemptStatus, JobRequest
from jobs.rules import Verdict
from jobs.store import IdempotencyConflict, JobStore, NewJob
from jobs.txn import Change
from providers.base import CreateResult, ProviderSnapshot, Status
from tests.conftest import TEST_PROJECT

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def new_job(owner="user-1", key="key-1", **request) -> NewJob:
    return NewJob(
        owner_uid=owner,
        idempotency_key=key,
        request=JobRequest(**request),
        candidates=("heygen", "runwayml"),
    )


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(firestore_client, settings, clock):
    return JobStore(firestore_client, settings, clock)


def run_in_threads(count, target):
    """Run `target(i)` in `count` threads released together; return their results in order."""
    results: list = [None] * count
    errors: list = []
    barrier = threading.Barrier(count)

    def worker(i):
        barrier.wait()
        try:
            results[i] = target(i)
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def submitted_job(store, provider="runwayml", task_id="task-1"):
    job, _ = store.create_job(new_job())
    attempt = store.begin_attempt(job.job_id, provider)
    store.record_submission(job.job_id, attempt.attempt_id, CreateResult(task_id=task_id, model="gen4.5"))
    return job.job_id, attempt


def snap(status, progress=0.0, task_id="task-1", **kw):
    return ProviderSnapshot(
        task_id=task_id, status=status, provider_status=str(status).upper(), progress=progress, **kw
    )


# -- idempotent create ----------------------------------------------------------------------------


def test_same_owner_and_key_return_the_same_job(store):
    first, created_first = store.create_job(new_job())
    again, created_again = store.create_job(new_job())
    assert (created_first, created_again) == (True, False)
    assert again.job_id == first.job_id


def test_the_same_key_from_another_owner_is_another_job(store):
    mine, _ = store.create_job(new_job(owner="user-1"))
    theirs, created = store.create_job(new_job(owner="user-2"))
    assert created
    assert theirs.job_id != mine.job_id


def test_reusing_a_key_for_a_different_request_is_a_conflict(store):
    store.create_job(new_job(style="professional"))
    with pytest.raises(IdempotencyConflict):
        store.create_job(new_job(style="energetic"))


def test_concurrent_duplicate_creates_make_one_job(firestore_client, settings):
    def create(_):
        client = firestore.Client(project=TEST_PROJECT)
        return JobStore(client, settings).create_job(new_job())

    results = run_in_threads(8, create)
    assert sum(created for _, created in results) == 1
    assert len({job.job_id for job, _ in results}) == 1
    assert len(list(firestore_client.collection(settings.jobs_collection).stream())) == 1


def test_writes_set_updated_at_and_expire_at(store, firestore_client, settings):
    job, _ = store.create_job(new_job())
    doc = firestore_client.collection(settings.jobs_collection).document(job.job_id).get().to_dict()
    assert isinstance(doc["updatedAt"], datetime)
    assert doc["expireAt"] == T0 + timedelta(seconds=settings.job_deadline_s, days=settings.retention_days)


# -- attempts -------------------------------------------------------------------------------------


def test_only_one_concurrent_caller_may_begin_an_attempt(store, firestore_client, settings, clock):
    job, _ = store.create_job(new_job())

    def begin(_):
        client = firestore.Client(project=TEST_PROJECT)
        return JobStore(client, settings, clock).begin_attempt(job.job_id, "heygen")

    results = run_in_threads(6, begin)
    assert len([a for a in results if a is not None]) == 1
    assert len(store.get_job(job.job_id).attempts) == 1


def test_a_job_created_with_its_first_attempt_holds_the_reservation(store):
    job, created = store.create_job(new_job(), begin=True)
    attempt = job.current_attempt
    assert created
    assert (attempt.provider, str(attempt.status), job.status) == ("heygen", "submitting", Status.QUEUED)
    assert store.get_job(job.job_id).current_attempt == attempt  # stored with it
    assert store.begin_attempt(job.job_id, "heygen") is None  # no second reservation
    again, created = store.create_job(new_job(), begin=True)  # a repeat reserves nothing more
    assert (created, again.attempts) == (False, (attempt,))


def test_submission_writes_the_task_record_and_activates_the_attempt(store):
    job_id, attempt = submitted_job(store)
    task = store.get_task("runwayml", "task-1")
    assert (task.job_id, task.attempt_id, task.status) == (job_id, attempt.attempt_id, Status.QUEUED)
    assert store.get_job(job_id).current_attempt.status is AttemptStatus.ACTIVE


def test_a_fallback_worthy_failure_names_the_next_provider_and_keeps_the_job_alive(store):
    job, _ = store.create_job(new_job())
    attempt = store.begin_attempt(job.job_id, "heygen")
    error = {"code": "insufficient_credits", "message": "wallet empty"}
    assert (
        store.record_attempt_failure(job.job_id, attempt.attempt_id, error, fallback_allowed=True)
        == "runwayml"
    )
    assert store.get_job(job.job_id).status is Status.QUEUED


def test_a_failure_without_fallback_fails_the_job(store):
    job, _ = store.create_job(new_job())
    attempt = store.begin_attempt(job.job_id, "heygen")
    error = {"code": "content_rejected", "message": "moderation"}
    assert store.record_attempt_failure(job.job_id, attempt.attempt_id, error, fallback_allowed=False) is None
    stored = store.get_job(job.job_id)
    assert stored.status is Status.FAILED
    assert stored.error["code"] == "content_rejected"


# -- snapshots ------------------------------------------------------------------------------------


def test_snapshots_drive_the_job_to_completion(store):
    job_id, _ = submitted_job(store)
    assert (
        store.apply_snapshot("runwayml", "task-1", snap(Status.PROCESSING, 40), 1).job_status
        is Status.PROCESSING
    )
    done = snap(Status.COMPLETED, output_urls=("https://x/video.mp4",), cost_usd=0.6)
    outcome = store.apply_snapshot("runwayml", "task-1", done, 2)
    assert (outcome.verdict, outcome.job_status) == (Verdict.APPLY, Status.COMPLETED)
    job = store.get_job(job_id)
    assert job.progress == 100
    assert job.output["videoUrls"] == ["https://x/video.mp4"]
    assert job.actual_cost_usd == 0.6
    assert job.current_attempt.status is AttemptStatus.SUCCEEDED
    # without a bucket the provider's link is the output, marked with the moment it stops working
    assert job.output["source"] == "provider"
    assert job.output["expiresAt"] == T0 + timedelta(hours=24)


def test_a_stale_snapshot_after_a_terminal_one_changes_nothing(store):
    job_id, _ = submitted_job(store)
    store.apply_snapshot("runwayml", "task-1", snap(Status.COMPLETED), 1)
    outcome = store.apply_snapshot("runwayml", "task-1", snap(Status.PROCESSING, 10), 2)
    assert outcome.verdict is Verdict.FINAL
    assert store.get_job(job_id).status is Status.COMPLETED
    assert store.get_task("runwayml", "task-1").status is Status.COMPLETED


def test_progress_regression_is_refused(store):
    job_id, _ = submitted_job(store)
    store.apply_snapshot("runwayml", "task-1", snap(Status.PROCESSING, 50), 1)
    outcome = store.apply_snapshot("runwayml", "task-1", snap(Status.PROCESSING, 30), 2)
    assert outcome.verdict is Verdict.STALE
    assert store.get_task("runwayml", "task-1").progress == 50
    assert store.get_job(job_id).progress == 50


def test_a_backward_move_is_refused(store):
    submitted_job(store)
    store.apply_snapshot("runwayml", "task-1", snap(Status.PROCESSING, 20), 1)
    outcome = store.apply_snapshot("runwayml", "task-1", snap(Status.QUEUED), 2)
    assert outcome.verdict is Verdict.BACKWARD
    assert store.get_task("runwayml", "task-1").status is Status.PROCESSING


def test_a_duplicate_or_older_poll_is_a_no_op(store):
    submitted_job(store)
    store.apply_snapshot("runwayml", "task-1", snap(Status.PROCESSING, 20), 3)
    assert (
        store.apply_snapshot("runwayml", "task-1", snap(Status.PROCESSING, 90), 3).verdict
        is Verdict.DUPLICATE
    )
    assert (
        store.apply_snapshot("runwayml", "task-1", snap(Status.PROCESSING, 90), 2).verdict
        is Verdict.DUPLICATE
    )
    assert store.get_task("runwayml", "task-1").progress == 20


def test_a_failed_task_with_fallback_allowed_hands_over_to_the_next_provider(store):
    job_id, _ = submitted_job(store, provider="heygen")
    failed = snap(Status.FAILED, failure_code="RENDER_ERROR", fallback_allowed=True)
    outcome = store.apply_snapshot("heygen", "task-1", failed, 1)
    assert outcome.fallback_to == "runwayml"
    assert store.get_job(job_id).status is Status.QUEUED
    assert store.begin_attempt(job_id, "runwayml") is not None


def test_concurrent_conflicting_snapshots_have_exactly_one_winner(firestore_client, settings, store):
    job_id, _ = submitted_job(store)
    readings = [snap(Status.COMPLETED), snap(Status.FAILED, failure_code="INTERNAL")] * 2

    def apply(i):
        client = firestore.Client(project=TEST_PROJECT)
        return JobStore(client, settings).apply_snapshot("runwayml", "task-1", readings[i])

    outcomes = run_in_threads(len(readings), apply)
    winners = [o for o in outcomes if o.verdict is Verdict.APPLY]
    assert len(winners) == 1
    task = store.get_task("runwayml", "task-1")
    assert task.status == winners[0].task_status
    assert task.poll_count == len(readings)  # no lost update: every reading was counted
    assert store.get_job(job_id).status == winners[0].job_status


def test_cancel_and_completion_racing_leave_one_consistent_end(firestore_client, settings, store):
    job_id, _ = submitted_job(store)

    def act(i):
        local = JobStore(firestore.Client(project=TEST_PROJECT), settings)
        if i == 0:
            return local.finish_job(job_id, Status.CANCELLED)[1]
        return (
            local.apply_snapshot("runwayml", "task-1", snap(Status.COMPLETED)).job_status is Status.COMPLETED
        )

    cancelled, completed = run_in_threads(2, act)
    assert cancelled != completed
    assert store.get_job(job_id).status is (Status.CANCELLED if cancelled else Status.COMPLETED)


def test_a_cancel_between_a_readings_read_and_its_commit_wins(store, monkeypatch):
    """The reading's change read the job running; the cancel moved it: the change runs again and
    sees the cancel (no lock was held, and nothing of the first run was written)."""
    job_id, _ = submitted_job(store)
    commit, cancels = Change.commit, []

    def cancel_first(change):
        if not cancels:
            cancels.append("cancelling")  # the cancel's own commit goes straight through
            cancels[0] = store.finish_job(job_id, Status.CANCELLED)[1]
        commit(change)

    monkeypatch.setattr(Change, "commit", cancel_first)
    outcome = store.apply_snapshot("runwayml", "task-1", snap(Status.COMPLETED))
    assert cancels == [True]
    assert (outcome.job_status, store.get_job(job_id).status) == (Status.CANCELLED, Status.CANCELLED)
    assert store.get_task("runwayml", "task-1").poll_count == 1  # one reading, counted once


def test_an_instance_changes_a_job_it_wrote_without_reading_it(store, monkeypatch):
    job, _ = store.create_job(new_job())
    reads = []
    get = Change.get
    monkeypatch.setattr(Change, "get", lambda change, ref: reads.append(ref.path) or get(change, ref))
    attempt = store.begin_attempt(job.job_id, "runwayml")
    store.record_submission(job.job_id, attempt.attempt_id, CreateResult(task_id="task-1", model="gen4.5"))
    assert reads == []
    known, stored = store.last_written(job.job_id), store.get_job(job.job_id)
    assert replace(known, updated_at=None) == replace(stored, updated_at=None)  # it knows what is stored
    assert abs((known.updated_at - stored.updated_at).total_seconds()) < 1  # its commit time


def test_what_another_instance_wrote_meanwhile_is_read_not_assumed(firestore_client, settings, store):
    """This instance created the job; another cancelled it: the begin decided from the known job
    loses the race, runs again on what is stored, and begins nothing."""
    job, _ = store.create_job(new_job())
    other = JobStore(firestore.Client(project=TEST_PROJECT), settings)
    assert other.finish_job(job.job_id, Status.CANCELLED)[1]
    assert store.begin_attempt(job.job_id, "runwayml") is None
    assert store.get_job(job.job_id).status is Status.CANCELLED
    assert store.last_written(job.job_id) is None  # the stale entry was dropped


def test_a_known_job_that_leads_to_no_write_is_read_again(firestore_client, settings, store):
    """A stale known job whose decision writes nothing cannot be confirmed: the change reads."""
    job_id, attempt = submitted_job(store)
    other = JobStore(firestore.Client(project=TEST_PROJECT), settings)
    error = {"code": "provider_unavailable"}
    following = other.record_attempt_failure(job_id, attempt.attempt_id, error, fallback_allowed=True)
    assert following == "heygen"
    begun = store.begin_attempt(job_id, following)  # the known job still has its attempt open
    assert begun is not None
    assert begun.provider == "heygen"
    assert store.get_job(job_id).current_attempt.attempt_id == begun.attempt_id


def test_finishing_a_terminal_job_changes_nothing(store):
    job, _ = store.create_job(new_job())
    store.finish_job(job.job_id, Status.CANCELLED)
    after, changed = store.finish_job(job.job_id, Status.TIMED_OUT)
    assert not changed
    assert after.status is Status.CANCELLED


# -- queries --------------------------------------------------------------------------------------


def test_jobs_for_owner_lists_only_that_owner_newest_first(store, clock):
    for i in range(3):
        clock.now = T0 + timedelta(minutes=i)
        store.create_job(new_job(owner="user-1", key=f"k{i}"))
    store.create_job(new_job(owner="user-2", key="k0"))
    jobs = store.jobs_for_owner("user-1")
    assert [j.owner_uid for j in jobs] == ["user-1"] * 3
    assert [j.request.style for j in jobs] == ["professional"] * 3
    assert [j.created_at for j in jobs] == sorted((j.created_at for j in jobs), reverse=True)


def test_jobs_past_deadline_finds_only_active_overdue_jobs(store, clock, settings):
    overdue, _ = store.create_job(new_job(key="old"))
    done, _ = store.create_job(new_job(key="done"))
    store.finish_job(done.job_id, Status.CANCELLED)
    clock.now = T0 + timedelta(minutes=1)
    store.create_job(new_job(key="fresh"))
    later = T0 + timedelta(seconds=settings.job_deadline_s + 30)
    assert [j.job_id for j in store.iter_jobs_past_deadline(later)] == [overdue.job_id]


def test_jobs_by_status_filters_on_status(store):
    a, _ = store.create_job(new_job(key="a"))
    b, _ = store.create_job(new_job(key="b"))
    store.finish_job(b.job_id, Status.FAILED, {"code": "x", "message": "y"})
    assert [j.job_id for j in store.jobs_by_status([Status.FAILED])] == [b.job_id]
    assert [j.job_id for j in store.jobs_by_status([Status.QUEUED])] == [a.job_id]


def test_get_jobs_reads_many_at_once_and_omits_missing(store):
    ids = [store.create_job(new_job(key=f"k{i}"))[0].job_id for i in range(5)]
    found = store.get_jobs([*ids, "missing"])
    assert set(found) == set(ids)


# -- finalize (with a bucket) ---------------------------------------------------------------------


@pytest.fixture
def storing(firestore_client, clock):
    settings = load_settings({"GOOGLE_CLOUD_PROJECT": TEST_PROJECT, "STORAGE_BUCKET": "videos"})
    return JobStore(firestore_client, settings, clock)


def finalizing(store):
    job_id, attempt = submitted_job(store)
    done = snap(Status.COMPLETED, output_urls=("https://x/video.mp4",), cost_usd=0.6)
    return job_id, attempt, store.apply_snapshot("runwayml", "task-1", done, 1)


def test_with_a_bucket_a_succeeded_task_waits_for_the_finalize_step(storing):
    job_id, attempt, outcome = finalizing(storing)
    assert (outcome.job_status, outcome.finalize_attempt) == (Status.PROCESSING, attempt.attempt_id)
    job = storing.get_job(job_id)
    assert (job.status, job.progress, job.finalizing) == (Status.PROCESSING, 99.0, True)
    assert job.current_attempt.status is AttemptStatus.SUCCEEDED
    assert job.provider_output["videoUrls"] == ["https://x/video.mp4"]
    assert job.output is None
    assert job.ended_at is None
    assert storing.get_task("runwayml", "task-1").status is Status.COMPLETED


def test_a_repeated_success_reading_asks_for_finalize_once(storing):
    _, _, first = finalizing(storing)
    again = storing.apply_snapshot("runwayml", "task-1", snap(Status.COMPLETED), 2)
    assert first.finalize_attempt is not None
    assert (again.verdict, again.finalize_attempt) == (Verdict.FINAL, None)


def test_one_finalize_claim_at_a_time_and_the_tries_are_counted(storing, clock):
    job_id, attempt, _ = finalizing(storing)
    first = storing.claim_finalize(job_id, attempt.attempt_id, lease_s=60, max_tries=2)
    busy = storing.claim_finalize(job_id, attempt.attempt_id, lease_s=60, max_tries=2)
    assert (first.verdict, first.tries, busy.verdict) == ("go", 1, "busy")
    clock.now += timedelta(seconds=61)  # the first try died without releasing
    assert storing.claim_finalize(job_id, attempt.attempt_id, lease_s=60, max_tries=2).tries == 2
    clock.now += timedelta(seconds=61)
    assert storing.claim_finalize(job_id, attempt.attempt_id, lease_s=60, max_tries=2).verdict == "exhausted"


def test_completing_the_finalize_completes_the_job_once(storing):
    job_id, attempt, _ = finalizing(storing)
    storing.claim_finalize(job_id, attempt.attempt_id, lease_s=60, max_tries=5)
    output = {"source": "storage", "videoPath": f"jobs/{job_id}/video.mp4"}
    assert storing.complete_finalize(job_id, attempt.attempt_id, output)
    assert not storing.complete_finalize(job_id, attempt.attempt_id, output)
    job = storing.get_job(job_id)
    assert (job.status, job.progress, job.finalizing) == (Status.COMPLETED, 100, False)
    assert job.output == output
    assert storing.claim_finalize(job_id, attempt.attempt_id, lease_s=60, max_tries=5).verdict == "done"


def test_giving_up_on_the_finalize_fails_the_job_with_the_cause(storing):
    job_id, attempt, _ = finalizing(storing)
    error = {"code": "download_failed", "message": "HTTP 404"}
    assert not storing.release_finalize(job_id, attempt.attempt_id, error, give_up=False)
    assert storing.get_job(job_id).status is Status.PROCESSING
    assert storing.release_finalize(job_id, attempt.attempt_id, error, give_up=True)
    job = storing.get_job(job_id)
    assert (job.status, job.error["code"], job.error["cause"]) == (
        Status.FAILED,
        "finalize_failed",
        "download_failed",
    )


def test_a_job_cancelled_while_finalizing_is_not_completed_by_it(storing):
    job_id, attempt, _ = finalizing(storing)
    storing.finish_job(job_id, Status.CANCELLED)
    assert storing.get_job(job_id).finalizing is False
    assert not storing.complete_finalize(job_id, attempt.attempt_id, {"source": "storage"})
    assert storing.get_job(job_id).status is Status.CANCELLED


# -- sweeps ---------------------------------------------------------------------------------------


def test_purge_finds_terminal_jobs_by_ended_at_or_else_updated_at(store, firestore_client, settings):
    old = T0 - timedelta(days=60)
    jobs = firestore_client.collection(settings.jobs_collection)
    jobs.document("ended").set({"jobId": "ended", "status": "failed", "endedAt": old, "updatedAt": old})
    jobs.document("no-end").set({"jobId": "no-end", "status": "completed", "updatedAt": old})
    jobs.document("live").set({"jobId": "live", "status": "processing", "updatedAt": old})
    jobs.document("recent").set({"jobId": "recent", "status": "failed", "endedAt": T0, "updatedAt": old})
    assert store.purge_jobs(T0 - timedelta(days=30), dry_run=True) == (2, 0)
    assert len(list(jobs.stream())) == 4
    assert store.purge_jobs(T0 - timedelta(days=30)) == (2, 0)
    assert sorted(d.id for d in jobs.stream()) == ["live", "recent"]


def test_purge_expired_removes_only_what_expired(store, firestore_client):
    events = firestore_client.collection("video_webhook_events")
    for i in range(3):
        events.document(f"old-{i}").set({"expireAt": T0 - timedelta(minutes=i + 1)})
    events.document("new").set({"expireAt": T0 + timedelta(minutes=1)})
    assert store.purge_expired("video_webhook_events", T0, page_size=2) == 3
    assert [d.id for d in events.stream()] == ["new"]


def test_purge_deletes_the_task_records_of_every_attempt(store, firestore_client, settings):
    job_id, _ = submitted_job(store, provider="heygen", task_id="video-1")
    failed = snap(Status.FAILED, task_id="video-1", failure_code="RENDER_ERROR", fallback_allowed=True)
    store.apply_snapshot("heygen", "video-1", failed, 1)
    second = store.begin_attempt(job_id, "runwayml")
    store.record_submission(job_id, second.attempt_id, CreateResult(task_id="task-2", model="gen4.5"))
    store.apply_snapshot("runwayml", "task-2", snap(Status.COMPLETED, task_id="task-2"), 1)
    assert store.purge_jobs(T0 + timedelta(days=1)) == (1, 2)
    assert store.get_task("heygen", "video-1") is None
    assert store.get_task("runwayml", "task-2") is None
    assert store.get_job(job_id) is None
