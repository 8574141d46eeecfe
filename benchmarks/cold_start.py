"""Cold start: a fresh process imports main.py and answers its first request, against hello world.

Each run is a new Python process (`benchmarks/cold_probe.py`), alternating between the variants
(ABAB); the median of the runs is reported with the peak resident memory of each process. The
source is byte-compiled before the runs, as a deploy does (`compile_sources`).

    hello world             benchmarks/baseline_fn.py `hello`: functions-framework and nothing else
    one document read       benchmarks/baseline_fn.py `read_job`: imports the Firestore client and
                            reads the job once (what any Firestore-backed function pays)
    main.py, no I/O         `runwayml_status_check` without a token: builds the settings and the
                            token verifier (lazily, on the first request), answers 401; no network
    main.py, status check   the same with the owner's token for a finished job: also fetches the
                            token certificates, builds the store and reads the job document once
                            (the full first request; no provider, queue or task worker is built)
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import functions_framework

from benchmarks import cpu_share
from benchmarks.common import (
    MEMORY_SHARE_GOAL,
    MET,
    NOT_MET,
    ROOT,
    Section,
    interleave,
    judge,
    median,
    ratio,
    run_module,
    table,
)
from benchmarks.env import PROJECT, SCRIPT, Context, simulators
from benchmarks.fixtures import OWNER, finished_job, store_for
from benchmarks.prices import BILLING_QUANTUM_S, PREVIOUS_SHAPE, PRICES, function_sizes, previous_sizes

GOAL = 1.15  # the first status check against the one-document-read function, on a full core
GOAL_DEPLOYED_S = 1.0  # a user-facing function's import + first answer in its deployed shape
USER_FACING = tuple(PREVIOUS_SHAPE)  # generate_video, cancel_video, runwayml_status_check
HELLO, READ = "hello world", "baseline: one document read"
SETTINGS = "baseline + the project's settings"
BARE, FULL = "main.py, first request without I/O", "main.py, first status check"
MAIN_PY = str(ROOT / "main.py")
ACCEPTED = {"generate_video": 202}  # what each first request answers (else 200)


# What deploy.sh puts in every function's environment besides its settings (`write_env_file`): with
# plugins disabled pydantic does not scan every installed distribution's entry points for plugins
# when it builds its first validator.
DEPLOYED_ENV = {"PYDANTIC_DISABLE_PLUGINS": "__all__"}

# What a deploy byte-compiles: the function source (the Python Functions Framework buildpack runs
# `python3 -m compileall -f -q .` over it at build time) and this benchmark's own baseline and probe.
SOURCES = ("main.py", "config.py", "logs.py", "errors.py", "web", "tasks", "jobs", "providers", "benchmarks")


def run(ctx: Context) -> Section:
    runs = 2 if ctx.quick else 9
    compile_sources()
    ctx.wipe()
    store = store_for(PROJECT)
    job_id = finished_job(store)
    store.client.close()
    token = f"Bearer {ctx.issuer().user_token(OWNER, PROJECT)}"
    env = ctx.function_env("http://127.0.0.1:9999") | DEPLOYED_ENV
    baseline = str(ROOT / "benchmarks" / "baseline_fn.py")
    probes = {
        HELLO: [baseline, "hello", "GET", "/"],
        READ: [baseline, "read_job", "GET", f"/?jobId={job_id}"],
        SETTINGS: [baseline, "read_job_with_settings", "GET", f"/?jobId={job_id}"],
        BARE: [MAIN_PY, "runwayml_status_check", "GET", f"/?jobId={job_id}"],
        FULL: [MAIN_PY, "runwayml_status_check", "GET", f"/?jobId={job_id}", token],
    }
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in probes}

    def variant(name: str):
        def call() -> list[float]:
            outcome = probe(probes[name], env)
            results[name].append(outcome)
            return [outcome["total_s"]]

        return call

    interleave({name: variant(name) for name in probes}, runs)
    section = _section(results, runs)
    shaped = deployed_shapes(ctx, env, runs=1 if ctx.quick else 5)
    return with_shapes(section, shaped)


def compile_sources() -> None:
    """Byte-compile `SOURCES` as a deploy does, so that no probe compiles them at its cold start (where
    `PYTHONDONTWRITEBYTECODE` is set, no earlier import has left their bytecode behind)."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *SOURCES], cwd=ROOT, check=True, capture_output=True
    )


