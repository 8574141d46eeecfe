"""The structured log lines the log-based metrics of docs/OPERATIONS.md are built from: each has a
stable `event` and is written once per occurrence."""

from __future__ import annotations

from datetime import timedelta

from jobs.store import NewJob
from providers import prompts
from providers.circuit import Outcome
from tests.stack import SCRIPT
from tests.test_cleanup import cleanup
from tests.test_finalize import finalizing_job
from tests.test_logs import lines  # noqa: F401 - the fixture
from web.schemas import GenerateRequest


def events(lines, name: str) -> list[dict]:  # noqa: F811
    return [line for line in lines if line.get("event") == name]


def test_a_job_that_ends_is_logged_once_with_its_status_and_provider(stack, lines):  # noqa: F811
    answer = stack.generate(provider="runwayml")
    stack.run_until_terminal(answer.get_json()["jobId"])
    (ended,) = events(lines, "job_ended")
    assert ended["jobId"] == answer.get_json()["jobId"]
    assert (ended["status"], ended["provider"]) == ("completed", "runwayml")


def test_a_fallback_is_logged_with_both_providers(stack_factory, lines):  # noqa: F811
    stack = stack_factory(heygen={"balance_usd": 0.0})
    assert stack.generate().status_code == 202
    (fallback,) = events(lines, "fallback")
    assert (fallback["provider"], fallback["toProvider"]) == ("heygen", "runwayml")


def test_a_circuit_that_opens_is_logged_once(stack, lines):  # noqa: F811
    for _ in range(stack.settings.circuit_failure_threshold + 2):
        stack.deps.health.record("heygen", Outcome.UNAVAILABLE)
    (opened,) = events(lines, "circuit_opened")
    assert opened["provider"] == "heygen"
    assert opened["severity"] == "WARNING"


def test_a_refusal_by_the_projects_budget_is_logged(stack_factory, lines):  # noqa: F811
    stack = stack_factory(HEYGEN_QUOTA="0/60", RUNWAYML_QUOTA="0/60")
    assert stack.generate().status_code == 429
    (refused,) = events(lines, "limit_refused")
    assert (refused["status"], refused["function"]) == (429, "generate_video")


def test_every_5xx_answer_is_logged_as_http_5xx_with_the_function(stack_factory, lines):  # noqa: F811
    stack = stack_factory(HEYGEN_AVATAR_ID="")
    assert stack.generate().status_code == 503
    (line,) = events(lines, "http_5xx")
    assert (line["function"], line["status"], line["code"]) == ("generate_video", 503, "misconfigured")


def test_a_stuck_job_resolved_by_the_cleanup_is_logged(stack, lines):  # noqa: F811
    new = NewJob(
        owner_uid="alice",
        request=GenerateRequest(script=SCRIPT).job_request(),
        candidates=("heygen", "runwayml"),
        prompt=prompts.build_prompt(SCRIPT).to_dict(),
    )
    job, _ = stack.deps.store.create_job(new)
    stack.deps.store.begin_attempt(job.job_id, "heygen")
    cleanup(stack, timedelta(minutes=6)).run()
    (stuck,) = events(lines, "stuck_job")
    assert stuck["jobId"] == job.job_id
    assert (stuck["action"], stuck["provider"]) == ("resolve_submitting", "heygen")


def test_a_finalize_given_up_is_logged(stack_factory, lines):  # noqa: F811
    stack = stack_factory(storage=True)
    job_id = finalizing_job(stack)
    stack.queue.take()
    cleanup(stack, timedelta(days=1)).run()
    (failed,) = events(lines, "finalize_failed")
    assert failed["jobId"] == job_id
