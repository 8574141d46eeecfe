"""Throughput: a few hundred jobs at once on the full local stack, until every one has ended.

The local stack (local/stack.py) runs every part as in production, on this machine: functions served
by functions-framework, the Firestore emulator, the Cloud Tasks emulator dispatching the polls, both
provider simulators (sped up, so renders are short) with HeyGen's signed webhooks, and the storage
emulator for finished videos when it is installed. Jobs are submitted through `generate_video` by a
few client threads; their documents are then read from Firestore (as the app watches them) until all
are terminal. Meanwhile the CPU time of every part is sampled from /proc, and the functions process
is profiled with py-spy (a sampling profiler attached to the running process).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.cold_probe import tree_peak_rss_mib
from benchmarks.common import MEMORY_SHARE_GOAL, NOT_MET, ROOT, MissingCode, Section, judge, percentile, table
from benchmarks.env import Context
from benchmarks.prices import function_sizes

TERMINAL = ("completed", "failed", "cancelled", "timed_out")
BIG_QUOTA = "100000/60"
CLIENT_THREADS = 8  # the app's users submit concurrently: one client thread each would be more
USERS = 100
CLIENT_TIMEOUT_S = 60.0
SUBMIT_TRIES = 3
ADMISSION_GOAL = 10.0  # accepted creates a second, with no transaction lock time-out
SCRIPT = (
    "I am a senior software engineer with 8 years in fintech. I led a team of six that launched a "
    "payments platform used by 2 million customers and cut checkout latency by 40%. I work with "
    "Python, Kubernetes and AWS, and I love mentoring junior developers in our London office."
)
LOCK_TIMEOUT = "Operation failed: Transaction lock timeout"  # one line per time-out (its trace repeats it)
PY_SPY = ROOT / ".venv" / "bin" / "py-spy"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def run(ctx: Context) -> Section:
    try:
        from local.stack import LocalStack, StackOptions
        from local.stack_env import UNLIMITED_PLANS
    except ImportError as exc:
        raise MissingCode("local/stack.py is not in the tree yet") from exc
    jobs, speed = (4, 1000.0) if ctx.quick else (200, 1000.0)
    limit_s = 120.0 if ctx.quick else 300.0
    options = StackOptions(
        speed=speed,
        seed=ctx.seed,
        work_dir=ctx.work_dir / "stack",
        extra_env={"RUNWAYML_QUOTA": BIG_QUOTA, "HEYGEN_QUOTA": BIG_QUOTA, **UNLIMITED_PLANS},
        sim_concurrency={"heygen": jobs},
    )
    with LocalStack(options) as stack:
        pids = dict(stack.started_pids)
        cpu_before = cpu_seconds(pids)
        profile = Profiler(pids.get("functions"), ctx.work_dir / "functions.pyspy.txt", limit_s)
        warm_up(stack)
        profile.start()
        began = time.monotonic()
        submitted, refused, create_latencies = submit(stack, jobs)
        accepted_s = time.monotonic() - began
        with _emulator_host(stack.endpoints.firestore_host):
            ended, docs = watch(stack, submitted, began, limit_s)
        wall = time.monotonic() - began
        profile.stop()
        peak_mib = tree_peak_rss_mib(pids["functions"])
        cpu = {name: cpu_seconds({name: pid})[name] - cpu_before.get(name, 0.0) for name, pid in pids.items()}
        logs = ctx.work_dir / "stack" / "logs"
        invocations = count_invocations(logs / "functions.log")
        invocations["Firestore emulator: transaction lock time-outs"] = count_lines(
            logs / "firestore.log", LOCK_TIMEOUT
        )
    load = {"accepted_s": accepted_s, "create_latencies": create_latencies, "peak_rss_mib": peak_mib}
    return _section(jobs, speed, submitted, refused, ended, docs, wall, cpu, profile.top(), invocations, load)


@contextlib.contextmanager
def _emulator_host(host: str) -> Iterator[None]:
    previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    try:
        yield
    finally:
        if previous is not None:
            os.environ["FIRESTORE_EMULATOR_HOST"] = previous


def warm_up(stack) -> None:
    """One create before the load, as a running service has served one: the functions process's
    first-request imports and clients are the cold start's (measured there), not admission's."""
    host, port = stack.base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=CLIENT_TIMEOUT_S)
    headers = {**stack.user_headers("bench-warm-up"), "Content-Type": "application/json"}
    conn.request("POST", "/generate_video", body=json.dumps({"script": SCRIPT}).encode(), headers=headers)
    answer = conn.getresponse()
    answer.read()
    conn.close()
    if answer.status != 202:
        raise RuntimeError(f"the warm-up create was answered {answer.status}")


def submit(stack, count: int) -> tuple[dict[str, float], Counter[str], list[float]]:
    """POST generate_video `count` times from a few threads: {job id: submitted at}, refusals."""
    base = stack.base_url.removeprefix("http://")
    host, port = base.split(":")
    # the app's traffic comes from many users, each with their own ledger document (jobs/admission.py)
    users = [
        {**stack.user_headers(f"bench-user-{n}"), "Content-Type": "application/json"} for n in range(USERS)
    ]
    body = json.dumps({"script": SCRIPT}).encode()
    submitted: dict[str, float] = {}
    latencies: list[float] = []
    refused: Counter[str] = Counter()
    retried: Counter[str] = Counter()
    lock = threading.Lock()

    def worker(share: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=CLIENT_TIMEOUT_S)
        for _ in range(share):
            headers = users[uuid.uuid4().int % USERS]
            key = uuid.uuid4().hex  # a retry with the same key gets the same job, as the app's would
            for attempt in range(1, SUBMIT_TRIES + 1):
                sent = time.monotonic()
                try:
                    conn.request(
                        "POST", "/generate_video", body=body, headers={**headers, "Idempotency-Key": key}
                    )
                    answer = conn.getresponse()
                    status, data = answer.status, json.loads(answer.read() or b"{}")
                except (OSError, http.client.HTTPException, ValueError):
                    conn.close()
                    conn = http.client.HTTPConnection(host, int(port), timeout=CLIENT_TIMEOUT_S)
                    status, data = 0, {"error": {"code": "client_timeout"}}
                with lock:
                    latencies.append(time.monotonic() - sent)
                    if status == 202:
                        submitted[data["jobId"]] = time.monotonic()
                    elif attempt == SUBMIT_TRIES or status != 0:
                        refused[f"{status or 'no answer'} {data.get('error', {}).get('code')}"] += 1
                    if status == 0:
                        retried["client time-out, retried with the same key"] += 1
                if status != 0:
                    break
        conn.close()

    shares = [
        count // CLIENT_THREADS + (1 if i < count % CLIENT_THREADS else 0) for i in range(CLIENT_THREADS)
    ]
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(worker, [s for s in shares if s]))
    return submitted, refused + retried, latencies


def watch(stack, submitted: dict[str, float], began: float, limit_s: float):
    """Read the jobs from Firestore every second until all are terminal or `limit_s` passes."""
    from google.cloud import firestore

    client = firestore.Client(project=stack.settings.project_id)
    refs = {
        job_id: client.collection(stack.settings.jobs_collection).document(job_id) for job_id in submitted
    }
    ended: dict[str, float] = {}
    docs: dict[str, dict[str, Any]] = {}
    try:
        while len(ended) < len(submitted) and time.monotonic() - began < limit_s:
            live = [refs[j] for j in submitted if j not in ended]
            for start in range(0, len(live), 300):
                for snap in client.get_all(live[start : start + 300]):
                    doc = snap.to_dict() or {}
                    docs[snap.id] = doc
                    if doc.get("status") in TERMINAL:
                        ended[snap.id] = time.monotonic()
            time.sleep(1.0)
    finally:
        client.close()
    return ended, docs


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each process group, children included."""
    groups = {pid: name for name, pid in pids.items()}
    totals = dict.fromkeys(pids, 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pgid = int(fields[2])
        if pgid in groups:
            totals[groups[pgid]] += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return totals


def count_lines(log: Path, text: str) -> int:
    with contextlib.suppress(OSError), open(log, errors="replace") as lines:
        return sum(1 for line in lines if text in line)
    return 0


def count_invocations(log: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    with contextlib.suppress(OSError), open(log, errors="replace") as lines:
        for line in lines:
            if line.startswith("{") and '"event"' in line:
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if entry.get("message") == "ok" or "status" in entry:
                        counts[str(entry.get("event"))] += 1
    return counts


class Profiler:
    """py-spy sampling the functions process for the length of the load (collapsed stacks)."""

    def __init__(self, pid: int | None, out: Path, limit_s: float) -> None:
        self.pid, self.out, self.limit_s = pid, out, limit_s
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.pid is None or not PY_SPY.exists() or shutil.which("true") is None:
            return
        argv = [
            str(PY_SPY),
            "record",
            "--pid",
            str(self.pid),
            "--rate",
            "50",
            "--format",
            "raw",
            "--output",
            str(self.out),
            "--duration",
            str(int(self.limit_s)),
            "--nonblocking",
        ]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT: py-spy writes what it has and exits
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def top(self, count: int = 8) -> dict[str, Any]:
        """Samples by the innermost frame in the project's code, and by where the stack ends."""
        try:
            lines = self.out.read_text().splitlines()
        except OSError:
            return {}
        ours: Counter[str] = Counter()
        inside: Counter[str] = Counter()
        leaves: Counter[str] = Counter()
        total = in_changes = in_generate = generate_in_changes = 0
        for line in lines:
            stack, _, samples = line.rpartition(" ")
            if not samples.isdigit():
                continue
            n = int(samples)
            total += n
            frames = stack.split(";")
            leaves[_short(frames[-1])] += n
            in_change = any(CHANGE_FRAME.match(f) and _is_project(f) for f in frames)
            if in_change:
                in_changes += n
            if any(f.startswith("generate_video (main.py") for f in frames):
                in_generate += n
                if in_change:
                    generate_in_changes += n
            project = [f for f in frames if _is_project(f)]
            ours[_short(project[-1]) if project else "(outside the project's code)"] += n
            for name in {_short(f) for f in project if not f.startswith(WRAPPERS)}:
                inside[name] += n
        return {
            "samples": total,
            "in_changes": in_changes,
            "in_generate": in_generate,
            "generate_in_changes": generate_in_changes,
            "project": ours.most_common(count),
            "inside": inside.most_common(count),
            "leaves": leaves.most_common(count),
        }


PROJECT_TOPS = {
    p.stem
    for p in ROOT.iterdir()
    if (p.suffix == ".py" or (p / "__init__.py").exists()) and p.stem not in ("benchmarks", "tests")
}


CPU_BOUND_PCT = 150.0  # of the 200% two cores give
ADMISSION_TAIL_S = 15.0  # the run was admission-bound when the last job ended this soon after it
CHANGE_FRAME = re.compile(r"^(?:\w+\.)?(?:_commit|run_optimistic)\b")  # jobs/store.py, jobs/txn.py
WRAPPERS = ("serve ", "_at_root", "endpoint.", "wrapped_f ", "BaseRetrying", "Retrying")


def _is_project(frame: str) -> bool:
    """py-spy names files relative to their import root (`jobs/store.py`, but `auth/transport/...` for
    google-auth's): a project frame is one whose file exists under the project's root."""
    path = frame.rpartition(" (")[2].rstrip(")").split(":")[0]
    top = path.split("/")[0].removesuffix(".py")
    return top in PROJECT_TOPS and (ROOT / path).is_file()


def _short(frame: str) -> str:
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").replace(str(ROOT) + "/", "")
    if "site-packages/" in where:
        where = where.split("site-packages/", 1)[1]
    return f"{name} ({where.split(':')[0]})"


def _section(jobs, speed, submitted, refused, ended, docs, wall, cpu, profile, invocations, load) -> Section:
    refused_total = sum(n for reason, n in refused.items() if not reason.startswith("client time-out"))
    statuses = Counter(docs.get(j, {}).get("status", "unknown") for j in submitted)
    completed = statuses.get("completed", 0)
    lost = len(submitted) - len(ended)
    last = max(ended.values(), default=0.0) - min(submitted.values(), default=0.0)
    per_minute = completed / last * 60 if last > 0 else float("nan")
    latencies = [ended[j] - submitted[j] for j in ended]
    providers = Counter(docs.get(j, {}).get("provider") for j in submitted)
    errors = Counter(
        (docs.get(j, {}).get("error") or {}).get("code")
        for j in submitted
        if docs.get(j, {}).get("status") not in ("completed", None)
    )
    tail = max(ended.values(), default=0.0) - max(submitted.values(), default=0.0)
    rate = len(submitted) / load["accepted_s"] if load["accepted_s"] else float("nan")
    timeouts = invocations.get("Firestore emulator: transaction lock time-outs", 0)
    admission = judge(rate, ADMISSION_GOAL, at_least=True) if timeouts == 0 else NOT_MET
    named = bottleneck(rate, timeouts, tail, load, cpu, wall, profile)
    peak_mib, smallest_mib = load["peak_rss_mib"], min(gib for gib, _ in function_sizes().values()) * 1024
    memory_ok = peak_mib <= MEMORY_SHARE_GOAL * smallest_mib
    cpu_rows = [
        (name, seconds, seconds / wall * 100) for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1])
    ]
    headline = (
        f"{completed} of {jobs} jobs completed in {last:.0f} s = {per_minute:.0f} jobs/min; "
        f"{lost} not terminal{'' if lost else ' (none lost)'}; "
        f"admission {rate:.1f} creates/s with {timeouts} lock time-outs ({admission}); "
        f"{named.split('**')[1].rstrip('.')}; functions process peak RSS {peak_mib:.0f} MiB = "
        f"{peak_mib / smallest_mib:.0%} of the smallest function memory ({smallest_mib:.0f} MiB)"
    )
    parts = [
        METHOD.format(jobs=jobs, speed=speed, threads=CLIENT_THREADS, users=USERS),
        table(
            (
                "submitted",
                "refused at submit",
                "terminal",
                "not terminal",
                "completed",
                "jobs/min",
                "end-to-end p50 s",
                "p95 s",
            ),
            [
                (
                    len(submitted),
                    refused_total,
                    len(ended),
                    lost,
                    completed,
                    per_minute,
                    percentile(latencies, 50),
                    percentile(latencies, 95),
                )
            ],
        ),
        "Final states: "
        + ", ".join(f"{k}: {v}" for k, v in statuses.most_common())
        + "; providers: "
        + ", ".join(f"{k}: {v}" for k, v in providers.most_common())
        + ("; errors: " + ", ".join(f"{k}: {v}" for k, v in errors.most_common()) if errors else "")
        + ("; refused: " + ", ".join(f"{k}: {v}" for k, v in refused.items()) if refused else "")
        + ".",
        f"{len(submitted)} jobs were accepted within {load['accepted_s']:.0f} s of the first submission; "
        f"`generate_video` answered in {percentile(load['create_latencies'], 50):.2f} s at the median and "
        f"{percentile(load['create_latencies'], 95):.2f} s at p95 under this load.",
        "Function invocations (from the functions log): "
        + ", ".join(f"{name} {n}" for name, n in invocations.most_common())
        + ".",
        "CPU time by part during the load (a 2-core machine has 200% to give):",
        table(("part", "CPU s", "% of one core"), cpu_rows),
        MEMORY.format(
            peak=peak_mib, smallest=smallest_mib, share=peak_mib / smallest_mib, goal=MEMORY_SHARE_GOAL
        ),
    ]
    parts.append(named)
    if profile.get("samples"):
        parts += [
            f"Where the functions process spends its time (py-spy, {profile['samples']:,} samples at 50 Hz, "
            "all threads; py-spy leaves out threads it sees idle): innermost frame in the project's code —",
            table(("frame", "samples"), profile["project"]),
            "samples spent inside each project function (inclusive; entry-point wrappers left out) —",
            table(("function", "samples"), profile["inside"]),
            "and the innermost frame overall —",
            table(("frame", "samples"), profile["leaves"]),
        ]
    return Section(
        key="throughput",
        title="Throughput",
        goal="a few hundred concurrent jobs on the local stack: every job terminal; jobs per minute "
        f"and the bottleneck named; admission ≥ {ADMISSION_GOAL:g} accepted creates a second with no "
        f"transaction lock time-out; the functions' peak RSS ≤ {MEMORY_SHARE_GOAL:.0%} of their memory",
        verdict=admission if lost == 0 and submitted and memory_ok else NOT_MET,
        headline=headline,
        body="\n\n".join(parts),
        data={
            "completed": completed,
            "lost": lost,
            "per_minute": per_minute,
            "statuses": dict(statuses),
            "cpu": cpu,
            "profile": profile,
            "submitted": len(submitted),
            "refused": dict(refused),
            "creates_per_s": rate,
            "peak_rss_mib": peak_mib,
            "lock_timeouts": timeouts,
        },
    )


