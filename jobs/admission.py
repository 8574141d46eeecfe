"""Per-user admission: each user's ledger in Firestore, one document per user (`jobs/plans.py` decides).

    {settings.collection("users")}/{uid}    uid, jobs {jobId: {at, usd, settled}}, updatedAt,
                                            expireAt (2 days after the last admission, for TTL)

`admit` runs before any provider is called and before the job is written. Only an allowed
admission writes, and only its user's document: no project-wide document is touched, so users never
contend with each other, and one user's burst serializes on their own document. The transaction
also reads the jobs of the ledger's open entries (at most the plan's live jobs plus those ended since
the last admission), so a job that ended frees its slot; a poll of one of them waits for it briefly.

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
from jobs.txn import run_transaction, utcnow

LEDGER_TTL = timedelta(days=2)


class UserAdmission:
    """Enforces each user's plan across all instances, in their own Firestore document."""

    def __init__(self, jobs: Queries, settings: Settings, clock: Callable[[], datetime] = utcnow) -> None:
        self.jobs = jobs
        self.client = jobs.client
        self.clock = clock
        self.collection = settings.collection("users")

    def admit(self, uid: str, plan: str, limits: TierLimits, job_id: str, usd: float | None) -> None:
        """Record `job_id` in the user's ledger, or raise 429 `user_limit` (writing nothing)."""
        ref = self.client.collection(self.collection).document(uid)
        now, cost = self.clock(), usd or 0.0

        def run(txn: firestore.Transaction) -> plans.Refusal | None:
            ledger = _ledger(ref.get(transaction=txn).to_dict())
            if job_id in ledger:
                return None
            ledger = self._settled(ledger, now, txn)
            refusal = plans.decide(plan, limits, ledger, cost, now)
            if refusal is None:
                entries = {**plans.prune(ledger, now), job_id: Entry(at=now, usd=cost)}
                txn.set(ref, _doc(uid, entries, now))
            return refusal

        refusal = run_transaction(self.client, run)
        if refusal is not None:
            raise errors.OverLimit(
                refusal.message, code="user_limit", retry_after=refusal.retry_after_s, limit=refusal.limit
            )

    def ledger(self, uid: str) -> dict[str, Entry]:
        """The user's ledger as of now, each open entry settled against its job (operators' view)."""
        doc = self.client.collection(self.collection).document(uid).get().to_dict()
        return self._settled(_ledger(doc), self.clock())

    def _settled(
        self, ledger: Mapping[str, Entry], now: datetime, txn: firestore.Transaction | None = None
    ) -> dict[str, Entry]:
        open_ids = [j for j, e in ledger.items() if not e.settled]
        jobs = self.jobs.get_jobs(open_ids, transaction=txn) if open_ids else {}
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
