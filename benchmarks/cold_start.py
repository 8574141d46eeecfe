"""Cold start: a fresh process imports main.py and answers its first request, against hello world.

Each run is a new Python process (`benchmarks/cold_probe.py`), alternating between the variants
(ABAB); the median of the runs is reported with the peak resident memory of each process.

    hello world             benchmarks/baseline_fn.py `hello`: functions-framework and nothing else
    one document read       benchmarks/baseline_fn.py `read_job`: imports the Firestore client and
                            reads the job once (what any Firestore-backed function pays)
    main.py, no I/O         `runwayml_status_check` without a token: builds the settings, clients and
                            providers (lazily, on the first request), answers 401; no network
    main.py, status check   the same with the owner's token for a finished job: also fetches the
                            token certificates and reads Firestore twice (the full first request)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from benchmarks.common import ROOT, Section, interleave, judge, median, ratio, table
from benchmarks.env import PROJECT, Context
from benchmarks.fixtures import OWNER, finished_job, store_for

GOAL = 1.5
HELLO, READ = "hello world", "baseline: one document read"
BARE, FULL = "main.py, first request without I/O", "main.py, first status check"


def run(ctx: Context) -> Section:
    runs = 2 if ctx.quick else 9
    ctx.wipe()
    store = store_for(PROJECT)
    job_id = finished_job(store)
    store.client.close()
    token = f"Bearer {ctx.issuer().user_token(OWNER, PROJECT)}"
    env = ctx.function_env("http://127.0.0.1:9999")
    main_py, baseline = str(ROOT / "main.py"), str(ROOT / "benchmarks" / "baseline_fn.py")
    probes = {
        HELLO: [baseline, "hello", "GET", "/"],
        READ: [baseline, "read_job", "GET", f"/?jobId={job_id}"],
        BARE: [main_py, "runwayml_status_check", "GET", f"/?jobId={job_id}"],
        FULL: [main_py, "runwayml_status_check", "GET", f"/?jobId={job_id}", token],
    }
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in probes}

    def variant(name: str):
        def call() -> list[float]:
            outcome = probe(probes[name], env)
            results[name].append(outcome)
            return [outcome["total_s"]]

        return call

    interleave({name: variant(name) for name in probes}, runs)
    return _section(results, runs)


def probe(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.cold_probe", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
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
    headline = (
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
            f"{bare:.2f}×; whole process (interpreter start included) {full_process:.2f}×. Goal ≤ {GOAL}×. "
            f"Against the one-document-read function the first status check takes {to_read:.2f}×.",
            WHY.format(read=ratio(summary[READ]["total_s"], hello["total_s"]), to_read=to_read),
            imports_note(),
        ]
    )
    return Section(
        key="cold_start",
        title="Cold start",
        goal=f"import main.py and answer the first request in ≤ {GOAL}× the time of a hello-world function",
        verdict=judge(full, GOAL, at_least=False),
        headline=headline,
        body=body,
        data={
            "summary": summary,
            "ratio": full,
            "ratio_to_read": to_read,
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
alternating). *Import* is from the first line of the probe to `functions_framework.create_app`
returning (functions-framework, Flask and the function's source module); *first request* is the first
call through the app's test client, which builds the lazily created clients. *Whole process* adds
the interpreter start and exit, measured by the parent. Peak RSS is the probe's VmHWM."""

WHY = """\
Most of the gap is the Firestore client: `deps` imports `google.cloud.firestore` (gRPC and protobuf)
at module level, and Flask alone is what the hello-world function loads. Any function that reads
Firestore pays for that client: the one-document-read baseline, which imports it on its first
request, already takes {read:.1f}× hello world, and main.py's first status check takes {to_read:.2f}×
that baseline. Importing the client lazily would move the cost into the first request, not remove it."""
