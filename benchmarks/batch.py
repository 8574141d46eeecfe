"""Batch scaling: one `runwayml_batch_status_check` for N finished jobs against N single status checks.

Both run in this process through functions-framework's own app (`create_app(target, source=main.py)`,
its test client), on the Firestore emulator, with a client-level counter of Firestore RPCs and
documents read (benchmarks/counting.py). The jobs are finished, so neither side calls a provider.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import time
from typing import Any
from urllib.parse import urlsplit

import functions_framework

from benchmarks.cold_probe import tree_peak_rss_mib
from benchmarks.common import (
    MEMORY_SHARE_GOAL,
    NOT_MET,
    ROOT,
    Section,
    interleave,
    judge,
    median,
    ratio,
    table,
)
from benchmarks.counting import FirestoreCounter
from benchmarks.env import OPS_SA, PROJECT, Context
from benchmarks.fixtures import OWNER, clone_finished, finished_job, store_for
from benchmarks.prices import function_sizes
from benchmarks.served import serve
from config import load_settings
from jobs.queries import GET_ALL_CHUNK
from tasks.memory import InMemoryQueue
from web import deps

FUNCTIONS_BASE = "http://127.0.0.1:9999"
BATCH, SINGLE = "runwayml_batch_status_check", "runwayml_status_check"
GOAL = 10.0


def run(ctx: Context) -> Section:
    sizes = (3, 10) if ctx.quick else (10, 100, 1000)
    rounds = 1 if ctx.quick else 3
    ctx.wipe()
    store = store_for(PROJECT)
    job_ids = clone_finished(store, finished_job(store), max(sizes))
    store.client.close()
    issuer = ctx.issuer()
    ops = {"Authorization": f"Bearer {issuer.service_token(OPS_SA, f'{FUNCTIONS_BASE}/{BATCH}')}"}
    user = {"Authorization": f"Bearer {issuer.user_token(OWNER, PROJECT)}"}
    rows, hot = in_process(ctx, sizes, job_ids, ops, user, rounds)
    served, peak_mib = over_http(ctx, sizes, job_ids, ops, user, rounds)
    for row in rows:
        row.update(served[row["jobs"]])
        row["speedup"] = ratio(row["single_s"], row["batch_s"])
    return _section(rows, rounds, hot, peak_mib)


def in_process(ctx: Context, sizes, job_ids, ops, user, rounds):
    """Counts (RPCs, documents), in-process times and a profile, through functions-framework's app."""
    settings = load_settings(ctx.function_env(FUNCTIONS_BASE))
    built = deps.build(settings, queue=InMemoryQueue())
    deps.use(built)
    counter = FirestoreCounter().attach(built.store.client)
    batch_client = functions_framework.create_app(target=BATCH, source=str(ROOT / "main.py")).test_client()
    single_client = functions_framework.create_app(target=SINGLE, source=str(ROOT / "main.py")).test_client()
    rows: list[dict[str, Any]] = []
    hot: list[tuple[str, float, float]] = []
    try:
        for size in sizes:
            ids = job_ids[:size]

            def one_batch(ids=ids) -> dict[str, Any]:
                answer = batch_client.post("/", json={"jobIds": ids}, headers=ops)
                if answer.status_code != 200 or answer.get_json()["summary"]["found"] != len(ids):
                    raise RuntimeError(f"batch check failed: {answer.status_code} {answer.get_data()[:200]}")
                return answer.get_json()

            def singles(ids=ids) -> None:
                for job_id in ids:
                    answer = single_client.get(f"/?jobId={job_id}", headers=user)
                    if answer.status_code != 200:
                        raise RuntimeError(f"status check failed: {answer.status_code}")

            one_batch()  # warm
            cost = {"batch": _counted(counter, one_batch), "single": _counted(counter, singles)}
            times = interleave({"batch": _timer(one_batch), "single": _timer(singles)}, rounds)
            reported = one_batch()
            if size == max(sizes):
                hot = profile(one_batch)
            rows.append(
                {
                    "jobs": size,
                    "batch_inproc_s": median(times["batch"]),
                    "single_inproc_s": median(times["single"]),
                    "batch_rpcs": cost["batch"]["rpcs"],
                    "single_rpcs": cost["single"]["rpcs"],
                    "batch_reads": cost["batch"]["reads"],
                    "single_reads": cost["single"]["reads"],
                    "reported_reads": reported["firestoreReads"],
                    "provider_calls": reported["providerCalls"],
                }
            )
    finally:
        deps.use(None)
        built.store.client.close()
    return rows, hot


