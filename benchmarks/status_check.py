"""Status-check overhead: `runwayml_status_check` on a finished job against a bare document read.

Both functions are served as deployed (`functions-framework`: gunicorn, one worker) on loopback, on
the same Firestore emulator, and hit over HTTP keep-alive connections in alternating rounds (ABAB):

    candidate  main.py runwayml_status_check?jobId=...  with the owner's Firebase ID token (verified
               with google-auth; the certificate fetch is cached), ownership, the job's read
    baseline   benchmarks/baseline_fn.py read_job?jobId=...  one read of the job document, no checks
"""

from __future__ import annotations

import time
from collections.abc import Callable

from benchmarks.common import ROOT, Section, interleave, judge, mean, median, percentile, ratio, table
from benchmarks.counting import FirestoreCounter
from benchmarks.env import PROJECT, Context
from benchmarks.fixtures import OWNER, finished_job, store_for
from benchmarks.served import hammer, serve

GOAL = 0.9
BATCH = 10  # calls per timed batch in the step breakdown
CANDIDATE, BASELINE = "runwayml_status_check", "read_job (baseline)"
VERIFY = "verify ID token"  # after its first sight: remembered while the certificates hold


def run(ctx: Context) -> Section:
    ctx.wipe()
    job_id = finished_job(store_for(PROJECT))
    token = ctx.issuer().user_token(OWNER, PROJECT)
    rounds, per_round = (2, 10) if ctx.quick else (10, 150)
    procs = []
    try:
        candidate, url_a = serve(CANDIDATE, ROOT / "main.py", ctx.function_env("http://x"), ctx.work_dir)
        procs.append(candidate)
        baseline, url_b = serve(
            "read_job", ROOT / "benchmarks" / "baseline_fn.py", ctx.function_env("http://x"), ctx.work_dir
        )
        procs.append(baseline)
        targets = {
            CANDIDATE: (f"{url_a}/?jobId={job_id}", {"Authorization": f"Bearer {token}"}),
            BASELINE: (f"{url_b}/?jobId={job_id}", {}),
        }
        for url, headers in targets.values():  # warm: imports, clients, certificate cache
            _, _, errors = hammer(url, headers, 20)
            if errors:
                raise RuntimeError(f"{url} answered {errors} of 20 warm-up requests with an error")
        results = {}
        for concurrency in (1, 4):
            results[concurrency] = _measure(targets, rounds, per_round, concurrency)
    finally:
        for proc in procs:
            proc.stop()
    parts = breakdown(ctx, job_id, token, 20 if ctx.quick else 300)
    return _section(results, rounds, per_round, parts)