def probe(args: list[str], env: dict[str, str], share: float | None = None) -> dict[str, Any]:
    with cpu_share.cpu_share(share) if share is not None else _no_limit() as enter:
        began = time.perf_counter()
        done = run_module("benchmarks.cold_probe", args, env, timeout=180, preexec_fn=enter)
        wall = time.perf_counter() - began
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"import_s"')]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"cold-start probe failed ({done.returncode}): {done.stderr[-500:]}")
    return {**json.loads(lines[-1]), "process_s": wall}


def _section(results: dict[str, list[dict[str, Any]]], runs: int) -> Section:
    summary = {
        name: {
            key: median([r[key] for r in rs])
            for key in ("import_s", "first_request_s", "total_s", "process_s", "max_rss_mib")
        }
        | {"status": rs[-1]["status"]}
        for name, rs in results.items()
    }
    rows = [
        (
            name,
            s["import_s"] * 1000,
            s["first_request_s"] * 1000,
            s["total_s"] * 1000,
            s["process_s"] * 1000,
            s["max_rss_mib"],
            s["status"],
        )
        for name, s in summary.items()
    ]
    hello = summary[HELLO]
    bare = ratio(summary[BARE]["total_s"], hello["total_s"])
    full = ratio(summary[FULL]["total_s"], hello["total_s"])
    full_process = ratio(summary[FULL]["process_s"], hello["process_s"])
    to_read = ratio(summary[FULL]["total_s"], summary[READ]["total_s"])
    settings = ratio(summary[SETTINGS]["total_s"], summary[READ]["total_s"])
    headline = (
        f"full core: first status check {to_read:.2f}× the one-document-read function; "
        f"import + first answer {summary[FULL]['total_s'] * 1000:.0f} ms = {full:.1f}× hello world "
        f"({hello['total_s'] * 1000:.0f} ms); without I/O {bare:.1f}×; whole process {full_process:.1f}×; "
        f"peak RSS {summary[FULL]['max_rss_mib']:.0f} MiB vs {hello['max_rss_mib']:.0f} MiB"
    )
    header = (
        "variant",
        "import ms",
        "first request ms",
        "import + answer ms",
        "whole process ms",
        "peak RSS MiB",
        "HTTP status",
    )
    body = "\n\n".join(
        [
            METHOD.format(runs=runs),
            table(header, rows),
            f"Ratio to hello world (import + answer): first status check {full:.2f}×, without I/O "
            f"{bare:.2f}×; whole process (interpreter start included) {full_process:.2f}×. "
            f"Against the one-document-read function the first status check takes {to_read:.2f}× "
            f"(goal ≤ {GOAL}×); the same function loading only the project's settings first takes "
            f"{settings:.2f}× it.",
            WHY.format(
                read=ratio(summary[READ]["total_s"], hello["total_s"]), to_read=to_read, settings=settings
            ),
            imports_note(),
        ]
    )
    return Section(
        key="cold_start",
        title="Cold start",
        goal=f"the user-facing functions answer their first request within {GOAL_DEPLOYED_S:g} s in their "
        f"deployed shape, peak RSS ≤ {MEMORY_SHARE_GOAL:.0%} of their memory; on a full core the first "
        f"status check ≤ {GOAL}× the one-document-read function",
        verdict=judge(to_read, GOAL, at_least=False),
        headline=headline,
        body=body,
        data={
            "summary": summary,
            "ratio": full,
            "ratio_to_read": to_read,
            "settings_to_read": settings,
            "ratio_no_io": bare,
            "ratio_process": full_process,
        },
    )


