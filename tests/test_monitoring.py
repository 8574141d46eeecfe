"""monitoring/: the log-based metrics, alert policies and dashboard deploy.sh creates.

Each file is checked against the fields the Cloud Monitoring and Logging APIs require (LogMetric,
AlertPolicy, Dashboard), and every log-based metric a policy or the dashboard names must be one that
monitoring/metrics/ creates.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "monitoring"
METRIC_FILES = sorted((MONITORING / "metrics").glob("*.yaml"))
POLICY_FILES = sorted((MONITORING / "policies").glob("*.json"))
DASHBOARD = MONITORING / "dashboard.json"
USER_METRIC = re.compile(r'metric\.type="logging\.googleapis\.com/user/([^"]+)"')
DURATION = re.compile(r"^\d+s$")
COMPARISONS = {
    "COMPARISON_GT",
    "COMPARISON_GE",
    "COMPARISON_LT",
    "COMPARISON_LE",
    "COMPARISON_EQ",
    "COMPARISON_NE",
}
EVENTS = {  # the metric and the jsonPayload.event its filter counts (the code logs these names)
    "jobs_by_outcome": "job_ended",
    "fallbacks": "fallback",
    "circuit_opened": "circuit_opened",
    "http_5xx": "http_5xx",
    "finalize_failures": "finalize_failed",
    "stuck_jobs": "stuck_job",
    "webhook_signature_failures": "webhook_signature_failed",
    "output_hosts_refused": "output_host_refused",
    "spend_near_cap": ("spend_near_cap", "spend_cap_reached"),
}
LABELS = {
    "jobs_by_outcome": {"status", "provider"},
    "circuit_opened": {"provider"},
    "http_5xx": {"function"},
    "webhook_signature_failures": {"provider"},
}


def metrics() -> dict[str, dict]:
    return {f"cvplus/{path.stem}": yaml.safe_load(path.read_text()) for path in METRIC_FILES}


def strings(document: object) -> list[str]:
    if isinstance(document, dict):
        return [s for value in document.values() for s in strings(value)]
    if isinstance(document, list):
        return [s for value in document for s in strings(value)]
    return [document] if isinstance(document, str) else []


def referenced_metrics(document: object) -> set[str]:
    return {name for text in strings(document) for name in USER_METRIC.findall(text)}


def aggregation_ok(aggregation: dict) -> None:
    assert DURATION.match(aggregation["alignmentPeriod"]), aggregation
    assert aggregation["perSeriesAligner"].startswith("ALIGN_"), aggregation
    if "crossSeriesReducer" in aggregation:
        assert aggregation["crossSeriesReducer"].startswith("REDUCE_"), aggregation


# --- log-based metrics ---------------------------------------------------------------------------


def test_every_metric_the_issue_names_exists() -> None:
    names = set(metrics())
    assert {f"cvplus/{name}" for name in EVENTS} | {"cvplus/limit_refusals", "cvplus/cleanup_runs"} == names


@pytest.mark.parametrize("path", METRIC_FILES, ids=lambda p: p.stem)
def test_log_metric_has_the_fields_logging_requires(path: Path) -> None:
    metric = yaml.safe_load(path.read_text())
    assert metric["name"] == f"cvplus/{path.stem}"
    assert metric["description"].strip()
    assert 'resource.type="cloud_run_revision"' in metric["filter"]
    descriptor = metric["metricDescriptor"]
    assert (descriptor["metricKind"], descriptor["valueType"]) == ("DELTA", "INT64")
    labels = {label["key"] for label in descriptor.get("labels", [])}
    assert labels == set(metric.get("labelExtractors", {}))
    for key, extractor in metric.get("labelExtractors", {}).items():
        assert re.fullmatch(r"EXTRACT\((jsonPayload|resource\.labels)\.\w+\)", extractor), key
    assert labels >= LABELS.get(path.stem, set())
    if path.stem in EVENTS:
        events = EVENTS[path.stem]
        if isinstance(events, str):
            assert f'jsonPayload.event="{events}"' in metric["filter"]
        else:
            assert "jsonPayload.event=(" + " OR ".join(f'"{e}"' for e in events) + ")" in metric["filter"]


def test_limit_refusals_count_refused_requests_by_code() -> None:
    flt = metrics()["cvplus/limit_refusals"]["filter"]
    assert "jsonPayload.status>=429" in flt
    for code in ("over_quota", "user_limit", "spend_cap_reached"):
        assert f'"{code}"' in flt


# --- alert policies --------------------------------------------------------------------------------


def check_condition(condition: dict) -> None:
    assert condition["displayName"].strip()
    kinds = {"conditionThreshold", "conditionAbsent"} & set(condition)
    assert len(kinds) == 1, condition
    (kind,) = kinds
    body = condition[kind]
    assert "metric.type=" in body["filter"]
    assert DURATION.match(body["duration"])
    for aggregation in body.get("aggregations", []) + body.get("denominatorAggregations", []):
        aggregation_ok(aggregation)
    if kind == "conditionThreshold":
        assert body["comparison"] in COMPARISONS
        assert isinstance(body["thresholdValue"], int | float)
    else:
        assert int(body["duration"][:-1]) >= 120  # absence needs at least 2 minutes


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.stem)
def test_alert_policy_has_the_fields_monitoring_requires(path: Path) -> None:
    policy = json.loads(path.read_text())
    assert policy["displayName"].startswith("CVPlus video: ")
    assert policy["combiner"] in {"AND", "OR", "AND_WITH_MATCHING_RESOURCE"}
    assert 1 <= len(policy["conditions"]) <= 6
    for condition in policy["conditions"]:
        check_condition(condition)
    documentation = policy["documentation"]
    assert documentation["mimeType"] == "text/markdown"
    assert "docs/OPERATIONS.md#" in documentation["content"]
    assert policy.get("notificationChannels", []) == []  # deploy.sh fills them from NOTIFICATION_CHANNEL
    assert "name" not in policy  # assigned by the API; deploy.sh finds a policy by its display name


def test_policy_display_names_are_unique() -> None:
    names = [json.loads(path.read_text())["displayName"] for path in POLICY_FILES]
    assert len(names) == len(set(names))


def test_the_policies_cover_what_an_operator_is_paged_for() -> None:
    policies = {path.stem: json.loads(path.read_text()) for path in POLICY_FILES}
    assert set(policies) == {
        "job_failure_rate",
        "circuit_open",
        "http_5xx_burst",
        "cleanup_not_running",
        "spend_near_cap",
        "webhook_signature_failures",
        "queue_backlog",
    }
    ratio = policies["job_failure_rate"]["conditions"][0]["conditionThreshold"]
    assert "denominatorFilter" in ratio
    assert ratio["thresholdValue"] == 0.2
    absent = policies["cleanup_not_running"]["conditions"][0]["conditionAbsent"]
    assert absent["duration"] == "1800s"  # two 15-minute cleanup intervals
    assert "PLACEHOLDER" not in policies["spend_near_cap"]["documentation"]["content"]
    queue = json.dumps(policies["queue_backlog"])
    assert "cloudtasks.googleapis.com/queue/depth" in queue
    assert "{{QUEUE}}" in queue


def test_every_log_metric_a_policy_or_the_dashboard_names_is_created() -> None:
    created = set(metrics())
    for path in [*POLICY_FILES, DASHBOARD]:
        named = referenced_metrics(json.loads(path.read_text()))
        assert named <= created, (
            f"{path.name} names metrics monitoring/metrics/ does not create: {named - created}"
        )
    used = set().union(*(referenced_metrics(json.loads(p.read_text())) for p in [*POLICY_FILES, DASHBOARD]))
    assert used, "no policy or chart uses a log-based metric"


# --- dashboard -------------------------------------------------------------------------------------


def test_dashboard_has_the_fields_monitoring_requires_and_the_charts_ops_needs() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["displayName"]
    assert dashboard["name"] == "projects/{{PROJECT}}/dashboards/cvplus-video"
    layout = dashboard["mosaicLayout"]
    assert layout["columns"] <= 48
    filters = []
    for tile in layout["tiles"]:
        assert tile["xPos"] + tile["width"] <= layout["columns"]
        assert tile["height"] > 0
        widget = tile["widget"]
        assert widget["title"]
        for data_set in widget["xyChart"]["dataSets"]:
            series = data_set["timeSeriesQuery"]["timeSeriesFilter"]
            aggregation_ok(series["aggregation"])
            filters.append(series["filter"])
    joined = "\n".join(filters)
    for metric in ("jobs_by_outcome", "fallbacks", "http_5xx", "circuit_opened", "finalize_failures"):
        assert f"logging.googleapis.com/user/cvplus/{metric}" in joined
    assert "cloudtasks.googleapis.com/queue/depth" in joined
