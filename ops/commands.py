"""The CLI's commands: each takes parsed arguments and a target, returns what to print.

A command returns `Result(payload, text, exit_code)`: `payload` is printed for `--json`, `text`
for people. Errors are raised as `OpsError` (see `ops/client.py` for the exit codes); notes that
must not spoil `--json` output go to stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops import render
from ops.client import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, FunctionsClient, OpsError
from ops.store import list_jobs, read_job
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


def job_prompt(target: Target, job: dict[str, Any]) -> str | None:
    """The prompt the job's provider got, read from the job record (None, with a note, if unreadable)."""
    try:
        record = read_job(target, job["jobId"])
    except OpsError as exc:
        print(f"ops: the prompt is not shown: {exc.message}", file=sys.stderr)
        return None
    if record is None:
        return None
    return (record.heygen_script if job.get("provider") == "heygen" else record.runway_prompt) or None


def _download_first(client: FunctionsClient, urls: list[str], path: Path) -> dict[str, Any]:
    problems = []
    for url in urls:
        try:
            return {"path": str(path), "bytes": client.download(url, path)}
        except OpsError as exc:
            problems.append(exc.message)
    raise OpsError(f"{path.name} was not downloaded: {'; '.join(problems) or 'the job has no link to it'}")


def download_outputs(client: FunctionsClient, job: dict[str, Any], directory: Path) -> list[dict[str, Any]]:
    """Save a finished job's MP4 (and its GIF, when one was made) into `directory`."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OpsError(f"cannot create {directory}: {exc.strerror}", EXIT_USAGE) from None
    files = [_download_first(client, render.output_urls(job), directory / f"{job['jobId']}.mp4")]
    gif = render.gif_url(job)
    if gif:
        files.append(_download_first(client, [gif], directory / f"{job['jobId']}.gif"))
    return files


def submit(args: argparse.Namespace, target: Target) -> Result:
    body = request_body(args, read_script(args.script))
    key = args.idempotency_key or uuid.uuid4().hex
    token = target.user_token(args.user)
    answer = target.client.call("generate_video", token, body=body, headers={"Idempotency-Key": key})
    text = (
        f"job {answer['jobId']} accepted: {answer.get('status')} at {answer.get('provider')}, "
        f"estimated {render.usd(answer.get('estimatedCostUsd'))}"
    )
    if not (args.wait or args.download):
        return Result(answer, text)
    job = wait_for(target, answer["jobId"], timeout_s=args.timeout, user=args.user)
    prompt = job_prompt(target, job)
    payload = {"accepted": answer, "job": job, "prompt": prompt}
    text = f"{text}\n{render.job_details(job, prompt)}"
    if job["status"] != "completed":
        return Result(payload, text, EXIT_FAILED)
    if args.download:
        payload["files"] = download_outputs(target.client, job, args.download)
        text += "".join(f"\nsaved {f['path']} ({f['bytes']} bytes)" for f in payload["files"])
    return Result(payload, text)


def status(args: argparse.Namespace, target: Target) -> Result:
    job = fetch_job(target, args.job_id, user=args.user)
    prompt = job_prompt(target, job)
    return Result({"job": job, "prompt": prompt}, render.job_details(job, prompt))


def cancel(args: argparse.Namespace, target: Target) -> Result:
    """`cancel_video` as the job's owner: on the local stack with a token minted for the owner read
    from the job record; on a project with the owner's Firebase ID token (CVPLUS_ID_TOKEN)."""
    owner = args.user
    if owner is None and target.state is not None:
        record = read_job(target, args.job_id)
        if record is None:
            raise OpsError(f"there is no job {args.job_id}", EXIT_NOT_FOUND)
        owner = record.owner_uid
    token = target.user_token(owner)
    answer = target.client.call("cancel_video", token, body={"jobId": args.job_id})
    return Result(answer, render.job_details(answer["job"]))


def token(args: argparse.Namespace, target: Target) -> Result:
    """A Firebase-style ID token the local stack accepts (signed by its throwaway issuer key)."""
    from google.auth import jwt

    if target.state is None:
        raise OpsError(
            "ops token mints tokens for the local stack only; a deployed project takes real Firebase "
            "ID tokens (the app's getIdToken())",
            EXIT_USAGE,
        )
    uid = args.user or target.state.local_user
    value = target.user_token(uid, args.tier)
    claims = jwt.decode(value, verify=False)
    payload = {
        "token": value,
        "uid": uid,
        "tier": args.tier or "free",
        "project": claims["aud"],
        "expiresAt": render.timestamp(dt.datetime.fromtimestamp(claims["exp"], dt.UTC)),
    }
    return Result(payload, value)


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
    rows = [render.batch_row(r) for r in answer.get("jobs", [])]
    text = render.table(render.BATCH_COLUMNS, rows) if rows else "no jobs match"
    return Result(answer, f"{text}\n\n{render.batch_summary(answer.get('summary', {}))}")


def cleanup(args: argparse.Namespace, target: Target) -> Result:
    function = "runwayml_cleanup_task"
    body = {"dryRun": True} if args.dry_run else {}
    answer = target.client.call(function, target.service_token("scheduler", function), body=body)
    return Result(answer, render.cleanup_report(answer))


def health(args: argparse.Namespace, target: Target) -> Result:
    function = "provider_health"
    token = target.service_token("ops", function)
    answer = target.client.call(function, token, method="GET", params={"windowHours": args.window_hours})
    providers = answer.get("providers", {})
    rows = [render.health_row(name, info) for name, info in sorted(providers.items())]
    text = render.table(render.HEALTH_COLUMNS, rows) if rows else "no providers configured"
    live = {name: info.get("health") or {} for name, info in sorted(providers.items())}
    unreachable = [name for name, seen in live.items() if seen.get("reachable") is False]
    for name in unreachable:
        text += f"\n{name}: {live[name].get('error') or 'unreachable'}"
    return Result(answer, text, EXIT_FAILED if unreachable else EXIT_OK)


COMMANDS = {
    "submit": submit,
    "status": status,
    "cancel": cancel,
    "jobs": jobs,
    "batch-check": batch_check,
    "cleanup": cleanup,
    "health": health,
    "token": token,
}
