"""The scheduled cleanup against the emulators and simulators: what it removes, what it rescues, and
that a second run finds nothing left. Time moves by giving the cleanup a later clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.cloud.firestore_v1.base_query import FieldFilter

from jobs.purge import BULK_BATCH, BulkDeleter, _Names, documents, streamed
from jobs.records import ExpiredJob, Job, JobRequest, job_from_doc
from jobs.store import NewJob
from jobs.txn import utcnow
from providers import prompts
from tasks.cleanup import Action, Cleanup, finalize_action
from tasks.queue import FINALIZE_FUNCTION, POLL_FUNCTION
from tests.stack import OPS_SA, SCHEDULER_SA, SCRIPT, TASKS_SA
from tests.test_finalize import deliver, finalizing_job, take_finalize
from web.schemas import GenerateRequest

CLEANUP = "runwayml_cleanup_task"


def cleanup(stack, later: timedelta = timedelta(0)) -> Cleanup:
    d = stack.deps
    clock = lambda: utcnow() + later  # noqa: E731
    return Cleanup(d.store, d.providers, d.poller, d.runner, d.queue, stack.storage, d.settings, clock=clock)


def total(report) -> int:
    return sum(n for step in report.values() if isinstance(step, dict) for n in step.values())


def doc_exists(stack, collection, doc_id) -> bool:
    return stack.deps.store.client.collection(collection).document(doc_id).get().exists


def runway_job(stack) -> str:
    answer = stack.generate(provider="runwayml")
    assert answer.status_code == 202, answer.get_json()
    return answer.get_json()["jobId"]


# -- retention ------------------------------------------------------------------------------------


def test_retention_deletes_old_jobs_with_their_task_records_and_objects(stack_factory):
    stack = stack_factory(storage=True)
    job_id = finalizing_job(stack)
    deliver(stack, take_finalize(stack))
    task_id = stack.deps.store.get_job(job_id).current_attempt.task_id
    report = cleanup(stack, timedelta(days=31)).run()
    assert report["retention"] == {"jobs": 1, "taskRecords": 1, "objects": 1}
    assert not doc_exists(stack, stack.settings.jobs_collection, job_id)
    assert not doc_exists(stack, stack.deps.store.task_collection("runwayml"), task_id)
    assert stack.storage.list_prefix(f"jobs/{job_id}/") == []
    assert total(cleanup(stack, timedelta(days=31)).run()) == 0  # the second run has nothing to do


def test_recent_terminal_jobs_are_kept(stack):
    job_id = runway_job(stack)
    stack.run_until_terminal(job_id)
    report = cleanup(stack, timedelta(days=29)).run()
    assert report["retention"] == {"jobs": 0, "taskRecords": 0}
    assert stack.deps.store.get_job(job_id) is not None


def test_a_dry_run_reports_and_changes_nothing(stack_factory):
    stack = stack_factory(storage=True)
    job_id = finalizing_job(stack)
    deliver(stack, take_finalize(stack))
    dry = cleanup(stack, timedelta(days=31)).run(dry_run=True)
    assert dry["dryRun"] is True
    assert dry["retention"] == {"jobs": 1, "taskRecords": 1, "objects": 1}
    assert stack.deps.store.get_job(job_id) is not None
    assert stack.storage.list_prefix(f"jobs/{job_id}/") != []
    real = cleanup(stack, timedelta(days=31)).run()
    assert real["retention"] == dry["retention"]


def test_retention_pages_through_many_jobs(stack):
    store = stack.deps.store
    writer = store.client.bulk_writer()
    old = utcnow() - timedelta(days=40)
    for i in range(1100):
        doc = {"jobId": f"old-{i}", "status": "completed", "endedAt": old, "updatedAt": old}
        doc |= {"attemptCount": 1, "provider": "runwayml", "providerTaskId": f"t-{i}"}
        writer.set(store.client.collection(stack.settings.jobs_collection).document(f"old-{i}"), doc)
        writer.set(store.task_ref("runwayml", f"t-{i}"), {})
    writer.close()
    report = cleanup(stack).run()
    assert report["retention"] == {"jobs": 1100, "taskRecords": 1100}
    assert list(store.client.collection(stack.settings.jobs_collection).limit(1).stream()) == []


def test_retention_keeps_a_live_job_whose_ended_at_passed(stack):
    store = stack.deps.store
    old = utcnow() - timedelta(days=40)
    jobs = store.client.collection(stack.settings.jobs_collection)
    jobs.document("live").set({"jobId": "live", "status": "processing", "endedAt": old, "updatedAt": old})
    jobs.document("gone").set({"jobId": "gone", "status": "failed", "endedAt": old, "updatedAt": old})
    report = cleanup(stack).run()
    assert report["retention"] == {"jobs": 1, "taskRecords": 0}
    assert sorted(d.id for d in jobs.stream()) == ["live"]


# -- the purge's reads and deletes ------------------------------------------------------------------


def test_the_purge_reads_the_same_documents_and_fields_as_query_stream(firestore_client):
    events = firestore_client.collection("purge_read")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(5):
        doc = {"n": i, "at": at + timedelta(seconds=i % 2), "map": {"a": f"x{i}", "b": None}, "off": True}
        events.document(f"d{i}").set(doc)
    query = events.where(filter=FieldFilter("at", "<", at + timedelta(days=1))).order_by("at")
    query = query.select(["n", "at", "map.a"])
    read = [(found.id, found.fields) for found in documents(firestore_client, query)]
    assert read == [(snap.id, snap.to_dict()) for snap in query.stream()]
    assert read[0][1] == {"n": 0, "at": at, "map": {"a": "x0"}}


def test_the_purge_streams_resume_after_the_last_document_even_among_equal_values(firestore_client):
    events = firestore_client.collection("purge_read")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(7):
        events.document(f"d{i}").set({"expireAt": at})  # one value for all: the cursor needs the name
    query = events.where(filter=FieldFilter("expireAt", "<=", at)).order_by("expireAt").select(["expireAt"])
    pages = list(streamed(firestore_client, query, chunk=2, per_query=3))
    assert [len(page) for page in pages] == [2, 1, 2, 1, 1]
    assert [found.id for page in pages for found in page] == [f"d{i}" for i in range(7)]


def test_the_deleter_sends_every_delete_with_few_requests_in_flight(firestore_client):
    events = firestore_client.collection("purge_delete")
    writer = firestore_client.bulk_writer()
    for i in range(BULK_BATCH * 2 + 10):
        writer.set(events.document(f"d{i}"), {"n": i})
    writer.close()
    deleter = BulkDeleter(firestore_client, parallel=1)  # the third request waits for the first
    for found in documents(firestore_client, events.select([])):
        deleter.delete(found.name)  # a full document name, as the purge passes them
    deleter.close()
    assert deleter.failed == 0
    assert list(events.limit(1).stream()) == []


def test_the_deleter_retries_a_delete_that_failed_and_counts_it(firestore_client):
    events = firestore_client.collection("purge_delete")
    events.document("here").set({"n": 1})
    deleter = BulkDeleter(firestore_client)
    deleter.delete(events.document("here"))
    deleter.delete(events.document("missing"), firestore_client.write_option(exists=True))
    deleter.close()
    assert deleter.failed == 1  # refused at every attempt; the other delete went through
    assert not events.document("here").get().exists


def test_the_purge_names_the_documents_the_store_references_name(stack):
    store = stack.deps.store
    expired = ExpiredJob("job-1", (("runwayml", "task-1"), ("heygen", "video-1")), (), stored=False)
    refs = [store.job_ref("job-1"), store.user_view_ref("job-1")]
    refs += [store.task_ref("runwayml", "task-1"), store.task_ref("heygen", "video-1")]
    assert list(_Names(store).of(expired)) == [ref._document_path for ref in refs]


# -- deadlines ------------------------------------------------------------------------------------


def test_a_job_past_its_deadline_is_timed_out_and_its_task_cancelled(stack):
    job_id = runway_job(stack)
    later = timedelta(seconds=stack.settings.job_deadline_s + 60)
    report = cleanup(stack, later).run()
    assert report["deadline"] == {"timedOut": 1, "cancelSent": 1}
    job = stack.deps.store.get_job(job_id)
    assert (job.status, job.error["code"]) == ("timed_out", "deadline_exceeded")
    assert stack.runway.count("DELETE", "/v1/tasks/") == 1
    assert stack.deps.store.get_task("runwayml", job.current_attempt.task_id).status == "cancelled"
    assert total(cleanup(stack, later).run()) == 0
    assert stack.runway.count("DELETE", "/v1/tasks/") == 1


def test_a_dry_run_does_not_time_anything_out(stack):
    job_id = runway_job(stack)
    report = cleanup(stack, timedelta(hours=1)).run(dry_run=True)
    assert report["deadline"] == {"timedOut": 1}
    assert stack.deps.store.get_job(job_id).status in ("queued", "processing")
    assert stack.runway.count("DELETE", "/v1/tasks/") == 0


# -- crash windows --------------------------------------------------------------------------------


def test_a_stuck_submitting_attempt_is_closed_and_the_job_falls_back(stack):
    request = GenerateRequest(script=SCRIPT)
    new = NewJob(
        owner_uid="alice",
        request=request.job_request(),
        candidates=("heygen", "runwayml"),
        prompt=prompts.build_prompt(SCRIPT).to_dict(),
    )
    job, _ = stack.deps.store.create_job(new)
    stack.deps.store.begin_attempt(job.job_id, "heygen")  # then the process stopped: no create sent
    report = cleanup(stack, timedelta(minutes=6)).run()
    assert report["crashWindows"] == {"resolve_submitting": 1}
    after = stack.deps.store.get_job(job.job_id)
    assert [(a.provider, str(a.status)) for a in after.attempts] == [
        ("heygen", "unknown"),
        ("runwayml", "active"),
    ]
    assert (len(stack.heygen.videos), sum(stack.runway.creates.values())) == (0, 1)


def test_an_attempt_still_submitting_within_the_grace_is_left_alone(stack):
    new = NewJob(owner_uid="alice", request=JobRequest(), candidates=("heygen", "runwayml"))
    job, _ = stack.deps.store.create_job(new)
    stack.deps.store.begin_attempt(job.job_id, "heygen")
    assert total(cleanup(stack, timedelta(minutes=2)).run()) == 0
    assert stack.deps.store.get_job(job.job_id).current_attempt.status == "submitting"


def test_an_orphaned_job_whose_poll_was_lost_is_polled_and_finishes(stack):
    job_id = runway_job(stack)
    stack.queue.take()  # poll 1 is lost
    stack.clock.advance(600)  # the provider finished long ago
    report = cleanup(stack, timedelta(minutes=10)).run()
    assert report["crashWindows"] == {"poll": 1}
    assert stack.deps.store.get_job(job_id).status == "completed"


def test_an_orphaned_job_still_rendering_gets_a_new_poll_chain(stack):
    job_id = runway_job(stack)
    stack.queue.take()
    cleanup(stack, timedelta(minutes=10)).run()
    (poll,) = stack.queue.for_function(POLL_FUNCTION)
    assert ":sweep:" in poll.name_key
    assert stack.run_until_terminal(job_id)["status"] == "completed"


def test_a_finalize_that_was_lost_is_enqueued_again(stack_factory):
    stack = stack_factory(storage=True)
    job_id = finalizing_job(stack)
    stack.queue.take()  # the finalize task is lost
    report = cleanup(stack, timedelta(minutes=11)).run()
    assert report["finalize"] == {"requeue_finalize": 1}
    (task,) = stack.queue.for_function(FINALIZE_FUNCTION)
    assert deliver(stack, task.payload).status_code == 200
    assert stack.deps.store.get_job(job_id).status == "completed"
    assert total(cleanup(stack, timedelta(minutes=11)).run()) == 0


def test_a_finalize_past_its_window_fails_the_job(stack_factory):
    stack = stack_factory(storage=True)
    job_id = finalizing_job(stack)
    stack.queue.take()
    report = cleanup(stack, timedelta(days=1)).run()
    assert report["finalize"] == {"fail_finalize": 1}
    job = stack.deps.store.get_job(job_id)
    assert (job.status, job.error["code"]) == ("failed", "finalize_failed")


# -- expired support records ----------------------------------------------------------------------


def test_expired_webhook_events_and_quota_counters_are_removed(stack):
    client, now = stack.deps.store.client, utcnow()
    for name in ("webhook_events", "quota"):
        collection = client.collection(stack.settings.collection(name))
        collection.document("old").set({"expireAt": now - timedelta(hours=1)})
        collection.document("new").set({"expireAt": now + timedelta(hours=1)})
    report = cleanup(stack).run()
    assert report["expired"] == {"webhookEvents": 1, "quotaCounters": 1}
    for name in ("webhook_events", "quota"):
        assert [d.id for d in client.collection(stack.settings.collection(name)).stream()] == ["new"]


# -- the entry point ------------------------------------------------------------------------------


def test_only_the_scheduler_account_may_run_it(stack):
    client = stack.client(CLEANUP)
    assert client.post("/", json={}).status_code == 401
    for account in (TASKS_SA, OPS_SA):
        assert client.post("/", json={}, headers=stack.service(account, CLEANUP)).status_code == 403
    answer = client.post("/", json={"dryRun": True}, headers=stack.service(SCHEDULER_SA, CLEANUP))
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["dryRun"] is True
    assert client.get("/", headers=stack.service(SCHEDULER_SA, CLEANUP)).status_code == 405


def test_a_token_minted_for_another_function_is_refused(stack):
    headers = stack.service(SCHEDULER_SA, "runwayml_polling_task")
    assert stack.client(CLEANUP).post("/", json={}, headers=headers).status_code == 401


def test_unknown_fields_in_the_body_are_refused(stack):
    headers = stack.service(SCHEDULER_SA, CLEANUP)
    answer = stack.client(CLEANUP).post("/", json={"dryrun": True}, headers=headers)
    assert answer.status_code == 400


# -- decisions (pure) -----------------------------------------------------------------------------

T0 = utcnow()


def finalizing_doc(**finalize) -> Job:
    state = {"attemptId": "j-a1", "tries": 0, "leaseUntil": None, "requestedAt": T0, **finalize}
    doc = {"jobId": "j", "ownerUid": "u", "status": "processing", "finalizing": True, "finalize": state}
    return job_from_doc(doc)


def test_a_finalize_never_claimed_is_requeued_after_a_short_grace():
    job = finalizing_doc()
    assert finalize_action(job, T0 + timedelta(minutes=1), max_tries=5) is Action.NONE
    assert finalize_action(job, T0 + timedelta(minutes=3), max_tries=5) is Action.REQUEUE_FINALIZE


def test_a_finalize_that_was_tried_waits_for_its_retries_first():
    job = finalizing_doc(tries=1, lastTriedAt=T0)
    assert finalize_action(job, T0 + timedelta(minutes=3), max_tries=5) is Action.NONE
    assert finalize_action(job, T0 + timedelta(minutes=11), max_tries=5) is Action.REQUEUE_FINALIZE


def test_a_finalize_holding_its_lease_is_left_alone():
    job = finalizing_doc(tries=5, leaseUntil=T0 + timedelta(minutes=5))
    assert finalize_action(job, T0 + timedelta(minutes=1), max_tries=5) is Action.NONE
    assert finalize_action(job, T0 + timedelta(minutes=6), max_tries=5) is Action.FAIL_FINALIZE


def test_a_job_past_its_deadline_whose_task_finished_completes_instead_of_timing_out(stack):
    job_id = runway_job(stack)
    stack.queue.take()  # its poll chain is lost (say, with a crashed host)
    stack.clock.advance(600)  # meanwhile the provider finished the task
    report = cleanup(stack, timedelta(minutes=31)).run()
    assert report["deadline"] == {"finishedAtProvider": 1}
    assert stack.deps.store.get_job(job_id).status == "completed"
    assert stack.runway.count("DELETE", "/v1/tasks/") == 0  # the finished video is kept
