"""What the CLI prints (pure): aligned tables, job details, and the JSON it writes.

One rule per kind of value, used by every view, human or `--json`::

    time    ISO 8601 in UTC to the second with a `Z`: 2026-11-29T14:53:13Z
    money   cents: $0.33 in tables, 0.33 in JSON (fields whose name ends in `Usd`)
    yes/no  booleans in tables; JSON keeps true/false
    —       a value that is not there (tables only; JSON keeps null)
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

NONE = "—"
JOB_COLUMNS = ("job", "status", "progress", "provider", "owner", "created", "cost")
_TIME_KEYS = ("since", "hour")  # time fields whose name does not end in `At`


# -- values ---------------------------------------------------------------------------------------


def timestamp(value: Any) -> str:
    """`2026-11-29T14:53:13Z` from a datetime or an ISO string (naive ones are UTC); NONE for None."""
    if value is None or value == "":
        return NONE
    moment = value
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if not isinstance(moment, dt.datetime):
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def cents(value: Any) -> float | None:
    return None if value is None else round(float(value), 2)


def usd(value: Any) -> str:
    return NONE if value is None else f"${float(value):.2f}"


def percent(value: Any) -> str:
    return NONE if value is None else f"{float(value):.0f}%"


def yes_no(value: Any) -> str:
    return NONE if value is None else ("yes" if value else "no")


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return yes_no(value)
    if isinstance(value, dt.datetime):
        return timestamp(value)
    return str(value)


# -- JSON -----------------------------------------------------------------------------------------


def clean(payload: Any, key: str = "") -> Any:
    """`payload` with the rules above applied: times as ISO `Z` strings, money in cents."""
    if isinstance(payload, Mapping):
        return {str(k): clean(v, str(k)) for k, v in payload.items()}
    if isinstance(payload, list | tuple):
        return [clean(item, key) for item in payload]
    if isinstance(payload, dt.datetime) or (
        isinstance(payload, str) and (key.endswith("At") or key in _TIME_KEYS)
    ):
        return timestamp(payload)
    if key.endswith("Usd") and isinstance(payload, int | float) and not isinstance(payload, bool):
        return cents(payload)
    return payload


def to_json(payload: Any) -> str:
    return json.dumps(clean(payload), indent=2, sort_keys=True, default=str, ensure_ascii=False)


# -- tables and labelled lines --------------------------------------------------------------------


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[str(h) for h in header]] + [[cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def labelled(rows: Sequence[tuple[str, Any]]) -> str:
    """`label  value` lines, the labels padded to one width."""
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label.ljust(width)}  {cell(value)}".rstrip() for label, value in rows)


def selection_reasons(selection: Mapping[str, Any] | None, chosen: str | None = None) -> list[str]:
    """One line per ranked provider (`heygen: priority 1 (+20); ... = 25`) and per excluded one."""
    selection = selection or {}
    reasons = selection.get("reasons") or {}
    scores = selection.get("scores") or {}
    lines = []
    for name in selection.get("candidates") or []:
        mark = " <- chosen" if name == chosen else ""
        lines.append(f"{name}: {'; '.join(reasons.get(name, []))} = {scores.get(name, '?')}{mark}")
    for name, why in sorted((selection.get("excluded") or {}).items()):
        lines.append(f"{name}: excluded, {why}")
    return lines


def _link(value: Any) -> str | None:
    url = value.get("url") if isinstance(value, Mapping) else value
    return url if isinstance(url, str) and url else None


def output_urls(job: Mapping[str, Any]) -> list[str]:
    """Where the job's MP4 can be fetched: the stored copy's link first, then the provider's links."""
    output = job.get("output") or {}
    urls = [_link(output.get("download")), *(_link(u) for u in output.get("videoUrls") or [])]
    return [u for u in urls if u]


def gif_url(job: Mapping[str, Any]) -> str | None:
    """The stored GIF's link, when the job asked for a GIF and it was made."""
    return _link((job.get("output") or {}).get("gifDownload"))


def _attempts(job: Mapping[str, Any]) -> str:
    return ", ".join(
        f"#{a.get('number')} {a.get('provider')} {a.get('status')}"
        + (f" ({(a.get('error') or {}).get('code')})" if a.get("error") else "")
        for a in job.get("attempts") or []
    )


def job_details(job: Mapping[str, Any], prompt: str | None = None) -> str:
    """A job view (as `runwayml_status_check` returns it), and its prompt, as labelled lines."""
    score = job.get("qualityScore")
    rows: list[tuple[str, Any]] = [
        ("job", job.get("jobId")),
        ("status", f"{job.get('status')} ({percent(job.get('progress'))})"),
        ("provider", job.get("provider") or NONE),
        ("attempts", _attempts(job) or NONE),
        ("cost", f"estimated {usd(job.get('estimatedCostUsd'))}, actual {usd(job.get('actualCostUsd'))}"),
        ("created", timestamp(job.get("createdAt"))),
        ("ended", timestamp(job.get("endedAt"))),
        ("quality", NONE if score is None else f"{score}/100"),
    ]
    if prompt:
        rows.append(("prompt", prompt))
    rows += [("output", url) for url in output_urls(job)]
    if gif_url(job):
        rows.append(("gif", gif_url(job)))
    error = job.get("error")
    if error:
        rows.append(("error", f"{error.get('code')}: {error.get('message')}"))
    rows += [("selection", line) for line in selection_reasons(job.get("selection"), job.get("provider"))]
    return labelled(rows)


