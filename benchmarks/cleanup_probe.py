"""One cleanup of expired records in a fresh process: the time, the work and the peak memory.

    python -m benchmarks.cleanup_probe sweep|naive

`sweep` runs the scheduled cleanup's own code (`tasks.cleanup.cleanup_for(deps).run()`, every step);
`naive` deletes the same expired jobs one document at a time: stream the query, then for each job
delete the job, its user view and each of its task records with its own request. The environment is the
benchmark's (Firestore emulator, settings). Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta

from benchmarks.cold_probe import peak_rss_mib
from benchmarks.counting import FirestoreCounter


def sweep() -> dict:
    from web import deps
    from web.deps import cleanup_for

    built = deps.get()
    counter = FirestoreCounter().attach(built.store.client)
    baseline = peak_rss_mib()
    began = time.perf_counter()
    report = cleanup_for(built).run()
    seconds = time.perf_counter() - began
    retention = report.get("retention", {})
    deleted = retention.get("jobs", 0) + retention.get("taskRecords", 0)
    return _result(seconds, deleted, counter, baseline, complete=report.get("complete"))


def naive() -> dict:
    from google.cloud.firestore_v1.base_query import FieldFilter

    from jobs.store import utcnow
    from providers.base import TERMINAL_STATUSES
    from web import deps

    built = deps.get()
    store = built.store
    counter = FirestoreCounter().attach(store.client)
    baseline = peak_rss_mib()
    began = time.perf_counter()
    cutoff = utcnow() - timedelta(days=built.settings.retention_days)
    jobs = store.client.collection(built.settings.jobs_collection)
    query = jobs.where(filter=FieldFilter("status", "in", sorted(str(s) for s in TERMINAL_STATUSES)))
    query = query.where(filter=FieldFilter("endedAt", "<", cutoff))
    deleted = 0
    for snap in query.stream():
        for attempt in snap.get("attempts") or ():
            if attempt.get("taskId"):
                store.client.collection(store.task_collection(attempt["provider"])).document(
                    attempt["taskId"]
                ).delete()
                deleted += 1
        store.user_view_ref(snap.id).delete()  # the owner's view goes with its job, as in the sweep
        snap.reference.delete()
        deleted += 1  # records: jobs and task records (the view is not one)
    return _result(time.perf_counter() - began, deleted, counter, baseline, complete=True)


def _result(seconds: float, deleted: int, counter: FirestoreCounter, baseline: float, **extra) -> dict:
    work = counter.snapshot()
    return {
        "seconds": seconds,
        "deleted": deleted,
        "rpcs": work["rpcs"],
        "deletes": work["deletes"],
        "reads": work["reads"],
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_mib": baseline,
        **extra,
    }


if __name__ == "__main__":
    variant = sys.argv[1]
    outcome = {"sweep": sweep, "naive": naive}[variant]()
    print(json.dumps({"variant": variant, **outcome}), flush=True)