def over_http(ctx: Context, sizes, job_ids, ops, user, rounds) -> tuple[dict[int, dict[str, float]], float]:
    """Times as deployed: each function under functions-framework, called over keep-alive HTTP; and
    the batch function's peak resident memory over all its calls (MiB)."""
    env = ctx.function_env(FUNCTIONS_BASE)
    procs = []
    try:
        batch_proc, batch_url = serve(BATCH, ROOT / "main.py", env, ctx.work_dir)
        procs.append(batch_proc)
        single_proc, single_url = serve(SINGLE, ROOT / "main.py", env, ctx.work_dir)
        procs.append(single_proc)
        batch_conn, single_conn = KeepAlive(batch_url), KeepAlive(single_url)
        out = {}
        for size in sizes:
            ids = job_ids[:size]
            body = json.dumps({"jobIds": ids}).encode()

            def one_batch(body=body) -> None:
                batch_conn.fresh()
                batch_conn.expect_ok("POST", "/", {**ops, "Content-Type": "application/json"}, body)

            def singles(ids=ids) -> None:
                single_conn.fresh()
                for job_id in ids:
                    single_conn.expect_ok("GET", f"/?jobId={job_id}", user)

            one_batch()
            singles(ids[:20])  # warm
            times = interleave({"batch": _timer(one_batch), "single": _timer(singles)}, rounds)
            out[size] = {"batch_s": median(times["batch"]), "single_s": median(times["single"])}
        batch_conn.close()
        single_conn.close()
        return out, tree_peak_rss_mib(batch_proc.pid)
    finally:
        for proc in procs:
            proc.stop()


class KeepAlive:
    """A persistent HTTP connection; every answer must be 200. gunicorn closes idle connections after
    2 s, so each timed call starts with `fresh()` (the connect is part of its time) and a request that
    finds the connection closed is sent again once on a new one (both calls only read)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=120)

    def fresh(self) -> None:
        self.conn.close()
        self.conn = self._connect()

    def expect_ok(self, method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> bytes:
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                answer = self.conn.getresponse()
                data = answer.read()
                break
            except (ConnectionError, http.client.RemoteDisconnected):
                self.fresh()
                if attempt == 2:
                    raise
        if answer.status != 200:
            raise RuntimeError(f"{method} {path[:60]} answered {answer.status}: {data[:200]!r}")
        return data

    def close(self) -> None:
        self.conn.close()


def profile(fn, count: int = 8) -> list[tuple[str, float, float]]:
    """cProfile of one call: the project's functions by cumulative time (ms), with their own time."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(fn)
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    ours, everything = [], []
    for (path, line, name), (_, _, own, cumulative, _) in stats.items():
        where = re.split(r"site-packages/|lib/python3\.\d+/", path)[-1].removeprefix(str(ROOT) + "/")
        row = (f"{name} ({where}:{line})", cumulative * 1000, own * 1000)
        everything.append(row)
        if path.startswith(str(ROOT)) and "/.venv/" not in path and "/benchmarks/" not in path:
            ours.append(row)
    by_cumulative = sorted(ours, key=lambda r: -r[1])[:count]
    by_own = sorted(everything, key=lambda r: -r[2])[:count]
    return [*by_cumulative, ("**by own time, any code:**", math.nan, math.nan), *by_own]


def _timer(fn):
    def call() -> list[float]:
        began = time.perf_counter()
        fn()
        return [time.perf_counter() - began]

    return call


def _counted(counter: FirestoreCounter, fn) -> dict[str, Any]:
    before = counter.snapshot()
    fn()
    return FirestoreCounter.delta(before, counter.snapshot())


