"""Per-user admission: each user's ledger in Firestore, one document per user (`jobs/plans.py` decides).

    {settings.collection("users")}/{uid}    uid, jobs {jobId: {at, usd, settled}}, updatedAt,
                                            expireAt (2 days after the last admission, for TTL)

`admit` runs before any provider is called and before the job is written. Only an allowed
admission writes, and only its user's document: no project-wide document is touched, so users never
contend with each other, and one user's burst serializes on their own document. It reads the ledger
and the jobs of its open entries (at most the plan's live jobs plus those ended since the last
admission), so a job that ended frees its slot, without a transaction: the write of the ledger is
conditional on the ledger being unchanged since it was read (`jobs.txn.run_optimistic`), and is
decided again when another admission came first. Nothing is locked, so neither a concurrent
admission of the same user nor a poll of one of the jobs read ever waits for it. The jobs need no
lock: a job only ever moves towards its end, and one read as live a moment too early only counts
against its user.

Admitting the same job id twice (a repeated Idempotency-Key racing its first request) is allowed
once: the second finds its entry and takes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from google.cloud import firestore

import errors
from config import Settings, TierLimits
from jobs import plans
from jobs.plans import Entry
from jobs.queries import Queries
from jobs.txn import guarded_write, run_optimistic, utcnow

LEDGER_TTL = timedelta(days=2)


class UserAdmission:
    """Enforces each user's plan across all instances, in their own Firestore document."""

    def __init__(self, jobs: Queries, settings: Settings, clock: Callable[[], datetime] = utcnow) -> None:
        self.jobs = jobs
        self.client = jobs.client
        self.clock = clock
        self.collection = settings.collection("users")

    def ledger_ref(self, uid: str) -> firestore.DocumentReference:
        """The user's ledger document (for a caller that reads it with others, in one round trip)."""
        return self.client.collection(self.collection).document(uid)

    def admit(
        self,
        uid: str,
        plan: str,
        limits: TierLimits,
        job_id: str,
        usd: float | None,
        read: firestore.DocumentSnapshot | None = None,
    ) -> None:
        """Record `job_id` in the user's ledger, or raise 429 `user_limit` (writing nothing). `read`:
        the ledger as the caller read it a moment ago; the write holds only if it is unchanged."""
        ref = self.ledger_ref(uid)
        now, cost = self.clock(), usd or 0.0
        pending = [read] if read is not None else []

        def attempt() -> plans.Refusal | None:
            snap = pending.pop() if pending else ref.get()
            ledger = _ledger(snap.to_dict())
            if job_id in ledger:
                return None
            ledger = self._settled(ledger, now)
            refusal = plans.decide(plan, limits, ledger, cost, now)
            if refusal is None:
                entries = {**plans.prune(ledger, now), job_id: Entry(at=now, usd=cost)}
                batch = self.client.batch()
                guarded_write(batch, ref, snap, _doc(uid, entries, now))
                batch.commit()
            return refusal

        refusal = run_optimistic(attempt)
        if refusal is not None:
            raise errors.OverLimit(
                refusal.message, code="user_limit", retry_after=refusal.retry_after_s, limit=refusal.limit
            )

    def ledger(self, uid: str) -> dict[str, Entry]:
        """The user's ledger as of now, each open entry settled against its job (operators' view)."""
        doc = self.ledger_ref(uid).get().to_dict()
        return self._settled(_ledger(doc), self.clock())

    def _settled(self, ledger: Mapping[str, Entry], now: datetime) -> dict[str, Entry]:
        open_ids = [j for j, e in ledger.items() if not e.settled]
        jobs = self.jobs.get_jobs(open_ids) if open_ids else {}
        return {j: plans.settle(e, jobs.get(j), now) for j, e in ledger.items()}


def _ledger(doc: Mapping[str, Any] | None) -> dict[str, Entry]:
    return {j: Entry.from_doc(e) for j, e in ((doc or {}).get("jobs") or {}).items()}


def _doc(uid: str, ledger: Mapping[str, Entry], now: datetime) -> dict[str, Any]:
    return {
        "uid": uid,
        "jobs": {j: e.to_doc() for j, e in ledger.items()},
        "updatedAt": firestore.SERVER_TIMESTAMP,
        "expireAt": now + LEDGER_TTL,
    }
