"""Crash windows: a process that dies at each point between two durable steps leaves no job behind.

A crash is simulated by a collaborator of our own that raises at the exact point -- a store that dies
before or after one call, a queue that dies on enqueue -- handed to the entry point for one request
(`deps.use`), after which the next request meets healthy collaborators, as a restarted instance
would. Time past the cleanup's grace periods is given to the cleanup as a later clock.

    window                                      resolved by                      outcome
    attempt reserved, create never sent         cleanup: attempt `unknown`       next provider, or failed
    create sent, record never written           cleanup: attempt `unknown`       next provider (never the
                                                                                 same one again), or failed
    record written, first poll never enqueued   cleanup: poll now, new chain     finished by polling
    poll applied, next poll never enqueued      Cloud Tasks' retry re-enqueues;  finished by polling
                                                when retries ran out, cleanup
    webhook event recorded, work never done     nothing: polling finishes        a lost hint, not a lost job
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from jobs.events import EventLog
from jobs.runner import Runner
from jobs.txn import utcnow
from providers.heygen.webhook import event_id_of
from tasks.cleanup import NEVER_CHECKED_GRACE, SUBMIT_GRACE, Cleanup
from tasks.poll import FirstPoll, Poller
from tasks.queue import QueueError, TaskQueue
from tests.stack import TASKS_SA
from tests.test_auth_matrix import heygen_delivery
from web import deps


class Crash(BaseException):
    """The process stops here (a BaseException, like the SystemExit of a killed worker)."""


class CrashingStore:
    """The real store, except that one method dies `before` it runs or `after` it returned."""

    def __init__(self, store: Any, method: str, when: str = "after") -> None:
        self._store, self._method, self._when = store, method, when

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._store, name)
        if name != self._method:
            return real

        def dying(*args: Any, **kwargs: Any) -> Any:
            if self._when == "after":
                real(*args, **kwargs)
            raise Crash(f"died {self._when} {name}")

        return dying


class DeadQueue(TaskQueue):
    """A queue whose every enqueue dies: the process stops right before the task would exist."""

    def enqueue(self, *, function: str, payload: dict[str, Any], name_key: str, delay_s: float) -> bool:
        raise Crash(f"died before enqueueing {function}")


class UnreachableQueue(TaskQueue):
    """Cloud Tasks cannot be reached: the handler must answer 5xx so the delivery is retried."""

    def enqueue(self, *, function: str, payload: dict[str, Any], name_key: str, delay_s: float) -> bool:
        raise QueueError("Cloud Tasks is unavailable", code="unavailable", retryable=True)


def wired(stack, *, store: Any = None, queue: Any = None) -> deps.Deps:
    """The stack's collaborators, rebuilt over `store` and `queue` as `deps.build` wires them."""
    d = stack.deps
    store, queue = store or d.store, queue or d.queue
    runner = Runner(store, d.providers, FirstPoll(queue), admit=d.runner.admit, observe=d.runner.observe)
    poller = Poller(store, d.providers, queue, runner)
    return dataclasses.replace(d, store=store, queue=queue, runner=runner, poller=poller)


def one_request(stack, broken: deps.Deps, call: Callable[[], Any]) -> Any:
    """Serve one request with `broken` collaborators, then go back to healthy ones (the restart)."""
    deps.use(broken)
    try:
        return call()
    finally:
        deps.use(stack.deps)


def dies(stack, crashing: deps.Deps, call: Callable[[], Any]) -> None:
    """One request during which the process dies: no answer at all."""
    with pytest.raises(Crash):
        one_request(stack, crashing, call)


def cleanup(stack, later: timedelta) -> dict[str, Any]:
    d = stack.deps
    clock = lambda: utcnow() + later  # noqa: E731
    return Cleanup(d.store, d.providers, d.poller, d.runner, d.queue, None, d.settings, clock=clock).run()


def poll(stack, payload: dict[str, Any]) -> Any:
    headers = stack.service(TASKS_SA, "runwayml_polling_task")
    return stack.client("runwayml_polling_task").post("/", json=payload, headers=headers)


def runway_creates(stack) -> int:
    return sum(stack.runway.creates.values())


def the_job(stack) -> Any:
    (snap,) = stack.deps.store.client.collection(stack.settings.jobs_collection).stream()
    return stack.deps.store.get_job(snap.id)


# -- before and after the provider create -----------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "method", "when", "sent"),
    [
        ("runwayml", "record_submission", "before", 1),  # create sent, record never written
        ("heygen", "record_submission", "before", 1),
        ("runwayml", "create_job", "after", 0),  # job created with its attempt reserved, create never sent
    ],
)
def test_a_crash_around_the_create_is_resolved_by_the_cleanup_and_the_job_falls_back(
    stack, provider, method, when, sent
):
    crashing = wired(stack, store=CrashingStore(stack.deps.store, method, when))
    dies(stack, crashing, lambda: stack.generate(key="k1", provider=provider))
    job = the_job(stack)
    assert (job.status, str(job.current_attempt.status)) == ("queued", "submitting")
    creates = {"runwayml": lambda: runway_creates(stack), "heygen": lambda: len(stack.heygen.videos)}
    assert creates[provider]() == sent
    assert stack.queue.tasks == []

    retried = stack.generate(key="k1", provider=provider)  # the app retries: the same job, nothing sent
    assert (retried.status_code, retried.get_json()["jobId"]) == (200, job.job_id)
    assert cleanup(stack, SUBMIT_GRACE - timedelta(minutes=1))["crashWindows"] == {}  # still in its grace

    report = cleanup(stack, SUBMIT_GRACE + timedelta(minutes=1))
    assert report["crashWindows"] == {"resolve_submitting": 1}
    done = stack.run_until_terminal(job.job_id, step_s=60)
    assert done["status"] == "completed"
    first, second = done["attempts"]
    assert (first["provider"], first["status"]) == (provider, "unknown")
    assert second["provider"] != provider
    assert second["status"] == "succeeded"
    assert creates[provider]() == sent, "the first provider was asked again"


