"""The retention purge: terminal jobs past retention, with their user views and task records, through
a BulkWriter.

A mixin of `JobStore`. Page by page, the stored objects of a page go first (`before_delete`), then
the page's deletes go to one BulkWriter per query. Queries (single-field indexes)::

    purge_jobs       endedAt <, order by endedAt; then status in terminal, updatedAt < (jobs that
                     ended before `endedAt` was written); a projection (`records.PURGE_FIELDS`)
    purge_expired    expireAt < (any supporting collection), order by expireAt
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.bulk_writer import BulkWriterOptions

from jobs.queries import Documents
from jobs.records import PURGE_FIELDS, ExpiredJob, attempt_tasks, expired_from_doc
from providers.base import TERMINAL_STATUSES

PURGE_PAGE = 500
PURGE_STREAM = 10_000
BULK_OPS_PER_SECOND = 10_000
BULK_BATCH = 500
BULK_MAX_ATTEMPTS = 5


class BulkDeleter:
    """Deletes through one BulkWriter, faster than its defaults, counting writes that finally failed.

    Use one per pass and `close()` it: after a `flush()` the client's BulkWriter sends nothing more
    until 20 operations are queued, and its `close()` then returns without sending them.

    The BulkWriter sends its batches in parallel. Two defaults are raised: batches of BULK_BATCH
    deletes instead of 20 (BatchWrite takes up to 500; fewer requests halve the time against the
    emulator), and the 500 ops/s ceiling (Google's ramp-up advice for writes into new key ranges):
    a sweep every 15 minutes normally deletes one 15-minute slice of old jobs, so the ceiling only
    shapes the first sweep over a backlog, and deletes of random job ids do not hotspot.
    """

    def __init__(self, client: firestore.Client, ops_per_second: int = BULK_OPS_PER_SECOND) -> None:
        options = BulkWriterOptions(initial_ops_per_second=ops_per_second, max_ops_per_second=ops_per_second)
        self.writer = client.bulk_writer(options)
        self.writer.batch_size = BULK_BATCH
        self.failed = 0
        self.writer.on_write_error(self._on_error)

    def _on_error(self, failure: Any, writer: Any) -> bool:
        if failure.attempts < BULK_MAX_ATTEMPTS:
            return True
        self.failed += 1
        return False

    def delete(self, ref: firestore.DocumentReference) -> None:
        self.writer.delete(ref)

    def close(self) -> None:
        self.writer.close()


class Purge(Documents):
    def purge_jobs(
        self,
        ended_before: datetime,
        *,
        dry_run: bool = False,
        before_delete: Callable[[list[ExpiredJob]], None] | None = None,
        stop: Callable[[], bool] = lambda: False,
        page_size: int = PURGE_PAGE,
    ) -> tuple[int, int]:
        """Delete terminal jobs that ended before `ended_before` with their task records.

        Page by page: `before_delete(page)` runs first (the stored objects go before the records that
        name them), then the page's deletes go to a BulkWriter. Returns (jobs, task records).
        """
        jobs = tasks = 0
        for query, only_unended in self._expired_queries(ended_before):
            # one writer per query: it is closed (all sent) before the next query looks
            deleter = None if dry_run else BulkDeleter(self.client)
            for page in streamed(query, page_size):
                picked = [expired_from_doc(s.id, s.to_dict() or {}, only_unended) for s in page]
                picked = self._with_all_tasks([e for e in picked if e is not None])
                if picked and before_delete is not None:
                    before_delete(picked)
                for expired in picked:
                    jobs, tasks = jobs + 1, tasks + len(expired.tasks)
                    if deleter is not None:
                        deleter.delete(self.job_ref(expired.job_id))
                        deleter.delete(self.user_view_ref(expired.job_id))
                        for provider, task_id in expired.tasks:
                            deleter.delete(self.task_ref(provider, task_id))
                if stop():
                    break
            if deleter is not None:
                deleter.close()
            if stop():
                break
        return jobs, tasks

    def _with_all_tasks(self, picked: list[ExpiredJob]) -> list[ExpiredJob]:
        """Fill in the task records of jobs that made more than one attempt (read their attempts)."""
        ids = [e.job_id for e in picked if e.tasks is None]
        if not ids:
            return picked
        refs = [self.job_ref(job_id) for job_id in ids]
        found = {s.id: attempt_tasks(s.to_dict() or {}) for s in self.client.get_all(refs, ["attempts"])}
        return [e if e.tasks is not None else replace(e, tasks=found.get(e.job_id, ())) for e in picked]

    def _expired_queries(self, before: datetime) -> tuple[tuple[firestore.Query, bool], ...]:
        """Terminal jobs with `endedAt` < before, then terminal jobs without `endedAt` by `updatedAt`.

        The first query is one range on a single-field index (the status is checked here): the
        emulator answers it three times faster than `status in` plus the range, and production
        needs no composite index for it. Only terminal writes set `endedAt`.
        """
        jobs = self._jobs()
        fields = list(PURGE_FIELDS)
        by_end = jobs.where(filter=FieldFilter("endedAt", "<", before)).order_by("endedAt")
        terminal = sorted(str(s) for s in TERMINAL_STATUSES)
        by_update = jobs.where(filter=FieldFilter("status", "in", terminal))
        by_update = by_update.where(filter=FieldFilter("updatedAt", "<", before)).order_by("updatedAt")
        return (by_end.select(fields), False), (by_update.select([*fields, "updatedAt"]), True)

    def purge_expired(
        self,
        collection: str,
        now: datetime,
        *,
        dry_run: bool = False,
        stop: Callable[[], bool] = lambda: False,
        page_size: int = PURGE_PAGE,
    ) -> int:
        """Delete the documents of a supporting collection whose `expireAt` has passed."""
        query = self.client.collection(collection).where(filter=FieldFilter("expireAt", "<", now))
        query = query.order_by("expireAt").select(["expireAt"])
        deleter = None if dry_run else BulkDeleter(self.client)
        count = 0
        for page in streamed(query, page_size):
            count += len(page)
            if deleter is not None:
                for snap in page:
                    deleter.delete(snap.reference)
            if stop():
                break
        if deleter is not None:
            deleter.close()
        return count


def streamed(
    query: firestore.Query, chunk: int, per_query: int = PURGE_STREAM
) -> Iterator[list[firestore.DocumentSnapshot]]:
    """A query's results in chunks of `chunk`, read lazily from streams of at most `per_query`
    documents, each starting after the last one seen (a cursor). Few, long streams: the emulator
    (like a cold production index scan) pays a fixed cost per query, the chunks keep memory flat."""
    cursor = None
    while True:
        bounded = query.limit(per_query)
        if cursor is not None:
            bounded = bounded.start_after(cursor)
        seen, batch = 0, []
        for snap in bounded.stream():
            seen, cursor = seen + 1, snap
            batch.append(snap)
            if len(batch) == chunk:
                yield batch
                batch = []
        if batch:
            yield batch
        if seen < per_query:
            return
