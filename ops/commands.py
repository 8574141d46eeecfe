"""The CLI's commands: each takes parsed arguments and a target, returns what to print.

A command returns `Result(payload, text, exit_code)`: `payload` is printed for `--json`, `text`
for people. Errors are raised as `OpsError` (see `ops/client.py` for the exit codes).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops import render
from ops.client import EXIT_FAILED, EXIT_OK, EXIT_USAGE, OpsError
from ops.store import list_jobs
from ops.target import Target

TERMINAL = ("completed", "failed", "cancelled", "timed_out")


@dataclass
class Result:
    payload: Any
    text: str
    exit_code: int = EXIT_OK


def read_script(source: str) -> str:
    """The CV script from a file, or from stdin for `-`."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise OpsError(f"cannot read the script {source}: {exc.strerror}", EXIT_USAGE) from None
    if not text.strip():
        raise OpsError(f"the script {source} is empty", EXIT_USAGE)
    return text


def request_body(args: argparse.Namespace, script: str) -> dict[str, Any]:
    """The `generate_video` body from the submit/demo options (unset options are left out)."""
    body: dict[str, Any] = {"script": script, "style": args.style, "quality": args.quality, "kind": args.kind}
    optional = {"provider": args.provider, "durationS": args.duration, "format": args.format}
    return body | {key: value for key, value in optional.items() if value is not None}


def fetch_job(target: Target, job_id: str, *, user: str | None = None) -> dict[str, Any]:
    """A job view through `runwayml_status_check`, as `user` or else as the ops account."""
    function = "runwayml_status_check"
    token = target.user_token(user) if user else target.service_token("ops", function)
    answer = target.client.call(function, token, method="GET", params={"jobId": job_id})
    return answer["job"]


def wait_for(target: Target, job_id: str, *, timeout_s: float, user: str | None = None) -> dict[str, Any]:
    """Watch a job until it ends (one line on stderr per change), or `OpsError` at the timeout."""
    deadline, last = time.monotonic() + timeout_s, None
    while True:
        job = fetch_job(target, job_id, user=user)
        line = f"{job['status']} {render.percent(job.get('progress'))} {job.get('provider') or ''}".rstrip()
        if line != last:
            print(f"{job_id}: {line}", file=sys.stderr, flush=True)
            last = line
        if job["status"] in TERMINAL:
            return job
        if time.monotonic() > deadline:
            raise OpsError(f"job {job_id} is still {job['status']} after {timeout_s:g} s", EXIT_FAILED)
        time.sleep(1.0)


def submit(args: argparse.Namespace, target: Target) -> Result:
    body = request_body(args, read_script(args.script))
    key = args.idempotency_key or uuid.uuid4().hex
    token = target.user_token(args.user)
    answer = target.client.call("generate_video", token, body=body, headers={"Idempotency-Key": key})
    text = (
        f"job {answer['jobId']} accepted: {answer.get('status')} at {answer.get('provider')}, "
        f"estimated {render.usd(answer.get('estimatedCostUsd'))}"
    )
    if not args.wait:
        return Result(answer, text)
    job = wait_for(target, answer["jobId"], timeout_s=args.timeout, user=args.user)
    code = EXIT_OK if job["status"] == "completed" else EXIT_FAILED
    return Result({"accepted": answer, "job": job}, f"{text}\n{render.job_details(job)}", code)


def status(args: argparse.Namespace, target: Target) -> Result:
    job = fetch_job(target, args.job_id, user=args.user)
    return Result({"job": job}, render.job_details(job))


def jobs(args: argparse.Namespace, target: Target) -> Result:
    found = list_jobs(target, owner=args.owner, status=args.status, limit=args.limit)
    found.sort(key=lambda job: str(job.created_at or ""), reverse=True)
    rows = [render.job_row(job) for job in found]
    text = render.table(render.JOB_COLUMNS, rows) if rows else "no jobs match"
    return Result({"jobs": [render.job_summary(job) for job in found]}, text)


def batch_check(args: argparse.Namespace, target: Target) -> Result:
    if args.job_ids and (args.status or args.older_than is not None or args.limit is not None):
        raise OpsError("give job ids or a filter (--status, --older-than, --limit), not both", EXIT_USAGE)
    if args.job_ids:
        body: dict[str, Any] = {"jobIds": args.job_ids}
    else:
        body = {"status": args.status or ["queued", "processing"]}
        if args.older_than is not None:
            body["olderThanSeconds"] = args.older_than
        if args.limit is not None:
            body["limit"] = args.limit
    function = "runwayml_batch_status_check"
    answer = target.client.call(function, target.service_token("ops", function), body=body)
    header = ("job", "status", "progress", "provider", "refreshed", "stuck")
    rows = [_batch_row(r) for r in answer.get("jobs", [])]
    text = render.table(header, rows) if rows else "no jobs match"
    text += "\n\n" + render.generic(answer.get("summary", {}))
    return Result(answer, text)


def _batch_row(result: dict[str, Any]) -> list[Any]:
    r = result
    status = r.get("status", "not found")
    progress = render.percent(r.get("progress"))
    return [r.get("jobId"), status, progress, r.get("provider"), r.get("refreshed"), r.get("stuck") or ""]


def cleanup(args: argparse.Namespace, target: Target) -> Result:
    function = "runwayml_cleanup_task"
    body = {"dryRun": True} if args.dry_run else {}
    answer = target.client.call(function, target.service_token("scheduler", function), body=body)
    title = "cleanup (dry run: nothing changed)" if args.dry_run else "cleanup"
    return Result(answer, f"{title}\n{render.generic(answer, 1)}")


def health(args: argparse.Namespace, target: Target) -> Result:
    function = "provider_health"
    token = target.service_token("ops", function)
    answer = target.client.call(function, token, method="GET", params={"windowHours": args.window_hours})
    header = ("provider", "reachable", "latency", "circuit", "jobs ended", "success", "avg s", "avg cost")
    rows = [_health_row(name, info) for name, info in sorted(answer.get("providers", {}).items())]
    text = render.table(header, rows) if rows else "no providers configured"
    unreachable = [r[0] for r in rows if r[1] is False]
    for name in unreachable:
        error = answer["providers"][name].get("health", {}).get("error")
        text += f"\n{name}: {error or 'unreachable'}"
    return Result(answer, text, EXIT_FAILED if unreachable else EXIT_OK)


def _health_row(name: str, info: dict[str, Any]) -> list[Any]:
    live, stats = info.get("health") or {}, info.get("jobs") or {}
    circuit = info.get("circuit") or {}
    latency = live.get("latencyMs")
    rate = stats.get("successRate")
    return [
        name,
        live.get("reachable"),
        "-" if latency is None else f"{latency:.0f} ms",
        circuit.get("state", "-"),
        stats.get("jobsEnded", 0),
        "-" if rate is None else f"{rate:.0%}",
        "-" if stats.get("avgGenerationSeconds") is None else f"{stats['avgGenerationSeconds']:.0f}",
        render.usd(stats.get("avgCostUsd")),
    ]


COMMANDS = {
    "submit": submit,
    "status": status,
    "jobs": jobs,
    "batch-check": batch_check,
    "cleanup": cleanup,
    "health": health,
}
