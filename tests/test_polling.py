"""The poll step through runwayml_polling_task: forward-only, idempotent, bounded, with fallback."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from jobs.records import job_to_doc
from jobs.runner import Runner
from local.simcore import FaultPlan
from providers.base import ProviderSnapshot, Status
from tasks.poll import FirstPoll, Poller
from tasks.schedule import Render
from tests.stack import OPS_SA, TASKS_SA
from web import deps


def submit(stack, **body):
    answer = stack.generate(**body)
    assert answer.status_code == 202, answer.get_json()
    return answer.get_json()["jobId"]


def poll(stack, payload, headers=None):
    headers = headers if headers is not None else stack.service(TASKS_SA, "runwayml_polling_task")
    return stack.client("runwayml_polling_task").post("/", json=payload, headers=headers)


def test_a_heygen_job_is_polled_to_completion(stack):
    job_id = submit(stack)
    job = stack.run_until_terminal(job_id, step_s=60)
    assert job["status"] == "completed"
    assert job["output"]["videoUrls"][0].startswith(stack.heygen.base_url)
    assert job["progress"] == 100


def test_a_runwayml_job_passes_through_processing_to_completion(stack):
    job_id = submit(stack, provider="runwayml")
    seen = set()
    for _ in range(40):
        doc = job_to_doc(stack.deps.store.get_job(job_id))
        seen.add(doc["status"])
        if doc["status"] == "completed":
            break
        stack.deliver_polls(advance_s=5)
    assert {"queued", "processing", "completed"} <= seen
    assert doc["actualCostUsd"] > 0


def test_a_moderation_failure_fails_the_job_without_fallback(stack):
    stack.runway.fail_next("moderation")
    job_id = submit(stack, provider="runwayml")
    job = stack.run_until_terminal(job_id, step_s=10)
    assert job["status"] == "failed"
    assert job["error"]["code"].startswith("SAFETY")
    assert len(job["attempts"]) == 1
    assert len(stack.heygen.videos) == 0


def test_a_runwayml_task_that_vanishes_falls_back_to_heygen(stack):
    job_id = submit(stack, provider="runwayml")
    task_id = stack.deps.store.get_job(job_id).current_attempt.task_id
    stack.runway.tasks.pop(task_id)  # the provider forgot it: GET answers 404
    job = stack.run_until_terminal(job_id, step_s=60)
    assert job["status"] == "completed"
    assert [a["provider"] for a in job["attempts"]] == ["runwayml", "heygen"]


def test_a_duplicate_delivery_is_a_no_op(stack):
    submit(stack, provider="runwayml")
    (task,) = stack.queue.take()
    stack.clock.advance(5)
    first = poll(stack, task.payload)
    gets = stack.runway.count("GET", "/v1/tasks/")
    again = poll(stack, task.payload)
    assert first.status_code == again.status_code == 200
    assert again.get_json()["outcome"] in ("skipped", "rescheduled")
    assert stack.runway.count("GET", "/v1/tasks/") == gets  # no second provider read
    assert [t.payload["pollNumber"] for t in stack.queue.tasks] == [2]  # the next poll exists once


def test_an_older_poll_arriving_late_is_skipped(stack):
    submit(stack, provider="runwayml")
    (first,) = stack.queue.take()
    stack.clock.advance(5)
    poll(stack, first.payload)
    (second,) = stack.queue.take()
    poll(stack, second.payload)
    late = poll(stack, first.payload)
    assert late.get_json()["outcome"] == "skipped"


def test_provider_trouble_reschedules_instead_of_failing_the_delivery(stack_factory):
    stack = stack_factory(runway_faults=FaultPlan(rates={"http_5xx": 1.0}))
    stack.runway.faults.rates.clear()  # let the create through
    job_id = submit(stack, provider="runwayml")
    stack.runway.faults.rates["http_5xx"] = 1.0
    answers = stack.deliver_polls(advance_s=5)
    assert [a.status_code for a in answers] == [200]
    assert answers[0].get_json()["outcome"] == "rescheduled"
    assert stack.deps.store.get_job(job_id).status == "queued"
    assert [t.payload["pollNumber"] for t in stack.queue.tasks] == [2]


def test_a_task_past_its_polling_envelope_is_cancelled_and_the_job_falls_back(stack):
    stack.runway.fail_next("stuck")
    job_id = submit(stack, provider="runwayml")
    real_clock = stack.deps.poller.clock
    stack.deps.poller.clock = lambda: real_clock() + timedelta(minutes=7)
    stack.deliver_polls(advance_s=420)
    assert stack.runway.count("DELETE", "/v1/tasks/") == 1
    stack.deps.poller.clock = real_clock
    job = stack.run_until_terminal(job_id, step_s=60)
    assert job["status"] == "completed"
    assert [(a["provider"], a["status"]) for a in job["attempts"]] == [
        ("runwayml", "failed"),
        ("heygen", "succeeded"),
    ]


def test_a_timed_out_task_with_no_provider_left_times_the_job_out(stack_factory):
    stack = stack_factory(HEYGEN_API_KEY="")  # RunwayML only
    stack.runway.fail_next("stuck")
    job_id = submit(stack)
    real_clock = stack.deps.poller.clock
    stack.deps.poller.clock = lambda: real_clock() + timedelta(minutes=7)
    stack.deliver_polls(advance_s=420)
    job = stack.deps.store.get_job(job_id)
    assert job.status == "timed_out"
    assert job.error["code"] == "provider_timeout"
    assert stack.queue.tasks == []


@pytest.mark.parametrize(
    ("who", "status"),
    [("anonymous", 401), ("user", 403), ("ops", 403), ("other-audience", 401), ("tasks", 200)],
)
def test_only_the_tasks_account_may_deliver_polls(stack, who, status):
    submit(stack, provider="runwayml")
    (task,) = stack.queue.take()
    headers = {
        "anonymous": {},
        "user": stack.user("alice"),
        "ops": stack.service(OPS_SA, "runwayml_polling_task"),
        "other-audience": stack.service(TASKS_SA, "runwayml_status_check"),
        "tasks": stack.service(TASKS_SA, "runwayml_polling_task"),
    }[who]
    assert poll(stack, task.payload, headers).status_code == status


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"jobId": "j", "provider": "sora", "taskId": "t", "pollNumber": 1},
        {"jobId": "j", "provider": "heygen"},
    ],
)
def test_a_malformed_poll_payload_is_a_400(stack, payload):
    assert poll(stack, payload).status_code == 400


def test_a_poll_for_an_unknown_task_is_acknowledged(stack):
    answer = poll(stack, {"jobId": "j", "provider": "runwayml", "taskId": "nope", "pollNumber": 1})
    assert (answer.status_code, answer.get_json()["outcome"]) == (200, "missing")


class StaleOnce:
    """The real client, except that the next read answers `stale` (an eventually consistent API)."""

    def __init__(self, real) -> None:
        self.real, self.stale = real, None

    def __getattr__(self, name):
        return getattr(self.real, name)

    def get(self, task_id):
        snapshot, self.stale = self.stale, None
        return snapshot if snapshot is not None else self.real.get(task_id)


def with_provider(stack, name, client):
    """Serve the next requests with `client` as provider `name`, wired as `deps.build` wires it."""
    d = stack.deps
    providers = {**d.providers, name: client}
    runner = Runner(d.store, providers, FirstPoll(d.queue), admit=d.runner.admit, observe=d.runner.observe)
    deps.use(
        dataclasses.replace(
            d, providers=providers, runner=runner, poller=Poller(d.store, providers, d.queue, runner)
        )
    )


def test_a_stale_reading_is_ignored_and_the_poll_chain_goes_on_to_completion(stack):
    job_id = submit(stack, provider="runwayml")
    task_id = stack.deps.store.get_job(job_id).current_attempt.task_id
    while stack.deps.store.get_task("runwayml", task_id).progress < 20:
        stack.deliver_polls(advance_s=3)
    seen = stack.deps.store.get_task("runwayml", task_id).progress
    stale = StaleOnce(stack.deps.providers["runwayml"])
    stale.stale = ProviderSnapshot(task_id, Status.PROCESSING, "RUNNING", progress=seen / 4)
    with_provider(stack, "runwayml", stale)
    (answer,) = stack.deliver_polls(advance_s=1)
    assert answer.get_json()["outcome"] == "rescheduled"  # the stale reading did not end the chain
    assert stack.deps.store.get_task("runwayml", task_id).progress == seen
    assert stack.run_until_terminal(job_id, step_s=5)["status"] == "completed"


def test_the_first_look_waits_for_the_shortest_recent_render_and_each_finished_render_is_learned(stack):
    # Given a polling worker whose recent RunwayML renders all took about a minute
    history = stack.deps.poller.history
    for _ in range(history.min_samples):
        history.record("runwayml", Render(60.0, False))
    job_id = submit(stack, provider="runwayml")
    task_id = stack.deps.store.get_job(job_id).current_attempt.task_id
    gets = stack.runway.count("GET", f"/v1/tasks/{task_id}")
    # When the first poll arrives
    (answer,) = stack.deliver_polls(advance_s=16)
    # Then it is put off to when a one-minute render could end, without asking the provider
    assert answer.get_json()["outcome"] == "deferred"
    (deferred,) = stack.queue.tasks
    assert deferred.payload["pollNumber"] == 2
    # 2 s of queue and 60 s of render, 1 s after a refresh; the store's clock is real time here, so the
    # task is a fraction of a second old
    assert deferred.delay_s == pytest.approx(61.0, abs=1.0)
    assert stack.runway.count("GET", f"/v1/tasks/{task_id}") == gets
    # And the job still ends, its render going into the history
    assert stack.run_until_terminal(job_id, step_s=5)["status"] == "completed"
    assert len(history._renders["runwayml"]) == history.min_samples + 1
