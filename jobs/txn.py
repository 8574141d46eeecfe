"""Firestore transactions that survive contention, and the one UTC clock of the job life cycle.

The client re-runs an aborted transaction at once, up to `client_attempts` times; contenders that
retry together keep aborting each other (seen on the emulator), so when those tries are spent the
whole transaction runs again after a jittered exponential backoff. That is safe only because no
transaction here has side effects (design invariant 4): it reads, decides, writes.
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
    """The client's "failed to commit in N attempts" caused by an aborted (contended) commit."""
    return isinstance(exc, ValueError) and isinstance(exc.__cause__, gexc.Aborted)


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
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_contention),
        wait=tenacity.wait_random_exponential(multiplier=backoff_s, max=max_wait_s),
        stop=tenacity.stop_after_attempt(reruns),
        reraise=True,
    )
    return retrying(lambda: firestore.transactional(fn)(client.transaction(max_attempts=client_attempts)))
