"""Firestore transactions that survive contention, and the one UTC clock of the job life cycle.

The client re-runs an aborted transaction at once, up to `client_attempts` times; contenders that
retry together keep aborting each other (seen on the emulator), so when those tries are spent the
whole transaction runs again after a jittered exponential backoff. That is safe only because no
transaction here has side effects (design invariant 4): it reads, decides, writes.

A transaction locks what it reads until it commits; two that read one document and both write it
wait on each other (the emulator until its lock time-out). Where a few often-written documents
decide a write, `run_optimistic` reads them plainly instead and commits with preconditions
(`guarded_write`: each written document still as it was read, or still missing): a commit that lost
the race fails at once, holding no lock, and runs again after a short jittered backoff.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import tenacity
from google.api_core import exceptions as gexc
from google.cloud import firestore


def utcnow() -> datetime:
    return datetime.now(UTC)


def is_contention(exc: BaseException) -> bool:
    """Another transaction held what this one needed: the client's "failed to commit in N attempts"
    after aborted commits, or a read inside the transaction aborted after waiting for a lock (the
    emulator's "Transaction lock timeout"; the client has rolled the transaction back)."""
    return isinstance(exc, gexc.Aborted) or (
        isinstance(exc, ValueError) and isinstance(exc.__cause__, gexc.Aborted)
    )


LOST_RACE = (gexc.FailedPrecondition, gexc.Conflict, gexc.NotFound, gexc.Aborted)


def guarded_write(
    batch: firestore.WriteBatch,
    ref: firestore.DocumentReference,
    snap: firestore.DocumentSnapshot | None,
    data: dict[str, Any],
) -> None:
    """Add to `batch` the write of `data` to `ref`, valid only while the document is as `snap` saw it."""
    if snap is not None and snap.exists:
        batch.update(ref, data, option=firestore.Client.write_option(last_update_time=snap.update_time))
    else:
        batch.create(ref, data)


def run_optimistic(
    attempt: Callable[[], Any], *, tries: int = 20, backoff_s: float = 0.02, max_wait_s: float = 1.0
) -> Any:
    """Run `attempt()` (read, decide, commit with `guarded_write`) again while it loses the race."""
    lost = tenacity.retry_if_exception_type(LOST_RACE)
    return _backing_off(lost, tries, backoff_s, max_wait_s)(attempt)


def run_transaction(
    client: firestore.Client,
    fn: Callable[[firestore.Transaction], Any],
    *,
    client_attempts: int = 5,
    reruns: int = 10,
    backoff_s: float = 0.05,
    max_wait_s: float = 2.0,
) -> Any:
    """Run `fn(transaction)` in a transaction; on contention, again after a backoff (`reruns` in all)."""
    retrying = _backing_off(tenacity.retry_if_exception(is_contention), reruns, backoff_s, max_wait_s)
    return retrying(lambda: firestore.transactional(fn)(client.transaction(max_attempts=client_attempts)))


def _backing_off(
    retry: tenacity.retry_base, tries: int, backoff_s: float, max_wait_s: float
) -> tenacity.Retrying:
    """Up to `tries` runs while `retry` says so, after jittered exponential waits; the last error raised."""
    return tenacity.Retrying(
        retry=retry,
        wait=tenacity.wait_random_exponential(multiplier=backoff_s, max=max_wait_s),
        stop=tenacity.stop_after_attempt(tries),
        reraise=True,
    )
