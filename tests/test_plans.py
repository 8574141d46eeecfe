"""The plan rules (pure): what a plan never allows, the ledger's decisions, settling, the limiter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from msgspec.structs import replace

import errors
from config import ConfigError, load_settings
from jobs import plans
from jobs.plans import Entry
from jobs.records import Attempt, AttemptStatus, Job, JobRequest
from providers.base import Status

NOW = datetime(2026, 3, 2, 10, 30, 15, tzinfo=UTC)
SETTINGS = load_settings({"GOOGLE_CLOUD_PROJECT": "p"})
PLAN, FREE = plans.limits_for(SETTINGS, None)
LOOSE = replace(FREE, jobs_per_minute=99, jobs_per_hour=99, jobs_per_day=99, live_jobs=99)


def entries(*ages_s: float, usd: float = 0.0, settled: bool = True) -> dict[str, Entry]:
    return {
        f"j{i}": Entry(at=NOW - timedelta(seconds=a), usd=usd, settled=settled) for i, a in enumerate(ages_s)
    }


def test_plans_come_from_the_tier_claim_and_default_to_free():
    assert plans.limits_for(SETTINGS, "pro")[0] == "pro"
    assert plans.limits_for(SETTINGS, None)[0] == "free"
    assert plans.limits_for(SETTINGS, "platinum") == ("free", SETTINGS.tier_limits["free"])


def test_tier_limits_override_fields_and_add_plans():
    settings = load_settings(
        {"GOOGLE_CLOUD_PROJECT": "p", "TIER_LIMITS": '{"free": {"jobsPerDay": 7}, "team": {"liveJobs": 4}}'}
    )
    assert settings.tier_limits["free"].jobs_per_day == 7
    assert settings.tier_limits["free"].live_jobs == FREE.live_jobs
    assert settings.tier_limits["team"].live_jobs == 4
    assert settings.tier_limits["pro"] == SETTINGS.tier_limits["pro"]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (
            '{"free": {"jobsPerDya": 7}}',
            "TIER_LIMITS is invalid at free: Object contains unknown field `jobs_per_dya`",
        ),
        (
            '{"free": {"qualities": ["ultra"]}}',
            r"TIER_LIMITS is invalid at free.qualities\[0\]: Invalid enum value 'ultra'",
        ),
        ('{"free": 3}', "TIER_LIMITS is invalid"),
        ("{", "TIER_LIMITS is not valid JSON"),
    ],
)
def test_bad_tier_limits_name_the_variable(raw, problem):
    with pytest.raises(ConfigError, match=problem):
        load_settings({"GOOGLE_CLOUD_PROJECT": "p", "TIER_LIMITS": raw})


def test_provider_spend_caps_parse_as_pairs():
    settings = load_settings(
        {"GOOGLE_CLOUD_PROJECT": "p", "PROVIDER_SPEND_CAPS_USD_PER_DAY": "runwayml=20, heygen=5.5"}
    )
    assert settings.provider_spend_caps_usd_per_day == {"runwayml": 20.0, "heygen": 5.5}
    with pytest.raises(ConfigError, match="PROVIDER=USD"):
        load_settings({"GOOGLE_CLOUD_PROJECT": "p", "PROVIDER_SPEND_CAPS_USD_PER_DAY": "runwayml"})


@pytest.mark.parametrize(
    ("script", "request_", "limit"),
    [
        ("x", JobRequest(quality="premium"), "qualities"),
        ("x", JobRequest(duration_s=FREE.max_duration_s + 1), "maxDurationS"),
        ("x" * (FREE.max_script_chars + 1), JobRequest(), "maxScriptChars"),
    ],
)
def test_what_a_plan_never_allows_is_forbidden_naming_the_limit(script, request_, limit):
    with pytest.raises(errors.Forbidden) as caught:
        plans.check_request(PLAN, FREE, script, request_)
    assert (caught.value.code, caught.value.details["limit"]) == ("not_in_plan", limit)


def test_the_longest_allowed_request_passes():
    plans.check_request(PLAN, FREE, "x" * FREE.max_script_chars, JobRequest(duration_s=FREE.max_duration_s))
    plans.check_cost(PLAN, FREE, FREE.usd_per_day)
    with pytest.raises(errors.Forbidden, match="would cost"):
        plans.check_cost(PLAN, FREE, FREE.usd_per_day + 0.01)


def test_an_empty_ledger_is_allowed():
    assert plans.decide(PLAN, FREE, {}, 1.0, NOW) is None


@pytest.mark.parametrize(
    ("field", "limit", "age_s", "wait_s"),
    [
        ("jobs_per_minute", "jobsPerMinute", 10, 45),  # 10:30:15 -> the minute ends at 10:31:00
        ("jobs_per_hour", "jobsPerHour", 600, 29 * 60 + 45),
        ("jobs_per_day", "jobsPerDay", 9 * 3600, 13 * 3600 + 29 * 60 + 45),
    ],
)
def test_a_full_window_refuses_until_it_ends(field, limit, age_s, wait_s):
    limits = replace(LOOSE, **{field: 2})
    refusal = plans.decide(PLAN, limits, entries(age_s, age_s), 0.0, NOW)
    assert (refusal.limit, refusal.retry_after_s) == (limit, wait_s)
    assert plans.decide(PLAN, limits, entries(age_s), 0.0, NOW) is None


def test_jobs_of_an_earlier_window_do_not_count():
    limits = replace(LOOSE, jobs_per_minute=1)
    assert plans.decide(PLAN, limits, entries(16), 0.0, NOW) is None  # 10:29:59, the minute before


def test_live_jobs_count_until_settled():
    limits = replace(LOOSE, live_jobs=1)
    assert plans.decide(PLAN, limits, entries(3600, settled=False), 0.0, NOW).limit == "liveJobs"
    assert plans.decide(PLAN, limits, entries(3600, settled=True), 0.0, NOW) is None


def test_spend_counts_todays_jobs_and_the_new_estimate():
    limits = replace(LOOSE, usd_per_day=10.0)
    today = entries(60, 120, usd=4.0)
    assert plans.decide(PLAN, limits, today, 2.0, NOW) is None
    refusal = plans.decide(PLAN, limits, today, 2.01, NOW)
    assert refusal.limit == "usdPerDay"
    assert "$8.00 is used" in refusal.message
    yesterday = entries(11 * 3600, usd=9.0)
    assert plans.decide(PLAN, limits, yesterday, 9.0, NOW) is None


def test_the_limit_that_binds_longest_is_reported():
    limits = replace(LOOSE, jobs_per_minute=1, jobs_per_day=1)
    assert plans.decide(PLAN, limits, entries(5), 0.0, NOW).limit == "jobsPerDay"


def job(status: Status, *, actual: float | None = None, task: str | None = None) -> Job:
    attempts = (Attempt("j0-a1", 1, "runwayml", AttemptStatus.FAILED, task_id=task),)
    return Job("j0", "u", status, attempts=attempts if task else (), actual_cost_usd=actual)


def test_settling_uses_the_actual_cost_of_an_ended_job():
    entry = Entry(at=NOW, usd=3.0)
    assert plans.settle(entry, job(Status.COMPLETED, actual=1.5), NOW) == Entry(NOW, 1.5, True)
    assert plans.settle(entry, job(Status.PROCESSING), NOW) == entry
    assert plans.settle(entry, job(Status.FAILED), NOW) == Entry(NOW, 0.0, True)  # no provider took it
    assert plans.settle(entry, job(Status.CANCELLED, task="t1"), NOW) == Entry(NOW, 3.0, True)


def test_a_job_not_written_yet_counts_as_live_for_a_grace_period():
    entry = Entry(at=NOW, usd=3.0)
    assert plans.settle(entry, None, NOW + timedelta(seconds=5)) == entry
    assert plans.settle(entry, None, NOW + plans.PENDING_GRACE) == Entry(NOW, 0.0, True)


def test_pruning_keeps_today_and_whatever_is_live():
    ledger = entries(60) | {
        "old-live": Entry(NOW - timedelta(days=1)),
        "old": Entry(NOW - timedelta(days=1), settled=True),
    }
    assert sorted(plans.prune(ledger, NOW)) == ["j0", "old-live"]


def test_the_call_limiter_counts_per_user_and_minute():
    now = [600.0]
    limiter = plans.CallLimiter(clock=lambda: now[0])
    assert [limiter.take("a", 2) for _ in range(2)] == [None, None]
    assert limiter.take("a", 2) == 60.0
    assert limiter.take("b", 2) is None
    now[0] = 660.0
    assert limiter.take("a", 2) is None


def test_throttle_refuses_users_but_never_operators():
    limiter = plans.CallLimiter(clock=lambda: 0.0)
    settings = load_settings(
        {"GOOGLE_CLOUD_PROJECT": "p", "TIER_LIMITS": '{"free": {"statusChecksPerMinute": 1}}'}
    )
    plans.throttle(limiter, settings, "u", None)
    with pytest.raises(errors.OverLimit) as caught:
        plans.throttle(limiter, settings, "u", None)
    assert caught.value.details["limit"] == "statusChecksPerMinute"
    for _ in range(5):
        plans.throttle(limiter, settings, None, None)
