"""Cleanup scaling: the scheduled cleanup deleting expired records, against a one-by-one delete loop.

Expired records: finished jobs that ended 60 days ago (retention is 30), each with its task record,
made by the store's own code and cloned (benchmarks/fixtures.py). Every variant runs in a fresh
process (benchmarks/cleanup_probe.py) on freshly seeded data, alternating (ABAB), so its peak memory
is its own. The cleanup also runs at a fifth of the size: flat memory means the same peak at both.
"""

from __future__ import annotations

import importlib.util
import json
from datetime import timedelta
from typing import Any

from benchmarks.common import MissingCode, Section, interleave, judge, median, ratio, run_module, table
from benchmarks.env import PROJECT, Context
from benchmarks.fixtures import clone_finished, finished_job, store_for
from jobs.txn import utcnow

GOAL = 10.0
SWEEP, NAIVE = "cleanup (tasks/cleanup.py)", "naive one-by-one deletes"


def run(ctx: Context) -> Section:
    if importlib.util.find_spec("tasks.cleanup") is None:
        raise MissingCode("tasks/cleanup.py is not in the tree yet")
    records = 40 if ctx.quick else 10_000
    small = max(10, records // 5)
    rounds = 1 if ctx.quick else 2
    env = ctx.function_env("http://127.0.0.1:9999")
    results: dict[str, list[dict[str, Any]]] = {SWEEP: [], NAIVE: [], "small": []}

    def variant(name: str, variant_records: int, mode: str):
        def call() -> list[float]:
            seed(ctx, variant_records)
            outcome = probe(mode, env)
            if outcome["deleted"] != variant_records:
                raise RuntimeError(f"{name} deleted {outcome['deleted']} of {variant_records} records")
            results[name].append(outcome)
            return [outcome["seconds"]]

        return call

    interleave({SWEEP: variant(SWEEP, records, "sweep"), NAIVE: variant(NAIVE, records, "naive")}, rounds)
    variant("small", small, "sweep")()
    return _section(results, records, small, rounds)


def seed(ctx: Context, records: int) -> None:
    """`records` expired documents: half jobs, half their task records."""
    ctx.wipe()
    store = store_for(PROJECT)
    template = finished_job(store)
    ended = utcnow() - timedelta(days=60)
    clone_finished(store, template, records // 2 - 1, ended_at=ended)
    clone_finished(store, template, 0)
    jobs = store.client.collection(store.settings.jobs_collection)
    jobs.document(template).update({"endedAt": ended, "updatedAt": ended})  # the template expires too
    store.client.close()


def probe(mode: str, env: dict[str, str]) -> dict[str, Any]:
    done = run_module("benchmarks.cleanup_probe", [mode], env, timeout=400)
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"variant"')]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"cleanup probe {mode} failed ({done.returncode}): {done.stderr[-800:]}")
    return json.loads(lines[-1])


def _section(results: dict[str, list[dict[str, Any]]], records: int, small: int, rounds: int) -> Section:
    def summary(name: str) -> dict[str, float]:
        runs = results[name]
        keys = ("seconds", "rpcs", "deletes", "reads", "peak_rss_mib", "rss_before_mib")
        return {key: median([float(r[key]) for r in runs]) for key in keys}

    sweep, naive, little = summary(SWEEP), summary(NAIVE), summary("small")
    speedup = ratio(naive["seconds"], sweep["seconds"])
    growth = sweep["peak_rss_mib"] - little["peak_rss_mib"]
    rows = [
        (
            label,
            n,
            s["seconds"],
            n / s["seconds"],
            s["rpcs"],
            s["deletes"],
            s["reads"],
            s["rss_before_mib"],
            s["peak_rss_mib"],
        )
        for label, n, s in (
            (SWEEP, records, sweep),
            (NAIVE, records, naive),
            (f"{SWEEP}, 1/5 size", small, little),
        )
    ]
    header = (
        "variant",
        "records",
        "seconds",
        "records/s",
        "Firestore RPCs",
        "deletes",
        "reads",
        "RSS before MiB",
        "peak RSS MiB",
    )
    headline = (
        f"{records:,} records: {sweep['seconds']:.1f} s vs {naive['seconds']:.1f} s one by one = "
        f"{speedup:.1f}× faster, {sweep['rpcs']:.0f} RPCs vs {naive['rpcs']:,.0f}; peak RSS "
        f"{sweep['peak_rss_mib']:.0f} MiB at {records:,} vs {little['peak_rss_mib']:.0f} MiB at {small:,}"
    )
    body = "\n\n".join(
        [
            METHOD.format(rounds=rounds),
            table(header, rows),
            f"Speed-up {speedup:.1f}× (goal ≥ {GOAL:.0f}×). Memory: the peak grows by {growth:.1f} MiB "
            f"from {small:,} to {records:,} records.",
            f"On loopback one delete costs the naive loop about {naive['seconds'] / records * 1000:.1f} ms, "
            f"so sending them one by one is cheap here; the cleanup needs {sweep['rpcs']:.0f} round trips "
            f"where the loop needs {naive['rpcs']:,.0f} ({ratio(naive['rpcs'], sweep['rpcs']):.0f}×), "
            "and that is the ratio a real network round trip to Firestore multiplies (not measured here).",
        ]
    )
    return Section(
        key="cleanup",
        title="Cleanup scaling",
        goal=f"delete 10,000 expired records ≥ {GOAL:.0f}× faster than one-by-one deletes, memory flat",
        verdict=judge(speedup, GOAL, at_least=True),
        headline=headline,
        body=body,
        data={"sweep": sweep, "naive": naive, "small": little, "speedup": speedup, "records": records},
    )


METHOD = """\
Each run seeds the emulator afresh (finished jobs that ended 60 days ago, each with one task record:
half the records are jobs, half task records), then starts a new process that runs one variant and
reports its time, its Firestore RPCs (client-level counter) and its peak resident memory (VmHWM).
*Cleanup* is `tasks.cleanup.cleanup_for(deps).run()`: every step of the scheduled sweep, of which the
retention step does the work: one projected query streamed in pages of 500, each document decoded
straight from the response stream, its deletes (job, user view, task record) sent in BatchWrite
requests of 500, at most 4 in flight, while the next page is read. *Naive* streams the same expired
jobs with `Query.stream()` and deletes each job, its user view and its task record with its own
request. Medians of {rounds} alternating runs each; the 1/5-size cleanup run once."""