def job_row(job: Any) -> list[Any]:
    """A `jobs.records.Job` as one row of JOB_COLUMNS."""
    cost = job.actual_cost_usd if job.actual_cost_usd is not None else job.estimated_cost_usd
    return [
        job.job_id,
        str(job.status),
        percent(job.progress),
        job.provider or NONE,
        job.owner_uid,
        timestamp(job.created_at),
        usd(cost),
    ]


def job_summary(job: Any) -> dict[str, Any]:
    """A `jobs.records.Job` for --json output (no prompt, no idempotency key)."""
    return {
        "jobId": job.job_id,
        "status": str(job.status),
        "progress": job.progress,
        "provider": job.provider,
        "ownerUid": job.owner_uid,
        "createdAt": job.created_at,
        "updatedAt": job.updated_at,
        "estimatedCostUsd": job.estimated_cost_usd,
        "actualCostUsd": job.actual_cost_usd,
    }


# -- batch-check, cleanup, health -----------------------------------------------------------------

BATCH_COLUMNS = ("job", "status", "progress", "provider", "refreshed", "stuck", "error")


def batch_row(result: Mapping[str, Any]) -> list[Any]:
    """One `runwayml_batch_status_check` result as a row of BATCH_COLUMNS."""
    if not result.get("found"):
        return [result.get("jobId"), "not found", NONE, NONE, NONE, "", ""]
    error = result.get("error") or {}
    return [
        result.get("jobId"),
        result.get("status"),
        percent(result.get("progress")),
        result.get("provider") or NONE,
        result.get("refreshed"),
        result.get("stuck") or "",
        result.get("refreshError") or error.get("code") or "",
    ]


def batch_summary(summary: Mapping[str, Any]) -> str:
    """`3 jobs: 2 found, 1 not found; completed 2; 0 refreshed, 0 refresh errors; stuck: none`."""
    by_status = ", ".join(f"{status} {n}" for status, n in sorted((summary.get("byStatus") or {}).items()))
    stuck = ", ".join(f"{s['jobId']} ({s['reason']})" for s in summary.get("stuck") or []) or "none"
    return (
        f"{summary.get('total', 0)} jobs: {summary.get('found', 0)} found, "
        f"{summary.get('notFound', 0)} not found; {by_status or 'no statuses'}; "
        f"{summary.get('refreshed', 0)} refreshed, {summary.get('refreshErrors', 0)} refresh errors; "
        f"stuck: {stuck}"
    )


def cleanup_report(report: Mapping[str, Any]) -> str:
    """The cleanup's counts as a step/what/count table, its completeness and its failed steps."""
    rows = [
        [step, what, count]
        for step, counts in report.items()
        if isinstance(counts, Mapping)
        for what, count in sorted(counts.items()) or [(NONE, 0)]
    ]
    title = "cleanup (dry run: nothing changed)" if report.get("dryRun") else "cleanup"
    lines = [f"{title}; complete: {yes_no(report.get('complete'))}"]
    lines.append(table(("step", "what", "count"), rows))
    lines += [f"step {e.get('step')} failed: {e.get('code')}" for e in report.get("errors") or []]
    return "\n".join(lines)


HEALTH_COLUMNS = (
    "provider", "reachable", "latency", "circuit", "budget left", "spent today", "balance",
    "jobs ended", "success", "avg s", "avg cost",
)  # fmt: skip


def budget(quota: Mapping[str, Any] | None) -> str:
    """The tightest request-budget window: `199/200 per hour` (NONE when no budget is configured)."""
    windows = [(name, w) for name, w in (quota or {}).items() if w.get("limit")]
    if not windows:
        return NONE
    name, window = min(windows, key=lambda item: item[1]["remaining"] / item[1]["limit"])
    return f"{window['remaining']}/{window['limit']} per {name}"


def spent(spend: Mapping[str, Any] | None) -> str:
    """The provider's estimated spend today against its cap, or the total's: `$3.20 of $200.00`."""
    if not spend:
        return NONE
    cap = spend.get("spendCapUsd")
    total = f"{usd(spend.get('totalSpendUsdToday'))} of {usd(spend.get('totalSpendCapUsd'))} in all"
    return (
        f"{usd(spend.get('spendUsdToday'))}" + (f" of {usd(cap)}" if cap is not None else "") + f" ({total})"
    )


def balance(live: Mapping[str, Any]) -> str:
    """What the provider says is left: USD, else credits, else NONE."""
    if live.get("balanceUsd") is not None:
        return usd(live["balanceUsd"])
    if live.get("creditBalance") is not None:
        return f"{live['creditBalance']:g} credits"
    return NONE


def health_row(name: str, info: Mapping[str, Any]) -> list[Any]:
    """One provider of `provider_health` as a row of HEALTH_COLUMNS."""
    live, stats = info.get("health") or {}, info.get("jobs") or {}
    latency, rate, seconds = (
        live.get("latencyMs"),
        stats.get("successRate"),
        stats.get("avgGenerationSeconds"),
    )
    return [
        name,
        live.get("reachable"),
        NONE if latency is None else f"{latency:.0f} ms",
        (info.get("circuit") or {}).get("state", NONE),
        budget(info.get("quota")),
        spent(info.get("spend")),
        balance(live),
        stats.get("jobsEnded", 0),
        NONE if rate is None else f"{rate:.0%}",
        NONE if seconds is None else f"{seconds:.0f}",
        usd(stats.get("avgCostUsd")),
    ]
