"""Seen webhook event ids, so a delivery the sender repeats is processed once.

Collection `settings.collection("webhook_events")` (default `video_webhook_events`)::

    {source}_{sha256(event id)[:40]}    source, receivedAt, expireAt, updatedAt (server time)

The id is hashed so any sender-chosen text becomes a valid, fixed-length document id. `first_delivery`
creates the document with a "must not exist" precondition: of two deliveries of one event, even
concurrent ones, exactly one gets True. `forget` deletes it again, for a delivery whose processing
failed and that the sender should be able to retry.

`expireAt` (TTL policy) is `RETENTION` = 7 days after receipt: longer than any sender's retry window
(Standard Webhooks senders retry for about 1-3 days, HeyGen for hours), so a late retry is still known.
Besides `jobs/store.py` and `jobs/guards.py` this is the only module that writes Firestore documents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta

from google.api_core import exceptions as gexc
from google.cloud import firestore

from config import Settings
from jobs.txn import utcnow

RETENTION = timedelta(days=7)


def event_doc_id(source: str, event_id: str) -> str:
    return f"{source}_{hashlib.sha256(event_id.encode()).hexdigest()[:40]}"


class EventLog:
    def __init__(
        self, client: firestore.Client, settings: Settings, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.client = client
        self.collection = settings.collection("webhook_events")
        self.clock = clock

    def _ref(self, source: str, event_id: str) -> firestore.DocumentReference:
        return self.client.collection(self.collection).document(event_doc_id(source, event_id))

    def first_delivery(self, source: str, event_id: str) -> bool:
        """Record the event; False when it was recorded before (a repeated delivery)."""
        now = self.clock()
        doc = {
            "source": source,
            "receivedAt": now,
            "expireAt": now + RETENTION,
            "updatedAt": firestore.SERVER_TIMESTAMP,
        }
        try:
            self._ref(source, event_id).create(doc)
        except gexc.Conflict:
            return False
        return True

    def unknown_since(self, source: str, event_id: str) -> datetime:
        """When a delivery of this event first named a task we had no record of (recorded now, if
        this is the first), so a task recorded a moment after its create can still be found."""
        now = self.clock()
        ref = self.client.collection(self.collection).document(f"{event_doc_id(source, event_id)}_unknown")
        doc = {"source": source, "receivedAt": now, "expireAt": now + RETENTION}
        try:
            ref.create({**doc, "updatedAt": firestore.SERVER_TIMESTAMP})
        except gexc.Conflict:
            return (ref.get().to_dict() or {}).get("receivedAt") or now
        return now

    def forget(self, source: str, event_id: str) -> None:
        """Drop the record, so the sender's next delivery of this event is processed."""
        self._ref(source, event_id).delete()
