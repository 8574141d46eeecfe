"""`python -m ops`: argument parsing and the one place errors become messages and exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from local.stack_state import DEFAULT_STATE_FILE
from ops import render
from ops.client import OpsError
from ops.commands import COMMANDS, TERMINAL
from ops.target import USER_TOKEN_ENV, resolve

STATUSES = ("queued", "processing", *TERMINAL)
EPILOG = f"""targets: the local stack by default (its state file, written by `make stack`), or a deployed
project with --project/--region (identity tokens from `gcloud auth print-identity-token`; `submit`
and `cancel` there need an app user's Firebase ID token in {USER_TOKEN_ENV}).
--json prints one JSON document on stdout (errors too: {{"error": {{...}}}}); messages go to stderr.
exit codes: 0 ok, 1 failed, 2 bad arguments, 3 unreachable, 4 not found, 5 unauthenticated/forbidden
(run it as `.venv/bin/python -m ops` to get them: `make ops` turns every failure into 2)"""


def _common(parser: argparse.ArgumentParser, default: object) -> None:
    """Options accepted before and after the command (`default` is SUPPRESS on the command level)."""

    def value(real: object) -> object:
        return real if default is None else default

    parser.add_argument("--json", action="store_true", default=value(False), help="machine-readable output")
    parser.add_argument(
        "--project", default=value(None), help="a deployed project instead of the local stack"
    )
    region = os.environ.get("FUNCTION_REGION", "us-central1")
    parser.add_argument("--region", default=value(region), help="region of the deployed functions")
    parser.add_argument(
        "--state-file", type=Path, default=value(DEFAULT_STATE_FILE), help="local stack state"
    )
    parser.add_argument("--base-url", default=value(None), help="functions base URL (overrides the target's)")
    parser.add_argument(
        "--impersonate-service-account", default=value(None), help="gcloud identity of service calls"
    )
    parser.add_argument("--http-timeout", type=float, default=value(30.0), help="seconds per HTTP call")


def _job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--style", choices=("professional", "friendly", "energetic"), default="professional")
    parser.add_argument("--quality", choices=("standard", "premium"), default="standard")
    parser.add_argument("--kind", choices=("avatar", "clip"), default="avatar")
    parser.add_argument("--provider", choices=("heygen", "runwayml"), help="preferred provider")
    parser.add_argument("--duration", type=int, help="seconds of video (4-10)")
    parser.add_argument("--format", choices=("mp4", "gif"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ops",
        description="Operate the CVPlus video backend: submit, inspect, check, clean up.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(parser, None)
    common = argparse.ArgumentParser(add_help=False)
    _common(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("submit", parents=[common], help="submit a CV script (file, or - for stdin)")
    p.add_argument("script", help="path of the CV script, or - to read stdin")
    _job_options(p)
    p.add_argument("--user", help="the app user (local stack: any uid; default local-user)")
    p.add_argument("--idempotency-key", help="repeat a submission safely (default: a new key)")
    p.add_argument("--wait", action="store_true", help="watch the job until it ends")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds --wait waits")
    p.add_argument("--download", type=Path, metavar="DIR", help="wait, then save the MP4 (and GIF) into DIR")

    p = sub.add_parser("status", parents=[common], help="one job, refreshed at its provider when stale")
    p.add_argument("job_id")
    p.add_argument("--user", help="ask as this app user instead of the ops account")

    p = sub.add_parser("cancel", parents=[common], help="cancel a job as its owner")
    p.add_argument("job_id")
    p.add_argument("--user", help="cancel as this app user (local stack: default the job's owner)")

    p = sub.add_parser("token", parents=[common], help="a local user's ID token (local stack only)")
    p.add_argument("--user", help="the app user (default local-user)")
    p.add_argument("--tier", choices=("free", "pro"), help="the user's plan claim (default: none, so free)")

    p = sub.add_parser("jobs", parents=[common], help="list jobs (read from Firestore)")
    p.add_argument("--owner", help="only this user's jobs (newest first)")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--limit", type=int, default=50)

    p = sub.add_parser("batch-check", parents=[common], help="check many jobs at once")
    p.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    p.add_argument("--status", action="append", choices=STATUSES, help="filter (repeatable)")
    p.add_argument("--older-than", type=int, metavar="SECONDS", help="not updated for this long")
    p.add_argument("--limit", type=int)

    p = sub.add_parser("cleanup", parents=[common], help="run the scheduled cleanup now")
    p.add_argument("--dry-run", action="store_true", help="report what would change, change nothing")

    p = sub.add_parser("health", parents=[common], help="providers: reachability, circuit, job statistics")
    p.add_argument("--window-hours", type=int, default=24)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "limit", None) is not None and args.limit < 1:
        print("ops: --limit must be at least 1", file=sys.stderr)
        return 2
    try:
        target = resolve(
            project=args.project,
            region=args.region,
            state_file=args.state_file,
            base_url=args.base_url,
            impersonate=args.impersonate_service_account,
            timeout_s=args.http_timeout,
        )
        try:
            result = COMMANDS[args.command](args, target)
        finally:
            target.client.close()
    except OpsError as exc:
        if args.json:
            error = {"message": exc.message, "status": exc.status, "exitCode": exc.exit_code}
            print(render.to_json({"error": error}))
        print(f"ops: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    try:
        print(render.to_json(result.payload) if args.json else result.text, flush=True)
    except BrokenPipeError:  # `| head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return result.exit_code