def imports_note() -> str:
    """The heaviest imports of main.py, from `python -X importtime` (cumulative, top 6)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import main"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    rows = []
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        indent = len(parts[2]) - len(parts[2].lstrip())
        if indent == 3:  # a direct import of main.py
            rows.append((int(parts[1]) / 1000, parts[2].strip()))
    picked = sorted(rows, reverse=True)[:6]
    if not picked:
        return ""
    return "Heaviest direct imports of main.py (cumulative ms, `python -X importtime`, one run):\n\n" + table(
        ("module", "ms"), [(name, ms) for ms, name in picked]
    )


METHOD = """\
Each run is a fresh `python -m benchmarks.cold_probe` process (medians of {runs} runs per variant,
alternating). The source is byte-compiled first, as the Python Functions Framework buildpack does
at deploy (`compileall`), so no variant compiles Python at its cold start (the installed packages
come compiled). *Import* is from the first line of the probe to `functions_framework.create_app`
returning (functions-framework, Flask and the function's source module); *first request* is the first
call through the app's test client, which builds the lazily created clients. *Whole process* adds
the interpreter start and exit, measured by the parent. Peak RSS is the probe's VmHWM. Every probe
runs with what deploy.sh adds to the functions' environment besides their settings
(`PYDANTIC_DISABLE_PLUGINS=__all__`: pydantic looks for no plugin in the installed packages)."""

WHY = """\
Most of the gap is the Firestore client: a function that reads Firestore loads it (gRPC and
protobuf), and Flask alone is what the hello-world function loads; the one-document-read baseline,
which imports it on its first request, already takes {read:.1f}× hello world. main.py imports only
functions-framework and the HTTP edge at load time; each function imports what it uses on its first
request. The status check's first request takes {to_read:.2f}× the baseline's: besides the Firestore
client it loads the token verifier (google-auth), the settings and its query (msgspec models: the
status check loads no pydantic, whose import and first schema cost about 180 ms) and the job store
with what it imports (the job records and views, the provider registry, which imports the provider
packages only when first asked). The dependency container (`web/deps.py`) builds each collaborator
when a request first needs it, so a status check of a finished job builds no provider, queue or task
worker and imports nothing from `tasks/` and no provider's client or wire format. Of that gap, the
settings alone account for {settings:.2f}×: the baseline that loads them first
(`read_job_with_settings`) builds the `Settings` (config.py), which every function of main.py needs
before it can answer; the rest is the project's own code (token verification, the owner check, the
job store, the view). main.py also turns the cyclic garbage collector off until its first answer
(web/http.py), which the baselines do not: in an A/B of fresh processes that saved about 45 ms of
the status check's cold start, part of it in the Firestore client's import, which the baselines pay
with the collector on."""


@contextlib.contextmanager
def _no_limit() -> Iterator[None]:
    yield None


def deployed_shapes(ctx: Context, env: dict[str, str], runs: int) -> list[dict[str, Any]]:
    """Each user-facing function's first answer under the CPU quota of its previous and its deployed
    shape, alternating (ABAB); empty when this machine cannot set a CPU quota."""
    if not cpu_share.available():
        return []
    sizes = {"previous": previous_sizes(), "deployed": function_sizes()}
    shapes = {  # (function, shape) -> (vCPU, memory MiB)
        (n, label): (by_name[n][1], round(by_name[n][0] * 1024))
        for n in USER_FACING
        for label, by_name in sizes.items()
    }
    results: dict[tuple[str, str], list[dict[str, Any]]] = {key: [] for key in shapes}
    with live_jobs(ctx, env) as (live_env, new_job):

        def first_request(function: str) -> list[str]:
            """A new user's first request: a create, or a cancel or status check of a job just made."""
            uid = f"cold-{uuid.uuid4().hex[:12]}"
            token = f"Bearer {ctx.issuer().user_token(uid, PROJECT)}"
            if function == "generate_video":
                return [MAIN_PY, function, "POST", "/", token, json.dumps({"script": SCRIPT})]
            job_id = new_job(uid)
            if function == "cancel_video":
                return [MAIN_PY, function, "POST", "/", token, json.dumps({"jobId": job_id})]
            return [MAIN_PY, function, "GET", f"/?jobId={job_id}", token]

        def variant(key: tuple[str, str]):
            def call() -> list[float]:
                outcome = probe(first_request(key[0]), live_env, share=shapes[key][0])
                answered = {outcome["status"], *outcome["warm_statuses"]}
                if answered != {ACCEPTED.get(key[0], 200)}:
                    raise RuntimeError(f"{key[0]} answered {sorted(answered)} in the {key[1]} shape")
                results[key].append(outcome)
                return [outcome["total_s"]]

            return call

        interleave({key: variant(key) for key in shapes}, runs)
    return [
        {
            "function": name,
            "shape": label,
            "vcpu": shapes[(name, label)][0],
            "memory_mib": shapes[(name, label)][1],
            "total_s": median([r["total_s"] for r in rs]),
            "import_s": median([r["import_s"] for r in rs]),
            "warm_s": median([r["warm_s"] for r in rs]),
            "max_rss_mib": max(r["max_rss_mib"] for r in rs),
            "status": rs[-1]["status"],
        }
        for (name, label), rs in results.items()
    ]


