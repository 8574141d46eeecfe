"""Human-readable output: aligned tables, job details, the selection's reasons (pure)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

JOB_COLUMNS = ("job", "status", "progress", "provider", "owner", "created", "cost")


def to_json(payload: Any) -> str:
    return json.dumps(payload, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[str(h) for h in header]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def usd(value: Any) -> str:
    return "-" if value is None else f"${float(value):.2f}"


def percent(value: Any) -> str:
    return "-" if value is None else f"{float(value):.0f}%"


def short_time(value: Any) -> str:
    text = "" if value is None else str(value)
    return text[:19].replace("T", " ")


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


def output_urls(job: Mapping[str, Any]) -> list[str]:
    """Where the job's MP4 can be fetched: the stored copy's link first, then the provider's links."""
    output = job.get("output") or {}
    link = output.get("download")
    stored = link.get("url") if isinstance(link, Mapping) else link
    urls = [stored, *(output.get("videoUrls") or [])]
    return [u for u in urls if isinstance(u, str) and u]


def job_details(job: Mapping[str, Any]) -> str:
    """A job view (as `runwayml_status_check` returns it) as labelled lines."""
    attempts = ", ".join(
        f"#{a.get('number')} {a.get('provider')} {a.get('status')}"
        + (f" ({(a.get('error') or {}).get('code')})" if a.get("error") else "")
        for a in job.get("attempts") or []
    )
    rows = [
        ("job", job.get("jobId")),
        ("status", f"{job.get('status')} ({percent(job.get('progress'))})"),
        ("provider", job.get("provider") or "-"),
        ("attempts", attempts or "-"),
        ("cost", f"estimated {usd(job.get('estimatedCostUsd'))}, actual {usd(job.get('actualCostUsd'))}"),
        ("created", short_time(job.get("createdAt"))),
        ("ended", short_time(job.get("endedAt")) or "-"),
    ]
    for url in output_urls(job):
        rows.append(("output", url))
    error = job.get("error")
    if error:
        rows.append(("error", f"{error.get('code')}: {error.get('message')}"))
    for line in selection_reasons(job.get("selection"), job.get("provider")):
        rows.append(("selection", line))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in rows)


def job_row(job: Any) -> list[Any]:
    """A `jobs.records.Job` as one row of JOB_COLUMNS."""
    cost = job.actual_cost_usd if job.actual_cost_usd is not None else job.estimated_cost_usd
    return [
        job.job_id,
        str(job.status),
        percent(job.progress),
        job.provider or "-",
        job.owner_uid,
        short_time(job.created_at),
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


def generic(payload: Any, indent: int = 0) -> str:
    """Any JSON answer as indented `key: value` lines (for answers without a dedicated view)."""
    pad = "  " * indent
    if isinstance(payload, Mapping):
        lines = []
        for key, value in payload.items():
            if isinstance(value, Mapping | list) and value:
                lines.append(f"{pad}{key}:")
                lines.append(generic(value, indent + 1))
            else:
                lines.append(f"{pad}{key}: {_scalar(value)}")
        return "\n".join(lines)
    if isinstance(payload, list):
        return "\n".join(
            f"{pad}-\n{generic(item, indent + 1)}" if isinstance(item, Mapping | list) else f"{pad}- {item}"
            for item in payload
        )
    return f"{pad}{_scalar(payload)}"


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Mapping | list):
        return json.dumps(value, default=str)
    return str(value)