def breakdown(ctx: Context, job_id: str, token: str, count: int) -> dict[str, float]:
    """Milliseconds of each step of a status check, measured in this process in interleaved batches
    (the median batch mean), and the number
    of Firestore round trips `jobs.access.status` makes for the finished job (key `rpcs`)."""
    import json

    from config import load_settings
    from jobs import access as views
    from jobs.records import job_to_doc
    from jobs.views import user_view
    from web.auth import Verifier
    from web.http import respond
    from web.query import StatusQuery

    settings = load_settings(ctx.function_env("http://x"))
    store = store_for(PROJECT)
    counter = FirestoreCounter().attach(store.client)
    verifier = Verifier(
        firebase_project=settings.firebase_project,
        firebase_certs_url=settings.firebase_certs_url,
        google_certs_url=settings.google_certs_url,
    )
    caller = verifier.user(token)
    job = store.get_job(job_id)
    assert job is not None

    def status() -> object:
        query = StatusQuery(job_id=job_id)
        viewer = caller.viewer(())
        return views.status(store, viewer, query.job_id, query.task(), refresh=_no_refresh, now=store.clock())

    steps = {
        VERIFY: lambda: verifier.user(token),
        "jobs.access.status (its Firestore reads included)": status,
        "read job document (the baseline's read)": lambda: store.get_job(job_id),
        "job view + JSON": lambda: respond({"job": user_view(job)}).get_data(),
        "baseline JSON of the document": lambda: json.dumps({"job": job_to_doc(job)}, default=str),
    }
    for step in steps.values():
        step()

    def timed_batch(step) -> Callable[[], list[float]]:
        def call() -> list[float]:
            began = time.perf_counter()
            for _ in range(BATCH):
                step()
            return [(time.perf_counter() - began) / BATCH * 1000]

        return call

    pooled = interleave({name: timed_batch(step) for name, step in steps.items()}, max(1, count // BATCH))
    timings = {name: median(samples) for name, samples in pooled.items()}
    before = counter.snapshot()
    status()
    timings["rpcs"] = FirestoreCounter.delta(before, counter.snapshot())["rpcs"]
    store.client.close()
    return timings


def _no_refresh(provider: str, task_id: str) -> None:
    raise AssertionError("a finished job is never refreshed")


def _measure(targets, rounds: int, per_round: int, concurrency: int) -> dict[str, dict[str, float]]:
    walls: dict[str, list[float]] = {name: [] for name in targets}
    errors: dict[str, int] = dict.fromkeys(targets, 0)

    def variant(name: str):
        def call() -> list[float]:
            url, headers = targets[name]
            latencies, wall, bad = hammer(url, headers, per_round, concurrency)
            walls[name].append(wall)
            errors[name] += bad
            return latencies

        return call

    pooled = interleave({name: variant(name) for name in targets}, rounds)
    return {
        name: {
            "rps": len(lat) / sum(walls[name]),
            "p50_ms": percentile(lat, 50) * 1000,
            "p99_ms": percentile(lat, 99) * 1000,
            "mean_ms": mean(lat) * 1000,
            "requests": len(lat),
            "errors": errors[name],
        }
        for name, lat in pooled.items()
    }


def _section(results, rounds: int, per_round: int, parts: dict[str, float]) -> Section:
    rows = []
    for concurrency, by_name in results.items():
        for name, r in by_name.items():
            rows.append((concurrency, name, r["rps"], r["p50_ms"], r["p99_ms"], r["requests"], r["errors"]))
    ratios = {c: ratio(r[CANDIDATE]["rps"], r[BASELINE]["rps"]) for c, r in results.items()}
    headline = ", ".join(f"{ratios[c]:.2f}× the baseline's requests/s at concurrency {c}" for c in ratios)
    body = "\n\n".join(
        [
            METHOD,
            f"{rounds} rounds × {per_round} requests per variant and concurrency, alternating (ABAB).",
            table(("concurrency", "function", "requests/s", "p50 ms", "p99 ms", "requests", "errors"), rows),
            f"Ratio (status check ÷ baseline, requests/s): {headline}. Goal ≥ {GOAL}.",
            "Steps of one status check, timed in-process (ms: median over interleaved batches of 10 calls):",
            table(("step", "ms"), [(k, v) for k, v in parts.items() if k != "rpcs"]),
            WHY.format(rpcs=int(parts["rpcs"]), verify=parts[VERIFY], view=parts["job view + JSON"]),
        ]
    )
    return Section(
        key="status_check",
        title="Status-check overhead",
        goal=f"≥ {GOAL}× the requests/s of a function doing only the same document read",
        verdict=judge(min(ratios.values()), GOAL, at_least=True),
        headline=headline,
        body=body,
        data={"results": results, "ratios": ratios, "steps_ms": parts},
    )


METHOD = """\
Both functions run under `functions-framework` (gunicorn, one worker, threads = 4 × cores, as the
Python runtime serves them) on 127.0.0.1, read the same finished job from the same Firestore
emulator, and are called over keep-alive HTTP connections. The status check verifies the caller's
Firebase ID token (RS256, google-auth; certificates cached per max-age; a token already verified
under the same certificates is checked against its lifetime only), checks ownership, applies the
per-user limit, and answers the public job view with a log line; the baseline reads the job
document and returns it, checking nothing."""

WHY = """\
What the status check does beyond the baseline: `jobs.access.status` makes {rpcs} Firestore round
trip(s) for a finished job: the baseline's `BatchGetDocuments` call, its answer decoded straight
from the protobuf (`JobStore.get_job`: no `DocumentSnapshot`, none of its two deep copies) and,
as `DocumentReference.get` does, only its first response read. Checking the ID token (verified at
its first sight, then remembered while the certificates hold) costs {verify:.2f} ms and the job
view with its JSON {view:.2f} ms. The rest is per-request work the baseline skips, not timed one by
one here: the entry point's settings and dependency lookups (the configuration check is worked out
once per settings object), query parsing (msgspec), the per-user limit, the mapping of the
document to a job record, and the structured log line written for every answer (without a lookup
of the calling source line, and without a credential scan of a line that holds no credential's
marker)."""
