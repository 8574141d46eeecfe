"""`make demo`: start the local stack, make a video from the sample CV script, show how it went.

    python -m local.demo [--style friendly] [--quality premium] [--provider runwayml] [--kind clip]
                         [--jobs 5] [--fault-rate 0.2] [--speed 60] [--out out] [--script FILE]

Steps: start every part (`local/stack.py`); submit the script through `generate_video` as the
local test user (a token from the stack's issuer); watch each job through `runwayml_status_check`
(a progress line redrawn in place, plain lines when stdout is not a terminal); download each
finished video into `--out`; print the summary (provider and the selection's reasons, polls, time,
estimated and actual cost, the file); stop the stack. Exit 1 when a job did not complete.

`--fault-rate R` makes the simulators fail that share of requests with a mix of 5xx, 429, dropped
connections and malformed bodies, so retries and fallback can be watched at work.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from local import stack_env as plan
from local.demo_report import Outcome, report
from local.procs import StartupError
from local.progress import TERMINAL, ProgressDisplay
from local.stack import LocalStack, StackOptions
from local.stack_state import ROOT
from ops import render
from ops.client import OpsError
from ops.commands import fetch_job, read_script, request_body
from ops.store import provider_checks
from ops.target import Target, local_target
from providers.prompts import build_prompt

SAMPLE_SCRIPT = ROOT / "samples" / "cv_script.txt"
DEMO_WORK_DIR = ROOT / "build" / "demo-stack"
WATCH_INTERVAL_S = 0.5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--script", default=str(SAMPLE_SCRIPT), help="CV script file (- for stdin)")
    parser.add_argument("--style", choices=("professional", "friendly", "energetic"), default="professional")
    parser.add_argument("--quality", choices=("standard", "premium"), default="standard")
    parser.add_argument("--kind", choices=("avatar", "clip"), default="avatar")
    parser.add_argument("--provider", choices=("heygen", "runwayml"), help="preferred provider")
    parser.add_argument("--jobs", type=int, default=1, help="how many jobs to run in parallel")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of provider calls that fail")
    parser.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulators' randomness")
    parser.add_argument("--out", type=Path, default=Path("out"), help="where the videos go")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the jobs")
    parser.add_argument("--work-dir", type=Path, default=DEMO_WORK_DIR, help="the stack's logs")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 1 <= args.jobs <= 50:
        parser.error("--jobs must be between 1 and 50")
    if args.speed <= 0:
        parser.error("--speed must be above 0")
    try:
        args.faults = plan.fault_mix(args.fault_rate)
    except plan.PlanError as exc:
        parser.error(str(exc))
    args.duration = args.format = None
    return args


def submit_one(target: Target, body: dict[str, Any]) -> tuple[str, float]:
    client = type(target.client)(target.client.base_url, loopback=True)
    try:
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        answer = client.call("generate_video", target.user_token(), body=body, headers=headers)
        return answer["jobId"], time.monotonic()
    finally:
        client.close()


def fetch(target: Target, job_id: str) -> dict[str, Any]:
    answer = target.client.call(
        "runwayml_status_check", target.user_token(), method="GET", params={"jobId": job_id}
    )
    return answer["job"]


def watch(target: Target, submitted: dict[str, float], timeout_s: float) -> dict[str, Outcome]:
    """Follow every job until it ends or the timeout passes; the outcome of each."""
    display = ProgressDisplay(sys.stdout)
    began, views, ended = time.monotonic(), {}, {}
    try:
        while True:
            for job_id in submitted:
                if job_id not in ended:
                    views[job_id] = fetch(target, job_id)
                    if views[job_id]["status"] in TERMINAL:
                        ended[job_id] = time.monotonic()
            display.update(views, time.monotonic() - began)
            if len(ended) == len(submitted) or time.monotonic() - began > timeout_s:
                break
            time.sleep(WATCH_INTERVAL_S)
    finally:
        display.finish()
    now = time.monotonic()
    return {
        job_id: Outcome(views[job_id], ended.get(job_id, now) - start, timed_out=job_id not in ended)
        for job_id, start in submitted.items()
    }


def is_mp4(path: Path) -> bool:
    """An ISO media file: its first box is `ftyp`."""
    with open(path, "rb") as data:
        return data.read(12)[4:8] == b"ftyp"


def download(target: Target, outcome: Outcome, out_dir: Path) -> None:
    """Save a completed job's video into `out_dir` (the first output URL that answers)."""
    job = outcome.job
    if job["status"] != "completed":
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{job['jobId']}.mp4"
    problems = []
    for url in render.output_urls(job):
        try:
            size = target.client.download(url, path)
        except OpsError as exc:
            problems.append(exc.message)
            continue
        if is_mp4(path):
            outcome.file, outcome.size = path, size
            return
        problems.append(f"{url} did not serve an MP4")
    outcome.problem = "; ".join(problems) or "the job has no output URL"


def run(args: argparse.Namespace) -> int:
    options = StackOptions(  # one user makes every job, so the per-user limits are lifted
        speed=args.speed,
        faults=args.faults,
        seed=args.seed,
        work_dir=args.work_dir,
        extra_env=plan.UNLIMITED_PLANS,
    )
    body = request_body(args, read_script(args.script))
    print(
        f"Starting the local stack (speed {args.speed:g}x, faults: {args.faults or 'none'}) ...", flush=True
    )
    began = time.monotonic()
    with LocalStack(options) as stack:
        for warning in stack.warnings:
            print(f"!!! WARNING: {warning} !!!", file=sys.stderr)
        assert stack.state is not None
        print(
            f"stack up in {stack.startup_s:.1f} s: {len(stack.function_names)} functions at {stack.base_url}"
        )
        target = local_target(stack.state)
        with ThreadPoolExecutor(max_workers=min(args.jobs, 8)) as pool:
            submitted = dict(pool.map(lambda _: submit_one(target, body), range(args.jobs)))
        print(f"submitted {len(submitted)} job(s) as {plan.LOCAL_USER}: {', '.join(submitted)}", flush=True)
        outcomes = watch(target, submitted, args.timeout)
        for outcome in outcomes.values():
            outcome.job = fetch_job(target, outcome.job["jobId"])  # the ops view: provider, reasons, costs
            download(target, outcome, args.out)
            outcome.reads, outcome.polls = provider_checks(target, outcome.job.get("attempts") or [])
        stopping = time.monotonic()
    stop_s = time.monotonic() - stopping
    prompt = build_prompt(body["script"], body["style"])
    print(report(list(outcomes.values()), total_s=time.monotonic() - began, stop_s=stop_s, prompt=prompt))
    simulated = sorted(name for name, mode in stack.modes.items() if mode == plan.SIMULATOR)
    if simulated:
        print(
            f"note: videos from the simulators ({', '.join(simulated)}) are a 2 s test pattern "
            "(colour bars), not a real rendering of the script"
        )
    if all(o.ok for o in outcomes.values()):
        return 0
    print(f"the logs of every part are in {options.work_dir / 'logs'}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (StartupError, plan.PlanError) as exc:
        print(f"demo: the local stack did not start: {exc}", file=sys.stderr)
        return 1
    except OpsError as exc:
        print(f"demo: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: interrupted; the stack is stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