def test_a_crash_after_the_create_with_no_provider_left_fails_the_job(stack_factory):
    stack = stack_factory(HEYGEN_API_KEY="")  # RunwayML only
    crashing = wired(stack, store=CrashingStore(stack.deps.store, "record_submission", "before"))
    dies(stack, crashing, lambda: stack.generate(key="k2"))
    job = the_job(stack)
    cleanup(stack, SUBMIT_GRACE + timedelta(minutes=1))
    job = stack.deps.store.get_job(job.job_id)
    assert job.status == "failed"
    assert job.error["code"] == "outcome_unknown"
    assert runway_creates(stack) == 1


# -- after the record, before the first poll ---------------------------------------------------------


def test_a_crash_before_the_first_poll_is_enqueued_is_found_and_finished_by_the_cleanup(stack):
    dies(stack, wired(stack, queue=DeadQueue()), lambda: stack.generate(provider="runwayml"))
    job = the_job(stack)
    assert str(job.current_attempt.status) == "active"
    assert stack.queue.tasks == []
    assert cleanup(stack, NEVER_CHECKED_GRACE - timedelta(seconds=30))["crashWindows"] == {}

    stack.clock.advance(60)
    report = cleanup(stack, NEVER_CHECKED_GRACE + timedelta(minutes=1))
    assert report["crashWindows"] == {"poll": 1}  # looked at now; polled again unless it had finished
    assert stack.run_until_terminal(job.job_id)["status"] == "completed"
    assert runway_creates(stack) == 1


def test_the_apps_repeat_after_the_lost_answer_resumes_the_polling_at_once(stack):
    request = lambda: stack.generate(key="k-crash", provider="runwayml")  # noqa: E731
    dies(stack, wired(stack, queue=DeadQueue()), request)
    assert stack.queue.tasks == []
    repeat = request()  # the app retries the request whose answer it never got
    assert repeat.status_code == 200
    (poll,) = stack.queue.tasks
    assert (poll.function, poll.payload["pollNumber"]) == ("runwayml_polling_task", 1)
    assert stack.run_until_terminal(repeat.get_json()["jobId"])["status"] == "completed"
    assert runway_creates(stack) == 1


# -- between a poll's apply and its next enqueue -------------------------------------------------------


@pytest.mark.parametrize("queue_down", [True, False], ids=["queue-unreachable", "died-after-apply"])
def test_a_poll_that_dies_after_applying_is_redelivered_and_re_enqueues_its_successor(stack, queue_down):
    job_id = stack.generate(provider="runwayml").get_json()["jobId"]
    (first,) = stack.queue.take()
    stack.clock.advance(5)
    if queue_down:  # Cloud Tasks unreachable: the handler answers 5xx, so the delivery is retried
        answer = one_request(
            stack, wired(stack, queue=UnreachableQueue()), lambda: poll(stack, first.payload)
        )
        assert answer.status_code >= 500
    else:  # the instance died after the transaction: no answer, the delivery is retried
        crashing = wired(stack, store=CrashingStore(stack.deps.store, "apply_snapshot", "after"))
        dies(stack, crashing, lambda: poll(stack, first.payload))
    task = stack.deps.store.get_task("runwayml", first.payload["taskId"])
    assert task.last_poll_number == 1
    assert stack.queue.tasks == []
    reads = stack.runway.count("GET", "/v1/tasks/")

    again = poll(stack, first.payload)
    assert (again.status_code, again.get_json()["outcome"]) == (200, "rescheduled")
    assert stack.runway.count("GET", "/v1/tasks/") == reads  # applied once, not fetched again
    assert [t.payload["pollNumber"] for t in stack.queue.tasks] == [2]
    assert stack.run_until_terminal(job_id, step_s=30)["status"] == "completed"


def test_when_the_retries_ran_out_the_cleanup_restarts_the_polling(stack):
    job_id = stack.generate(provider="runwayml").get_json()["jobId"]
    (first,) = stack.queue.take()
    one_request(stack, wired(stack, queue=UnreachableQueue()), lambda: poll(stack, first.payload))
    assert stack.queue.tasks == []  # every retry failed the same way; Cloud Tasks gave up
    report = cleanup(stack, timedelta(minutes=5))
    assert report["crashWindows"] == {"poll": 1}
    assert stack.run_until_terminal(job_id, step_s=30)["status"] == "completed"


# -- a webhook whose work never happened -------------------------------------------------------------


def test_a_webhook_event_recorded_by_an_instance_that_died_loses_a_hint_not_the_job(stack_factory):
    stack = stack_factory(HEYGEN_WEBHOOK_SECRET="whsec_crash-test")
    job_id = stack.generate().get_json()["jobId"]
    video_id = stack.deps.store.get_job(job_id).current_attempt.task_id
    body, headers = heygen_delivery(video_id, event_id="evt-lost", secret="whsec_crash-test")
    event_id = event_id_of(body)  # HeyGen events are deduped on a hash of the signed body
    EventLog(stack.deps.store.client, stack.settings).first_delivery("heygen", event_id)  # then it died
    stack.clock.advance(3600)
    retried = stack.client("heygen_webhook").post(
        "/", data=body, headers=headers, content_type="application/json"
    )
    assert retried.get_json() == {"duplicate": True}
    assert stack.run_until_terminal(job_id, step_s=60)["status"] == "completed"