@contextlib.contextmanager
def live_jobs(ctx: Context, env: dict[str, str]) -> Iterator[tuple[dict[str, str], Callable[[str], str]]]:
    """What lets a create go all the way, as in production: both provider simulators (in this
    process, no account limits) and a Cloud Tasks emulator with the queue. Yields the functions'
    environment over them and `new_job(uid)`, which creates a job for `uid` through `generate_video`
    served in this process (warm, not measured) and returns its id. The tasks are dispatched once to
    the closed functions URL of `env` and dropped: no poll runs while the probes are measured."""
    from config import load_settings
    from local.tasks_emulator import TasksEmulator
    from tasks.memory import InMemoryQueue
    from web import deps

    tasks = TasksEmulator(ctx.work_dir / "logs", max_retries=0)
    with simulators() as providers:
        try:
            tasks.start()
            live = env | providers | {"CLOUD_TASKS_EMULATOR_HOST": tasks.host}
            settings = load_settings(live)
            tasks.create_queue(settings.project_id, settings.queue_location, settings.tasks_queue)
            deps.use(deps.build(settings, queue=InMemoryQueue()))
            create = functions_framework.create_app(target="generate_video", source=MAIN_PY).test_client()

            def new_job(uid: str) -> str:
                token = ctx.issuer().user_token(uid, PROJECT)
                headers = {"Authorization": f"Bearer {token}"}
                answer = create.post("/", json={"script": SCRIPT}, headers=headers)
                if answer.status_code != 202:
                    raise RuntimeError(f"generate_video answered {answer.status_code}: {answer.get_json()}")
                return str(answer.get_json()["jobId"])

            new_job("cold-warm-up")  # the emulators' first writes, not any probe's
            yield live | {"WARM_REQUESTS": "1" if ctx.quick else "20"}, new_job
        finally:
            deps.use(None)
            tasks.stop()