def _section(
    rows: list[dict[str, Any]], rounds: int, hot: list[tuple[str, float, float]], peak_mib: float
) -> Section:
    largest = rows[-1]
    memory_mib = function_sizes()[BATCH][0] * 1024
    headline = (
        f"{largest['jobs']:,} jobs: one batch call {largest['batch_s'] * 1000:.0f} ms vs "
        f"{largest['single_s']:.2f} s for single checks = {largest['speedup']:.0f}× faster; "
        f"{largest['batch_rpcs']} Firestore round trips vs {largest['single_rpcs']:,}; "
        f"peak RSS {peak_mib:.0f} MiB = {peak_mib / memory_mib:.0%} of its {memory_mib:.0f} MiB"
    )
    table_rows = [
        (
            r["jobs"],
            r["batch_s"] * 1000,
            r["single_s"] * 1000,
            r["speedup"],
            r["batch_inproc_s"] * 1000,
            r["single_inproc_s"] * 1000,
            ratio(r["single_inproc_s"], r["batch_inproc_s"]),
            r["batch_rpcs"],
            r["single_rpcs"],
            r["batch_reads"],
            r["reported_reads"],
            r["provider_calls"],
        )
        for r in rows
    ]
    header = (
        "jobs",
        "batch ms (HTTP)",
        "N singles ms (HTTP)",
        "speed-up (HTTP)",
        "batch ms (in-process)",
        "N singles ms (in-process)",
        "speed-up (in-process)",
        "batch RPCs",
        "singles RPCs",
        "batch docs read",
        "batch reports firestoreReads",
        "provider calls",
    )
    memory = (
        f"Memory: the served batch function's peak resident memory over all its calls (VmHWM of "
        f"functions-framework's processes) was {peak_mib:.0f} MiB, {peak_mib / memory_mib:.0%} of the "
        f"{memory_mib:.0f} MiB deploy.sh gives it (goal ≤ {MEMORY_SHARE_GOAL:.0%})."
    )
    parts = [METHOD.format(rounds=rounds), table(header, table_rows), f"Headline: {headline}.", memory]
    if hot:
        parts += [
            f"Where one batch call of {largest['jobs']:,} jobs spends its time (cProfile, which slows Python "
            "code down, so read the shares, not the totals):",
            table(("project function", "cumulative ms", "own ms"), hot),
            "cProfile follows only the calling thread. `JobStore.get_jobs` reads "
            f"{GET_ALL_CHUNK} documents a `batch_get_documents` request, the requests of a larger read "
            "side by side on worker threads, and decodes each document straight from its protobuf (no "
            "`DocumentSnapshot`, no `copy.deepcopy`): what the workers do, and the emulator, shows here "
            "as the calling thread's lock waits (`acquire`).",
        ]
    body = "\n\n".join(parts)
    return Section(
        key="batch",
        title="Batch scaling",
        goal=f"at 1,000 jobs, ≥ {GOAL:.0f}× faster than N single status checks; peak RSS ≤ "
        f"{MEMORY_SHARE_GOAL:.0%} of its memory",
        verdict=judge(largest["speedup"], GOAL, at_least=True)
        if peak_mib <= MEMORY_SHARE_GOAL * memory_mib
        else NOT_MET,
        headline=headline,
        body=body,
        data={"rows": rows, "profile": hot, "peak_rss_mib": peak_mib, "memory_mib": memory_mib},
    )


METHOD = """\
All jobs are finished (no provider calls on either side). One `runwayml_batch_status_check` POST with
`jobIds` (ops service-account token) against the same jobs asked one by one through
`runwayml_status_check` (the owner's ID token, one GET after another). *HTTP*: each function served
as deployed (`functions-framework`, gunicorn) and called over one keep-alive connection; the goal
is judged on these. *In-process*: the same calls through functions-framework's app in this process,
without the HTTP hop, where a client-level counter (benchmarks/counting.py) counts Firestore RPCs and
documents read. Medians of {rounds} alternating (ABAB) rounds; the batch function's own
`firestoreReads` is shown beside the counted documents."""
