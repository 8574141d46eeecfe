"""The request budget's window math and decisions: fixed epoch-aligned windows, exact Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config import load_settings
from providers import registry
from providers.quota import (
    ALLOWED,
    QuotaDecision,
    Window,
    bucket_of,
    counter_id,
    decide,
    describe,
    parse_limits,
    window_end,
    window_start,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)  # a day, hour and minute boundary
RUNWAY = parse_limits(registry.spec("runwayml").default_quota)


def test_the_defaults_are_the_documented_budgets():
    assert (Window(60, 25), Window(3600, 100), Window(86400, 500)) == RUNWAY
    heygen = parse_limits(registry.spec("heygen").default_quota)
    assert heygen == (Window(60, 20), Window(3600, 200), Window(86400, 1000))


def test_the_spec_default_applies_until_the_setting_overrides_it():
    runwayml = registry.spec("runwayml")
    assert runwayml.quota(load_settings({"GOOGLE_CLOUD_PROJECT": "p"})) == runwayml.default_quota
    settings = load_settings({"GOOGLE_CLOUD_PROJECT": "p", "RUNWAYML_QUOTA": "0/60"})
    assert runwayml.quota(settings) == "0/60"


def test_limits_parse_in_any_order_with_spaces():
    assert parse_limits(" 100/3600 , 25/60") == (Window(60, 25), Window(3600, 100))
    assert parse_limits("0/60") == (Window(60, 0),)


@pytest.mark.parametrize("spec", ["", "25", "25/0", "a/60", "-1/60", "25/60,30/60", "25/60/1"])
def test_malformed_limits_are_refused(spec):
    with pytest.raises(ValueError, match="quota"):
        parse_limits(spec)


def test_windows_have_names_and_short_codes():
    assert [(w.name, w.code) for w in RUNWAY] == [("minute", "m"), ("hour", "h"), ("day", "d")]
    assert (Window(30, 5).name, Window(30, 5).code) == ("30s", "30s")


# -- buckets --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "seconds", "start"),
    [
        (T0, 60, T0),
        (T0 - timedelta(microseconds=1), 60, T0 - timedelta(minutes=1)),
        (T0 + timedelta(seconds=59, microseconds=999_999), 60, T0),
        (T0 + timedelta(minutes=61), 3600, T0 + timedelta(hours=1)),
        (T0 + timedelta(hours=23, minutes=59), 86400, T0),
    ],
)
def test_windows_are_aligned_to_the_epoch(now, seconds, start):
    assert window_start(now, seconds) == start
    assert window_end(now, seconds) == start + timedelta(seconds=seconds)


def test_bucket_numbers_count_windows_since_the_epoch():
    assert bucket_of(T0, 86400) == 20454  # days from 1970-01-01 to 2026-01-01
    assert bucket_of(T0, 60) == 20454 * 1440
    assert bucket_of(T0 + timedelta(seconds=60), 60) == bucket_of(T0, 60) + 1


def test_bucket_math_does_not_depend_on_the_time_zone():
    elsewhere = T0.astimezone(ZoneInfo("Asia/Kolkata"))
    assert bucket_of(elsewhere, 86400) == bucket_of(T0, 86400)


def test_counter_ids_name_provider_window_and_bucket():
    assert counter_id("runwayml", RUNWAY[0], T0) == f"runwayml_m_{20454 * 1440}_0"
    assert counter_id("heygen", RUNWAY[2], T0, shard=3) == "heygen_d_20454_3"


moments = st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC))


@settings(max_examples=200, deadline=None)
@given(moments, st.sampled_from([60, 3600, 86400, 45]))
def test_every_moment_lies_in_exactly_its_window(now, seconds):
    start, end = window_start(now, seconds), window_end(now, seconds)
    assert start <= now < end
    assert (end - start).total_seconds() == seconds
    assert bucket_of(end, seconds) == bucket_of(now, seconds) + 1


# -- decisions ------------------------------------------------------------------------------------


def test_below_every_limit_is_allowed():
    assert decide({"minute": 24, "hour": 99, "day": 499}, RUNWAY, T0) == ALLOWED
    assert decide({}, RUNWAY, T0).allowed


def test_a_full_minute_refuses_until_the_minute_ends():
    now = T0 + timedelta(seconds=42.5)
    decision = decide({"minute": 25, "hour": 25, "day": 25}, RUNWAY, now)
    assert decision == QuotaDecision(allowed=False, retry_after_s=17.5, window="minute")


def test_a_full_hour_refuses_until_the_hour_ends_even_in_a_fresh_minute():
    now = T0 + timedelta(minutes=10, seconds=5)
    decision = decide({"minute": 0, "hour": 100, "day": 100}, RUNWAY, now)
    assert (decision.allowed, decision.window, decision.retry_after_s) == (False, "hour", 50 * 60 - 5)


def test_when_several_windows_are_full_the_longest_wait_is_reported():
    now = T0 + timedelta(hours=3, seconds=30)
    decision = decide({"minute": 25, "hour": 100, "day": 500}, RUNWAY, now)
    assert decision.window == "day"
    assert decision.retry_after_s == (T0 + timedelta(days=1) - now).total_seconds()


def test_a_zero_limit_refuses_everything():
    decision = decide({}, parse_limits("0/60"), T0)
    assert (decision.allowed, decision.retry_after_s) == (False, 60.0)


def test_usage_describes_each_window():
    view = describe({"minute": 3}, RUNWAY, T0 + timedelta(seconds=1))
    assert view["minute"] == {"count": 3, "limit": 25, "remaining": 22, "resetsAt": T0 + timedelta(minutes=1)}
    assert view["day"]["remaining"] == 500


def test_a_decision_is_plain_data_for_a_document():
    assert QuotaDecision(False, 3.0, "minute").to_doc() == {
        "allowed": False,
        "retryAfterS": 3.0,
        "window": "minute",
    }
