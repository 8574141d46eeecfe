"""Cost per job: what one completed video costs in Firestore, Cloud Tasks and Cloud Functions.

Jobs run end to end on the in-process stack of the function tests (tests/stack.py: the Firestore
emulator, both provider simulators on one manual clock, functions-framework's app per function, an
in-memory queue). Each job is driven alone, poll by poll: the clock jumps to the poll's due time,
then the poll is delivered as Cloud Tasks would deliver it. The store's and the poller's clocks
follow the simulators' clock, so the polling schedule sees the same elapsed times as in production.

Counted per job: Firestore RPCs, documents read / written / deleted (client-level counter,
benchmarks/counting.py), Cloud Tasks created (the queue), provider requests (the simulators' request
logs), function invocations and their handler time. Cost = counts × the list prices in
benchmarks/prices.py; compute is billed per invocation, rounded up to 100 ms, at the function's
memory and vCPU from deploy.sh.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.common import REPORTED, Section, mean, table
from benchmarks.counting import FirestoreCounter
from benchmarks.env import Context
from benchmarks.prices import BILLING_QUANTUM_S, PRICES, PRICES_READ, function_sizes, previous_sizes
from web import deps

TEST_PROJECT = "cvplus-test"  # the project tests/stack.py configures
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
TERMINAL = ("completed", "failed", "cancelled", "timed_out")
BIG_QUOTA = "100000/60"
MAX_STEPS = 400


def run(ctx: Context) -> Section:
    from tests.stack import TASKS_SA, make_stack

    per_provider = 1 if ctx.quick else 10
    ctx.firestore().wipe(TEST_PROJECT)
    stack = make_stack(None, ctx.issuer(), RUNWAYML_QUOTA=BIG_QUOTA, HEYGEN_QUOTA=BIG_QUOTA)
    virtual = lambda: EPOCH + timedelta(seconds=stack.clock.now())  # noqa: E731 - a clock, named below
    stack.deps.store.clock = virtual
    stack.deps.poller.clock = virtual
    counter = FirestoreCounter().attach(stack.deps.store.client)
    jobs: list[dict[str, Any]] = []
    try:
        if not ctx.quick:  # the first job of each provider pays for imports and connections
            for provider in ("runwayml", "heygen"):
                _one_job(stack, counter, provider, TASKS_SA)
        for provider in ("runwayml", "heygen"):
            for _ in range(per_provider):
                jobs.append(_one_job(stack, counter, provider, TASKS_SA))
    finally:
        deps.use(None)
        stack.runway.stop()
        stack.heygen.stop()
    return _section(jobs)


def _one_job(stack, counter: FirestoreCounter, provider: str, tasks_sa: str) -> dict[str, Any]:
    before = counter.snapshot()
    requests_before = len(stack.runway.requests), len(stack.heygen.requests)
    invocations: Counter[str] = Counter()
    handler_s: Counter[str] = Counter()
    billed_s: Counter[str] = Counter()

    def invoke(function: str, call) -> Any:
        began = time.perf_counter()
        answer = call()
        spent = time.perf_counter() - began
        invocations[function] += 1
        handler_s[function] += spent
        billed_s[function] += math.ceil(spent / BILLING_QUANTUM_S) * BILLING_QUANTUM_S
        return answer

    answer = invoke("generate_video", lambda: stack.generate(provider=provider))
    if answer.status_code != 202:
        raise RuntimeError(f"generate_video answered {answer.status_code}: {answer.get_data()[:300]}")
    job_id = answer.get_json()["jobId"]
    due: list[tuple[float, int, Any]] = []
    created = 0
    for step in range(MAX_STEPS):
        for task in stack.queue.take():
            created += 1
            heapq.heappush(due, (stack.clock.now() + task.delay_s, step * 1000 + created, task))
        job = stack.deps.store.get_job(job_id)  # not counted: the benchmark's own look, below
        if job.status.value in TERMINAL or not due:
            break
        at, _, task = heapq.heappop(due)
        stack.clock.t = max(stack.clock.t, at)
        headers = stack.service(tasks_sa, task.function)
        invoke(
            task.function,
            lambda t=task, h=headers: stack.client(t.function).post("/", json=t.payload, headers=h),
        )
    after = counter.snapshot()
    cost = FirestoreCounter.delta(before, after)
    job = stack.deps.store.get_job(job_id)
    own_reads = step + 2  # the loop's get_job calls, which production does not make
    runway_calls = len(stack.runway.requests) - requests_before[0]
    heygen_calls = len(stack.heygen.requests) - requests_before[1]
    return {
        "provider": provider,
        "status": job.status.value,
        "reads": cost["reads"] - own_reads,
        "writes": cost["writes"],
        "deletes": cost["deletes"],
        "rpcs": cost["rpcs"] - own_reads,
        "job_doc_writes": cost["writes_by_collection"].get(stack.settings.jobs_collection, 0),
        "tasks_created": created,
        "provider_calls": runway_calls + heygen_calls,
        "invocations": dict(invocations),
        "handler_s": dict(handler_s),
        "billed_s": dict(billed_s),
        "provider_usd": job.actual_cost_usd or job.estimated_cost_usd or 0.0,
        "provider_credits": job.actual_credits,
        "simulated_s": stack.clock.now(),
    }


def price_job(job: dict[str, Any], sizes: dict[str, tuple[float, float]] | None = None) -> dict[str, float]:
    """USD of one job by line item (cloud only; the provider's own charge is kept apart), the functions
    sized as deploy.sh deploys them unless `sizes` says otherwise."""
    sizes = function_sizes() if sizes is None else sizes
    gib_s = sum(sizes.get(f, (0.25, 0.167))[0] * s for f, s in job["billed_s"].items())
    vcpu_s = sum(sizes.get(f, (0.25, 0.167))[1] * s for f, s in job["billed_s"].items())
    deliveries = job["tasks_created"]  # each created task is delivered once when nothing fails
    return {
        "Firestore reads": job["reads"] * PRICES["firestore_read"].usd,
        "Firestore writes": job["writes"] * PRICES["firestore_write"].usd,
        "Firestore deletes": job["deletes"] * PRICES["firestore_delete"].usd,
        "Cloud Tasks operations": (job["tasks_created"] + deliveries) * PRICES["tasks_operation"].usd,
        "function invocations": sum(job["invocations"].values()) * PRICES["function_invocation"].usd,
        "function memory (GiB-s)": gib_s * PRICES["gib_second"].usd,
        "function CPU (vCPU-s)": vcpu_s * PRICES["vcpu_second"].usd,
    }


def _section(jobs: list[dict[str, Any]]) -> Section:
    by_provider: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        by_provider.setdefault(job["provider"], []).append(job)
    count_rows, cost_rows, per_thousand = [], [], {}
    for provider, group in by_provider.items():
        completed = [j for j in group if j["status"] == "completed"]
        avg = lambda key, g=group: mean([float(j[key]) for j in g])  # noqa: E731
        invocations = mean([float(sum(j["invocations"].values())) for j in group])
        handler_ms = mean([sum(j["handler_s"].values()) * 1000 for j in group])
        count_rows.append(
            (
                provider,
                f"{len(completed)}/{len(group)}",
                avg("reads"),
                avg("writes"),
                avg("deletes"),
                avg("rpcs"),
                avg("tasks_created"),
                avg("provider_calls"),
                invocations,
                handler_ms,
            )
        )
        items, before = Counter(), Counter()
        for job in group:
            items.update(price_job(job))
            before.update(price_job(job, previous_sizes()))
        lines = {name: usd / len(group) * 1000 for name, usd in items.items()}
        per_thousand[provider] = {
            "cloud": sum(lines.values()),
            "cloud_previous_shape": sum(before.values()) / len(group) * 1000,
            "provider": mean([j["provider_usd"] for j in group]) * 1000,
            "lines": lines,
        }
    for name in next(iter(per_thousand.values()))["lines"]:
        cost_rows.append((name, *(f"${p['lines'][name]:.4f}" for p in per_thousand.values())))
    cost_rows.append(("**cloud total**", *(f"**${p['cloud']:.3f}**" for p in per_thousand.values())))
    cost_rows.append(
        (
            "cloud total, user-facing functions in their previous shape",
            *(f"${p['cloud_previous_shape']:.3f}" for p in per_thousand.values()),
        )
    )
    cost_rows.append(
        ("provider charge (simulators)", *(f"${p['provider']:,.0f}" for p in per_thousand.values()))
    )
    providers = list(per_thousand)
    headline = "; ".join(
        f"{p}: ${per_thousand[p]['cloud']:.3f} of Google Cloud per 1,000 videos "
        f"(provider ${per_thousand[p]['provider']:,.0f})"
        for p in providers
    )
    price_rows = [(name, p.label, p.per, p.source) for name, p in PRICES.items()]
    body = "\n\n".join(
        [
            METHOD.format(jobs=len(jobs) // max(1, len(by_provider))),
            table(
                (
                    "provider",
                    "completed",
                    "reads",
                    "writes",
                    "deletes",
                    "Firestore RPCs",
                    "tasks created",
                    "provider calls",
                    "invocations",
                    "handler ms",
                ),
                count_rows,
            ),
            "Cost per 1,000 completed videos (USD, list prices, no free tier):",
            table(("line item", *providers), cost_rows),
            f"List prices (read {PRICES_READ}; benchmarks/prices.py):",
            table(("item", "USD", "per", "source"), price_rows),
            NOTES,
        ]
    )
    return Section(
        key="cost",
        title="Cost per job",
        goal="report the cloud cost per 1,000 videos (no target)",
        verdict=REPORTED,
        headline=headline,
        body=body,
        data={"jobs": jobs, "per_thousand": per_thousand},
    )


METHOD = """\
{jobs} jobs per provider (after one warm-up job each), each run alone from `generate_video` to a
terminal state on the in-process stack of the function tests (tests/stack.py) with the simulators'
default render times; the store and the poller use the simulators' virtual clock, so each poll is
sent when the real schedule would send it. Firestore work is counted at the client (a wrapper around
the client's RPC layer, benchmarks/counting.py: documents returned by gets and queries, documents in
commits), Cloud Tasks by the queue, provider requests by the simulators' logs. The benchmark's own
look at the job after each step is subtracted. Averages per job:"""

NOTES = """\
The provider charge is the job's `actualCostUsd` where the provider reports one (RunwayML's
`cost.credits` at $0.01 a credit), else its `estimatedCostUsd` (HeyGen: seconds of video × the
configured price per second); it is what the provider bills, kept apart from the cloud cost.
Not counted: the app's own listener on its job document (Firestore bills one read per change it
receives: about one per job-document write above), HeyGen webhook deliveries (each one is an
invocation of `heygen_webhook` plus a fetch-and-apply like a poll; with webhooks the polls mostly
find the job already finished), the scheduled cleanup and storage of finished videos. Handler time
is measured on this machine against the emulator and the loopback simulators; production round trips
(Firestore ~5–20 ms, providers 100 ms and more) are slower, but most invocations stay within the
first 100 ms billing step either way, so the compute lines move little.
The functions are sized as deploy.sh deploys them (memory, and vCPU: its own column); the row "previous
shape" prices the same billed seconds with `generate_video` at 512 MiB / .333 vCPU and
`runwayml_status_check`, `cancel_video` at 256 MiB / .167 vCPU. Billed time is measured on a full
core in both: at a smaller share a request that computes takes longer, so that row is a lower bound
for the previous shape (the cold-start section measures the difference on the first request)."""