def bottleneck(rate: float, timeouts: int, tail_s: float, load, cpu, wall, profile) -> str:
    """The limit this run ran into, stated from its own numbers.

    CPU when the parts together used most of the machine; else admission when accepting the jobs took
    most of the run (the rest kept up), with the share of `generate_video`'s samples spent inside
    the store's read-decide-write changes saying where admission waits; else the pipeline after it.
    """
    used = sum(cpu.values()) / wall * 100
    samples = profile.get("samples") or 0
    in_generate = profile.get("in_generate", 0)
    waiting = profile.get("generate_in_changes", 0) / in_generate if in_generate else float("nan")
    measured = (
        f"Jobs were accepted at {rate:.1f} a second over {load['accepted_s']:.0f} s; the last job ended "
        f"{tail_s:.0f} s after the last one was accepted. All parts together used {used:.0f}% of the "
        f"200% of CPU the machine has. `generate_video` took {in_generate / samples if samples else 0:.0%} "
        f"of the functions process's samples, and {waiting:.0%} of those were inside the "
        "read-decide-write changes of Firestore documents (the project's helpers `_commit` / "
        "`run_optimistic`), mostly waiting on the emulator's answer; the emulator logged "
        f"{timeouts} transaction lock time-outs."
    )
    if used >= CPU_BOUND_PCT:
        busiest = max(cpu.items(), key=lambda kv: kv[1])[0]
        return f"**Bottleneck: CPU** (busiest part: {busiest}). {measured}"
    if tail_s <= ADMISSION_TAIL_S:
        where = ", waiting on Firestore reads and commits" if waiting >= 0.3 else ""
        return (
            f"**Bottleneck: admission — `generate_video`{where}.** "
            + measured
            + " The shared documents a create writes (the request-budget and spend shards, the "
            "provider's health record, the user's ledger: jobs/guards.py, jobs/admission.py) and the "
            "job's own attempt and task record (jobs/store.py) are written without transactions, "
            "each write conditional on what it was decided from, so no create queues on a lock."
        )
    return f"**Bottleneck: after admission (polls, webhooks, finalize).** {measured}"