def with_shapes(section: Section, shaped: list[dict[str, Any]]) -> Section:
    """The deployed-shape table and goal added to the full-core section."""
    section.data["shapes"] = shaped
    if not shaped:
        section.body += "\n\n" + NO_CGROUP
        section.verdict = NOT_MET
        return section
    deployed = [s for s in shaped if s["shape"] == "deployed"]
    slowest = max(deployed, key=lambda s: s["total_s"])
    memory_ok = all(s["max_rss_mib"] <= MEMORY_SHARE_GOAL * s["memory_mib"] for s in deployed)
    fast = slowest["total_s"] <= GOAL_DEPLOYED_S
    rows = [
        (
            s["function"],
            s["shape"],
            s["vcpu"],
            s["memory_mib"],
            s["import_s"] * 1000,
            s["total_s"] * 1000,
            s["warm_s"] * 1000,
            1 / s["warm_s"],
            f"${per_thousand_usd(s):.5f}",
            s["max_rss_mib"],
            f"{s['max_rss_mib'] / s['memory_mib']:.0%}",
            s["status"],
        )
        for s in shaped
    ]
    header = (
        "function",
        "shape",
        "vCPU",
        "memory MiB",
        "import ms",
        "import + answer ms",
        "warm request ms",
        "requests/s per instance",
        "USD per 1,000 warm requests",
        "peak RSS MiB",
        "of memory",
        "HTTP status",
    )
    section.body += "\n\n" + SHAPES + "\n\n" + table(header, rows)
    section.headline += (
        f"; deployed shape: slowest user-facing first answer {slowest['total_s'] * 1000:.0f} ms "
        f"({slowest['function']} at {slowest['vcpu']:g} vCPU; goal ≤ {GOAL_DEPLOYED_S * 1000:.0f} ms)"
    )
    if not (fast and memory_ok and section.verdict.startswith(MET)):
        section.verdict = NOT_MET + (" (borderline)" if section.verdict.endswith("(borderline)") else "")
    return section


def per_thousand_usd(shape: dict[str, Any]) -> float:
    """What 1,000 warm requests cost in a shape: billed time (rounded up to 100 ms) x the shape's
    vCPU and memory, plus the request charge."""
    billed = math.ceil(shape["warm_s"] / BILLING_QUANTUM_S) * BILLING_QUANTUM_S
    second = shape["vcpu"] * PRICES["vcpu_second"].usd + shape["memory_mib"] / 1024 * PRICES["gib_second"].usd
    return 1000 * (billed * second + PRICES["function_invocation"].usd)


SHAPES = """\
**In the deployed shape.** The same probe under a CPU quota equal to the function's vCPU (cgroup v1
`cpu.cfs_quota_us` over a 100 ms period, `benchmarks/cpu_share.py`), in the shape each user-facing
function had before (256 MiB = .167 vCPU; generate_video 512 MiB = .333) and the one deploy.sh gives it
now, alternating; medians of the runs, peak RSS the largest seen. Each probe's first request is
one a new user makes, and it goes all the way, as in production: `generate_video` creates a video
(202: the user's ledger read, admission, the job written, the render submitted to the HeyGen
simulator, the first poll enqueued in the Cloud Tasks emulator); `cancel_video` cancels, and
`runwayml_status_check` reads, a job the same user created just before (through `generate_video`
served in the benchmark's process, not measured; the status check may ask the provider for a
fresher state, as it does in production). The simulators run in the benchmark's process with no
account limits; the enqueued polls are dispatched once to a closed port and dropped, so no poll
runs while a probe is measured. The quota limits CPU time only: a real instance also starts a
container, which this does not measure. *Warm request*: the median of 20 more of the same request in
the same process (20 more videos; cancels of the job already cancelled, which answer with it;
status checks of the same job), one at a time, so requests/s per instance is its inverse at
concurrency 1 (deploy.sh lets these functions serve 8 at once; those requests mostly wait on
Firestore and the providers). The cost of 1,000 warm requests bills each at its
warm time rounded up to 100 ms, at list prices (benchmarks/prices.py: $0.000024 per vCPU-second,
$0.0000025 per GiB-second, $0.40 per million requests; CPU allocated only during requests)."""

NO_CGROUP = """\
**In the deployed shape: not measured** — this machine gives no writable cgroup v1 cpu controller
(`/sys/fs/cgroup/cpu`, as root), so no CPU quota can be set."""
