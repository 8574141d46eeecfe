"""cancel_video and runwayml_status_check: owners only, harmless repeats, fresh answers."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from jobs.records import AttemptStatus, job_from_doc
from jobs.runner import Runner
from providers.base import Status
from tasks.poll import FirstPoll
from tests.stack import OPS_SA, TASKS_SA
from web import deps


def submit(stack, **body):
    answer = stack.generate(**body)
    assert answer.status_code == 202, answer.get_json()
    return answer.get_json()["jobId"]


def cancel(stack, job_id, uid="alice"):
    return stack.client("cancel_video").post("/", json={"jobId": job_id}, headers=stack.user(uid))


def status(stack, headers, **query):
    return stack.client("runwayml_status_check").get("/", query_string=query, headers=headers)


def test_the_owner_cancels_a_running_job_at_its_provider(stack):
    job_id = submit(stack, provider="runwayml")
    answer = cancel(stack, job_id)
    assert answer.status_code == 200
    assert answer.get_json()["job"]["status"] == "cancelled"
    assert stack.runway.count("DELETE", "/v1/tasks/") == 1
    task_id = stack.deps.store.get_job(job_id).current_attempt.task_id
    assert stack.deps.store.get_task("runwayml", task_id).status == "cancelled"


def test_polls_after_a_cancel_do_nothing(stack):
    job_id = submit(stack, provider="runwayml")
    cancel(stack, job_id)
    gets = stack.runway.count("GET", "/v1/tasks/")
    answers = stack.deliver_polls(advance_s=10)
    assert [a.get_json()["outcome"] for a in answers] == ["skipped"]
    assert stack.runway.count("GET", "/v1/tasks/") == gets
    assert stack.deps.store.get_job(job_id).status == "cancelled"


def test_cancelling_twice_is_harmless(stack):
    job_id = submit(stack, provider="runwayml")
    cancel(stack, job_id)
    again = cancel(stack, job_id)
    assert (again.status_code, again.get_json()["job"]["status"]) == (200, "cancelled")
    assert stack.runway.count("DELETE", "/v1/tasks/") == 1


def test_cancelling_a_heygen_job_closes_it_and_ignores_the_result(stack):
    job_id = submit(stack)
    assert cancel(stack, job_id).status_code == 200
    stack.deliver_polls(advance_s=2000)
    assert stack.deps.store.get_job(job_id).status == "cancelled"


def test_another_users_job_is_not_found(stack):
    job_id = submit(stack)
    answer = cancel(stack, job_id, uid="mallory")
    assert answer.status_code == 404
    assert stack.deps.store.get_job(job_id).status == "queued"


def test_a_finished_job_answers_409_with_its_status(stack):
    job_id = submit(stack)
    stack.run_until_terminal(job_id, step_s=60)
    answer = cancel(stack, job_id)
    assert answer.status_code == 409
    assert answer.get_json()["error"]["jobStatus"] == "completed"


@pytest.mark.parametrize(
    ("body", "status"), [({}, 400), ({"jobId": "../x"}, 400), ({"jobId": "missing"}, 404)]
)
def test_bad_cancel_requests(stack, body, status):
    answer = stack.client("cancel_video").post("/", json=body, headers=stack.user("alice"))
    assert answer.status_code == status


@pytest.mark.parametrize(
    ("who", "expected"),
    [("owner", 200), ("other", 404), ("ops", 200), ("tasks", 404), ("anonymous", 401)],
)
def test_status_is_for_the_owner_and_ops_only(stack, who, expected):
    job_id = submit(stack)
    headers = {
        "owner": stack.user("alice"),
        "other": stack.user("mallory"),
        "ops": stack.service(OPS_SA, "runwayml_status_check"),
        "tasks": stack.service(TASKS_SA, "runwayml_status_check"),
        "anonymous": {},
    }[who]
    answer = status(stack, headers, jobId=job_id)
    assert answer.status_code == expected
    if expected == 200:
        assert answer.get_json()["job"]["jobId"] == job_id


def test_a_stale_record_is_refreshed_from_the_provider(stack):
    job_id = submit(stack, provider="runwayml")
    stack.clock.advance(300)  # the simulator finished; no poll has run yet
    task = stack.deps.store.get_task("runwayml", stack.deps.store.get_job(job_id).current_attempt.task_id)
    stack.deps.store.client.document(f"runwayml_jobs/{task.task_id}").update(
        {"lastCheckedAt": datetime(2020, 1, 1, tzinfo=UTC), "createdAt": datetime(2020, 1, 1, tzinfo=UTC)}
    )
    answer = status(stack, stack.user("alice"), jobId=job_id)
    assert answer.get_json()["job"]["status"] == "completed"


def test_a_fresh_record_is_not_refreshed(stack):
    job_id = submit(stack, provider="runwayml")
    gets = stack.runway.count("GET", "/v1/tasks/")
    status(stack, stack.user("alice"), jobId=job_id)
    status(stack, stack.user("alice"), jobId=job_id)
    assert stack.runway.count("GET", "/v1/tasks/") <= gets + 1


def test_status_by_task_id(stack):
    job_id = submit(stack, provider="runwayml")
    task_id = stack.deps.store.get_job(job_id).current_attempt.task_id
    answer = status(stack, stack.user("alice"), taskId=task_id)
    assert answer.get_json()["job"]["jobId"] == job_id


@pytest.mark.parametrize("query", [{}, {"jobId": "a", "taskId": "b"}, {"jobId": "x" * 200}, {"extra": "1"}])
def test_bad_status_queries_are_400(stack, query):
    assert status(stack, stack.user("alice"), **query).status_code == 400


class CancelDuringCreate:
    """The real store, except that the owner's cancel lands while the provider's create is in flight."""

    def __init__(self, store) -> None:
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    def record_submission(self, job_id, attempt_id, result, **kwargs):
        self._store.finish_job(job_id, Status.CANCELLED, {"code": "cancelled", "message": "cancelled"})
        return self._store.record_submission(job_id, attempt_id, result, **kwargs)


def cancelling_during_creates(stack) -> None:
    d = stack.deps
    store = CancelDuringCreate(d.store)
    runner = Runner(store, d.providers, FirstPoll(d.queue), admit=d.runner.admit, observe=d.runner.observe)
    deps.use(dataclasses.replace(d, store=store, runner=runner))


@pytest.mark.parametrize(("provider", "stopped"), [("runwayml", 1), ("heygen", 0)])
def test_a_cancel_during_the_create_keeps_the_attempt_closed_and_stops_the_new_task(stack, provider, stopped):
    cancelling_during_creates(stack)
    answer = stack.generate(provider=provider)
    job = stack.deps.store.get_job(answer.get_json()["jobId"])
    attempt = job.current_attempt
    assert (job.status, attempt.status) == (Status.CANCELLED, AttemptStatus.CANCELLED)
    task = stack.deps.store.get_task(provider, attempt.task_id)
    assert (task.status, task.failure_code) == (Status.CANCELLED, "attempt_closed")
    assert ("no cancel" in task.failure_message) is (provider == "heygen")  # HeyGen's runs to its end
    assert stack.queue.tasks == []  # nothing polls it
    deletes = stack.runway.count("DELETE", "/v1/tasks/")
    assert deletes == stopped
    if provider == "runwayml":
        assert stack.runway.tasks[attempt.task_id].cancelled_refunded is not None  # it stopped there


@pytest.mark.parametrize("query", [{"jobId": "__x__"}, {"taskId": "__x__"}, {"jobId": "__reserved__"}])
def test_a_reserved_firestore_id_is_a_400_naming_the_field(stack, query):
    answer = status(stack, stack.user("alice"), **query)
    error = answer.get_json()["error"]
    assert (answer.status_code, error["code"]) == (400, "invalid_request")
    assert error["message"].startswith(next(iter(query)))


def test_cancelling_a_reserved_id_is_a_400(stack):
    answer = cancel(stack, "__x__")
    assert (answer.status_code, answer.get_json()["error"]["field"]) == (400, "jobId")


def test_a_status_check_without_a_query_says_the_query_is_wrong(stack):
    answer = stack.client("runwayml_status_check").get("/", headers=stack.user("alice"))
    assert answer.status_code == 400
    error = answer.get_json()["error"]
    assert error["field"] == "query"
    assert error["message"].startswith("query: ")


def test_a_user_token_on_a_service_function_is_told_it_takes_service_accounts(stack):
    answer = stack.client("provider_health").get("/", headers=stack.user("alice"))
    assert answer.status_code == 403
    assert "service-account tokens only" in answer.get_json()["error"]["message"]


def test_the_stores_one_read_of_a_job_answers_what_the_client_reads(stack):
    job_id = submit(stack, provider="runwayml")
    store = stack.deps.store

    def as_the_client_reads(job_id):
        snap = store.job_ref(job_id).get()
        return job_from_doc(snap.to_dict()) if snap.exists else None

    assert store.get_job(job_id) == as_the_client_reads(job_id)
    stack.run_until_terminal(job_id, step_s=60)
    finished = store.get_job(job_id)
    assert finished == as_the_client_reads(job_id)
    assert finished is not None
    assert finished.status == "completed"
    assert store.get_job("no-such-job") is None
