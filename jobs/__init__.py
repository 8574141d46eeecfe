"""The job life cycle: records, rules, persistence, and the services built on them.

    records.py   typed, immutable Job / Attempt / TaskRecord / JobRequest / FinalizeState and their
                 one mapping to and from Firestore documents (nothing else reads a document by key)
    rules.py     the pure transition rules: forward-only statuses, stale readings, fallback, the
                 finalize lease; unit-tested without the emulator
    lease.py     the finalize step's lease (pure): claim, release, complete
    store.py     JobStore: every change in one conditional batch (records in, records out)
    queries.py   batched reads, one-off queries and cursor-paged sweeps (a JobStore mixin)
    purge.py     the retention purge through BatchWrite requests (a JobStore mixin)
    txn.py       read-decide-write changes that survive contention; the one UTC clock
    guards.py    the project's request budget and provider health, shared by every instance
    events.py    seen webhook event ids
    runner.py    one provider create per attempt, fallback down the ranking (the queue is handed in)
    generate.py  admission of a new video request: prompt, ranking, budget, job, first attempt
    access.py    whose job a caller may see and cancel, and the status refresh
    views.py     what the owner sees of a job (user view) and what operators see (ops view)
    view_models.py  the two views' shapes as pydantic models (openapi.yaml, the tests)
    progress.py  progress that moves and an estimated finish time (pure)

Nothing outside `jobs/` reads or writes Firestore documents; `jobs/` never imports `tasks/` or `web/`.
"""
