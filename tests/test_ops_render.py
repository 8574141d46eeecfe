"""What the operator CLI prints, without a stack: times, money, yes/no, and each command's view."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from ops import render

SAMPLE_JOB = {
    "jobId": "job-1",
    "status": "completed",
    "progress": 100.0,
    "provider": "runwayml",
    "qualityScore": 87,
    "attempts": [{"number": 1, "provider": "runwayml", "status": "succeeded", "error": None}],
    "estimatedCostUsd": 0.33349999999999996,
    "actualCostUsd": 0.6,
    "createdAt": "2026-11-29 14:53:13.134148+00:00",
    "endedAt": "2026-11-29 14:53:20.9+00:00",
    "output": {
        "download": {"url": "http://store/video.mp4", "expiresAt": None},
        "gifDownload": {"url": "http://store/video.gif", "expiresAt": None},
        "videoUrls": ["http://provider/video.mp4"],
    },
    "selection": {
        "candidates": ["runwayml"],
        "reasons": {"runwayml": ["cheap (+5)"]},
        "scores": {"runwayml": 5},
    },
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-29 14:53:13.134148+00:00", "2026-11-29T14:53:13Z"),
        ("2026-11-29T14:53:13Z", "2026-11-29T14:53:13Z"),
        ("2026-11-29T16:53:13.9+02:00", "2026-11-29T14:53:13Z"),
        (dt.datetime(2026, 11, 29, 14, 53, 13, 999999, tzinfo=dt.UTC), "2026-11-29T14:53:13Z"),
        (dt.datetime(2026, 11, 29, 14, 53, 13), "2026-11-29T14:53:13Z"),
        (None, "—"),
        ("soon", "soon"),
    ],
)
def test_timestamps_are_iso_utc_to_the_second_with_z(value, expected):
    assert render.timestamp(value) == expected


def test_money_is_shown_in_cents():
    assert render.usd(0.33349999999999996) == "$0.33"
    assert render.usd(4) == "$4.00"
    assert render.usd(None) == "—"


def test_tables_say_yes_and_no_for_booleans():
    text = render.table(("job", "refreshed", "stuck"), [["a", True, None], ["b", False, "past_deadline"]])
    assert text.splitlines() == ["job  refreshed  stuck", "a    yes", "b    no         past_deadline"]
    assert "True" not in text
    assert "False" not in text


def test_json_output_cleans_times_and_money_at_any_depth_and_keeps_the_rest():
    payload = {
        "job": SAMPLE_JOB,
        "since": dt.datetime(2026, 11, 28, 14, 0, 0, 123, tzinfo=dt.UTC),
        "providers": {"heygen": {"jobs": {"avgCostUsd": 0.33349999999999996, "successRate": 0.3333333}}},
        "reachable": True,
        "deadlineAt": None,
    }
    parsed = json.loads(render.to_json(payload))
    assert parsed["job"]["createdAt"] == "2026-11-29T14:53:13Z"
    assert parsed["job"]["estimatedCostUsd"] == 0.33
    assert parsed["since"] == "2026-11-28T14:00:00Z"
    assert parsed["providers"]["heygen"]["jobs"] == {"avgCostUsd": 0.33, "successRate": 0.3333333}
    assert parsed["reachable"] is True
    assert parsed["deadlineAt"] is None


def test_job_details_show_quality_prompt_times_cents_and_both_links():
    text = render.job_details(SAMPLE_JOB, prompt="A lead engineer at work")
    lines = dict(line.split(None, 1) for line in text.splitlines() if not line.startswith("selection"))
    assert lines["quality"] == "87/100"
    assert lines["prompt"] == "A lead engineer at work"
    assert lines["created"] == "2026-11-29T14:53:13Z"
    assert lines["cost"] == "estimated $0.33, actual $0.60"
    assert lines["gif"] == "http://store/video.gif"
    assert "output     http://store/video.mp4" in text
    assert "output     http://provider/video.mp4" in text


def test_a_job_without_a_gif_or_a_prompt_has_no_such_lines():
    job = {**SAMPLE_JOB, "output": {"videoUrls": ["http://provider/video.mp4"]}, "qualityScore": None}
    text = render.job_details(job)
    labels = [line.split()[0] for line in text.splitlines()]
    assert "gif" not in labels
    assert "prompt" not in labels
    assert "quality    —" in text.splitlines()


def test_health_row_shows_the_tightest_budget_window_and_the_balance():
    info = {
        "health": {"reachable": True, "latencyMs": 2.4, "balanceUsd": 995.998, "creditBalance": None},
        "circuit": {"state": "closed"},
        "quota": {
            "minute": {"count": 0, "limit": 20, "remaining": 20},
            "hour": {"count": 150, "limit": 200, "remaining": 50},
            "day": {"count": 300, "limit": 1000, "remaining": 700},
        },
        "spend": {
            "spendUsdToday": 3.2,
            "spendCapUsd": 200,
            "totalSpendUsdToday": 4.5,
            "totalSpendCapUsd": 500,
        },
        "jobs": {"jobsEnded": 3, "successRate": 2 / 3, "avgGenerationSeconds": 12.4, "avgCostUsd": 0.3335},
    }
    row = render.health_row("heygen", info)
    assert dict(zip(render.HEALTH_COLUMNS, row, strict=True)) == {
        "provider": "heygen",
        "reachable": True,
        "latency": "2 ms",
        "circuit": "closed",
        "budget left": "50/200 per hour",
        "spent today": "$3.20 of $200.00 ($4.50 of $500.00 in all)",
        "balance": "$996.00",
        "jobs ended": 3,
        "success": "67%",
        "avg s": "12",
        "avg cost": "$0.33",
    }


@pytest.mark.parametrize(
    ("live", "expected"),
    [
        ({"balanceUsd": None, "creditBalance": 99940.0}, "99940 credits"),
        ({"balanceUsd": None, "creditBalance": None}, "—"),
        ({}, "—"),
    ],
)
def test_balance_falls_back_to_credits_then_to_a_dash(live, expected):
    assert render.balance(live) == expected


def test_no_budget_configured_is_a_dash():
    assert render.budget({}) == "—"
    assert render.budget(None) == "—"


def test_batch_check_rows_and_summary():
    found = {
        "jobId": "a",
        "found": True,
        "status": "processing",
        "progress": 40.0,
        "provider": "runwayml",
        "refreshed": True,
        "refreshError": None,
        "stuck": "past_deadline",
    }
    missing = {"jobId": "b", "found": False, "error": {"code": "not_found"}}
    text = render.table(render.BATCH_COLUMNS, [render.batch_row(found), render.batch_row(missing)])
    assert text.splitlines()[1].split() == ["a", "processing", "40%", "runwayml", "yes", "past_deadline"]
    assert text.splitlines()[2].split() == ["b", "not", "found", "—", "—", "—"]
    summary = {
        "total": 2,
        "found": 1,
        "notFound": 1,
        "byStatus": {"processing": 1},
        "refreshed": 1,
        "refreshErrors": 0,
        "stuck": [{"jobId": "a", "reason": "past_deadline"}],
    }
    assert render.batch_summary(summary) == (
        "2 jobs: 1 found, 1 not found; processing 1; 1 refreshed, 0 refresh errors; stuck: a (past_deadline)"
    )


def test_cleanup_report_is_a_table_of_steps():
    report = {
        "dryRun": True,
        "complete": False,
        "errors": [{"step": "finalize", "code": "RetryError"}],
        "retention": {"jobs": 2, "taskRecords": 3},
        "deadline": {},
    }
    lines = render.cleanup_report(report).splitlines()
    assert lines[0] == "cleanup (dry run: nothing changed); complete: no"
    assert [line.split() for line in lines[1:5]] == [
        ["step", "what", "count"],
        ["retention", "jobs", "2"],
        ["retention", "taskRecords", "3"],
        ["deadline", "—", "0"],
    ]
    assert lines[-1] == "step finalize failed: RetryError"
