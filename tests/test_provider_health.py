"""`provider_health`: the statistics as pure functions, then the function once against the stack."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobs.records import job_from_doc
from jobs.txn import utcnow
from tasks.monitoring import mean, percentile, provider_stats, ratio
from tests.stack import OPS_SA, TASKS_SA

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FUNCTION = "provider_health"


def job(status, *attempts, seconds=None, cost=None, job_id="j"):
    """A job whose attempts are (provider, attempt status) pairs, ended `seconds` after creation."""
    doc = {
        "jobId": job_id,
        "ownerUid": "u",
        "status": status,
        "createdAt": T0,
        "endedAt": None if seconds is None else T0 + timedelta(seconds=seconds),
        "actualCostUsd": cost,
        "attempts": [
            {"attemptId": f"{job_id}-a{n}", "number": n, "provider": p, "status": s}
            for n, (p, s) in enumerate(attempts, 1)
        ],
    }
    return job_from_doc(doc)


# -- pure statistics ----------------------------------------------------------------------------------


def test_percentile_is_the_nearest_rank_value():
    values = list(range(1, 21))
    assert percentile(values, 95) == 19
    assert percentile(values, 100) == 20
    assert percentile(values, 0) == 1
    assert percentile([7.5], 95) == 7.5
    assert percentile([30, 10, 20], 50) == 20


def test_statistics_of_nothing_are_none_not_zero():
    assert (mean([]), percentile([], 95), ratio(0, 0)) == (None, None, None)
    stats = provider_stats([], "heygen")
    assert stats["successRate"] is None
    assert stats["avgGenerationSeconds"] is None
    assert stats["jobsEnded"] == 0


def test_completed_jobs_give_times_and_costs_for_their_provider():
    jobs = [
        job("completed", ("heygen", "succeeded"), seconds=300, cost=0.5, job_id="a"),
        job("completed", ("heygen", "succeeded"), seconds=600, cost=1.5, job_id="b"),
        job("completed", ("runwayml", "succeeded"), seconds=40, cost=0.6, job_id="c"),
    ]
    heygen = provider_stats(jobs, "heygen")
    assert (heygen["jobsEnded"], heygen["successRate"]) == (2, 1.0)
    assert (heygen["avgGenerationSeconds"], heygen["p95GenerationSeconds"]) == (450.0, 600.0)
    assert heygen["avgCostUsd"] == 1.0
    assert provider_stats(jobs, "runwayml")["avgGenerationSeconds"] == 40.0


def test_failures_count_against_the_success_rate_and_a_users_cancel_does_not():
    jobs = [
        job("completed", ("heygen", "succeeded"), seconds=300, job_id="a"),
        job("failed", ("heygen", "failed"), seconds=100, job_id="b"),
        job("timed_out", ("heygen", "cancelled"), seconds=1800, job_id="c"),
        job("cancelled", ("heygen", "cancelled"), seconds=10, job_id="d"),
    ]
    stats = provider_stats(jobs, "heygen")
    assert stats["successRate"] == pytest.approx(1 / 3)
    assert stats["byStatus"] == {"completed": 1, "failed": 1, "timed_out": 1, "cancelled": 1}
    assert stats["avgGenerationSeconds"] == 300.0  # completed jobs only


def test_a_failure_hidden_by_a_fallback_still_counts_against_the_first_provider():
    jobs = [job("completed", ("heygen", "failed"), ("runwayml", "succeeded"), seconds=90, cost=0.4)]
    heygen, runway = provider_stats(jobs, "heygen"), provider_stats(jobs, "runwayml")
    assert (heygen["jobsEnded"], heygen["attemptSuccessRate"], heygen["attemptFailures"]) == (0, 0.0, 1)
    assert (runway["jobsEnded"], runway["successRate"], runway["attemptSuccessRate"]) == (1, 1.0, 1.0)


def test_live_jobs_are_left_out():
    stats = provider_stats([job("processing", ("heygen", "active"))], "heygen")
    assert (stats["jobsEnded"], stats["attemptSuccessRate"]) == (0, None)


# -- the function ---------------------------------------------------------------------------------------


def finished_job(stack, **body):
    answer = stack.generate(**body)
    assert answer.status_code == 202, answer.get_json()
    return stack.run_until_terminal(answer.get_json()["jobId"], step_s=120)


def get(stack, headers=None, **query):
    headers = stack.service(OPS_SA, FUNCTION) if headers is None else headers
    return stack.client(FUNCTION).get("/", query_string=query, headers=headers)


def test_the_ops_account_sees_health_circuit_quota_and_job_statistics(stack):
    heygen_job = finished_job(stack)
    finished_job(stack, provider="runwayml")
    answer = get(stack)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert (body["windowHours"], body["jobsConsidered"], body["truncated"]) == (24, 2, False)
    heygen = body["providers"]["heygen"]
    assert heygen["health"]["reachable"] is True
    assert heygen["health"]["balanceUsd"] is not None
    assert heygen["circuit"]["state"] == "closed"
    assert heygen["quota"]["minute"]["count"] == 1
    assert heygen["spend"]["spendUsdToday"] > 0  # the create's estimate, sent today
    assert heygen["spend"]["totalSpendCapUsd"] == stack.settings.spend_cap_usd_per_day
    jobs = heygen["jobs"]
    assert (jobs["jobsEnded"], jobs["successRate"], jobs["byStatus"]) == (1, 1.0, {"completed": 1})
    expected = (heygen_job["endedAt"] - heygen_job["createdAt"]).total_seconds()
    assert jobs["avgGenerationSeconds"] == jobs["p95GenerationSeconds"] == pytest.approx(expected)
    assert jobs["avgCostUsd"] == heygen_job["actualCostUsd"]
    runway = body["providers"]["runwayml"]
    assert runway["jobs"]["jobsEnded"] == 1
    assert runway["health"]["creditBalance"] > 0
    assert runway["health"]["limits"]["gen4.5"]["maxConcurrent"] is not None


def test_jobs_that_ended_before_the_window_are_left_out(stack):
    finished_job(stack)
    stack.deps.store.clock = lambda: utcnow() + timedelta(hours=2)
    body = get(stack, windowHours=1).get_json()
    assert (body["windowHours"], body["jobsConsidered"]) == (1, 0)
    assert body["providers"]["heygen"]["jobs"]["successRate"] is None


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (lambda s: {}, 401),
        (lambda s: s.user("alice"), 403),
        (lambda s: s.service(TASKS_SA, FUNCTION), 403),
    ],
)
def test_only_the_ops_account_may_look(stack, headers, status):
    assert get(stack, headers=headers(stack)).status_code == status


@pytest.mark.parametrize("window", ["0", "721", "day"])
def test_a_bad_window_is_a_400_naming_it(stack, window):
    answer = get(stack, windowHours=window)
    assert answer.status_code == 400
    assert "windowHours" in answer.get_json()["error"]["message"]


def test_a_post_is_405(stack):
    headers = stack.service(OPS_SA, FUNCTION)
    assert stack.client(FUNCTION).post("/", json={}, headers=headers).status_code == 405