METHOD = """\
{jobs} jobs submitted at once through `generate_video` by {threads} client threads on behalf of
{users} users (the app's users submit concurrently; the default provider choice), on the local stack
with the simulators at {speed:g}× speed (HeyGen renders of 300–900 simulated seconds take 0.3–0.9 s,
RunwayML's 15–45 s take 15–45 ms). Polling delays are real seconds (the Cloud Tasks emulator
dispatches at the scheduled wall-clock time), so end-to-end times are dominated by the schedule, not
by the renders. The project's own request budget (by default 20–25 creates a minute per provider, a
design limit: jobs/guards.py), the users' plans and the HeyGen account's limit of renders at once
are raised out of the way, to find the next limit in the project's own code. HeyGen's limit (10 at
once) answers 429 with `Retry-After: 5`: the renders are sped up but those five seconds are real, so
a create that meets the limit waits five real seconds (the client honours the header) for a slot
that the sped-up renders free in well under one. Left in, the limit would measure the simulator's
time scale, not admission. RunwayML's account keeps its defaults (2 renders at once, 200 a day); it
only sees fallbacks. One create is sent before the load (its job is not counted), so the functions
process has served a request, as a running service has; its first request is the cold start's. Jobs
per minute = completed jobs ÷ time from the first submission to the last terminal job."""


MEMORY = """\
**Memory.** The functions process's peak resident memory (VmHWM) over the run was {peak:.0f} MiB. It
serves every function from one process, with all their code loaded, through every step of every job
(create, webhook, poll, finalize, the ops event), many requests at once. A deployed instance loads
one function's code and serves one request at a time (8 for the user-facing functions), so this
bounds each function's peak from above: {share:.0%} of the smallest memory deploy.sh gives a function
({smallest:.0f} MiB; goal ≤ {goal:.0%}). The cold-start section measures the user-facing functions
one by one, the cleanup and batch sections their functions at scale, and the finalize section a
GIF's finalize, which this run does not make (ffmpeg runs as a child process and its files sit in
/tmp, which is memory on Cloud Functions)."""
