"""Read-decide-write changes of Firestore documents that survive contention, and the one UTC clock
of the job life cycle.

A Firestore transaction locks what it reads until it commits; two that read one document and both
write it wait on each other (the emulator until its lock time-out, seen as stalled requests). The
changes here take no locks: `run_optimistic` reads the documents plainly, decides, and commits every
write in one batch with preconditions (`guarded_write`: each written document still as it was read,
or still missing). A commit that lost the race fails at once, holding nothing, and the whole change
runs again after a short jittered backoff -- safe only because nothing inside has a side effect
(design invariant 4): it reads, decides, writes. `Change` keeps one such attempt's reads and writes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

import errors


def utcnow() -> datetime:
    return datetime.now(UTC)


class Busy(errors.Unavailable):
    """A change kept losing the race for its documents: a 503 with Retry-After, to be asked again."""

    default_code = "busy"


class Unconfirmed(Exception):
    """A change decided from a version of a document it took as known (`Change.assume`) and did not
    write that document, so nothing confirmed the version was current: the change runs again."""


LOST_RACE = (gexc.FailedPrecondition, gexc.Conflict, gexc.NotFound, gexc.Aborted, Unconfirmed)


def guarded_write(
    batch: firestore.WriteBatch,
    ref: firestore.DocumentReference,
    snap: firestore.DocumentSnapshot | None,
    data: dict[str, Any],
) -> None:
    """Add to `batch` the write of `data` to `ref`, valid only while the document is as `snap` saw it."""
    _write_if(batch, ref, snap.update_time if snap is not None and snap.exists else None, data)


def _write_if(
    batch: firestore.WriteBatch, ref: firestore.DocumentReference, version: datetime | None, data: dict
) -> None:
    """Update `ref` if it is still at `version` (its update time), or create it (None: it was missing)."""
    if version is None:
        batch.create(ref, data)
    else:
        batch.update(ref, data, option=firestore.Client.write_option(last_update_time=version))


class Change:
    """One attempt of a read-decide-write: what it read, and its writes, committed together only
    while every document it read and writes is unchanged.

    A document may also be taken as known at a version instead of read (`assume`: the version this
    instance last wrote). The change must then write it, so that the precondition confirms the
    version; a change that did not is `Unconfirmed` and runs again, reading."""

    def __init__(self, client: firestore.Client) -> None:
        self._batch = client.batch()
        self._read: dict[str, datetime | None] = {}  # the version each document was read at
        self._assumed: set[str] = set()
        self._written: list[str] = []
        self.versions: dict[str, datetime] = {}  # once committed: each written document's version

    def get(self, ref: firestore.DocumentReference) -> firestore.DocumentSnapshot:
        snap = ref.get()
        self._read[ref.path] = snap.update_time if snap.exists else None
        return snap

    def assume(self, ref: firestore.DocumentReference, version: datetime) -> None:
        """Take the document as it was at `version`, without reading it; the change must write it."""
        self._read[ref.path] = version
        self._assumed.add(ref.path)

    def update(self, ref: firestore.DocumentReference, data: dict[str, Any]) -> None:
        """Write `data` to a document this change read (a KeyError for one it did not)."""
        _write_if(self._batch, ref, self._read[ref.path], data)
        self._written.append(ref.path)

    def set(self, ref: firestore.DocumentReference, data: dict[str, Any]) -> None:
        """Write the whole document, whatever it holds (a record no other change writes first)."""
        self._batch.set(ref, data)
        self._written.append(ref.path)

    def commit(self) -> None:
        if not self._assumed <= set(self._written):
            raise Unconfirmed(", ".join(sorted(self._assumed - set(self._written))))
        if self._written:
            results = self._batch.commit()  # one result per write, in order
            pairs = zip(self._written, results, strict=True)
            self.versions = {path: result.update_time for path, result in pairs}


def run_optimistic(
    attempt: Callable[[], Any], *, tries: int = 20, backoff_s: float = 0.02, max_wait_s: float = 1.0
) -> Any:
    """Run `attempt()` (read, decide, commit with `guarded_write`) again while it loses the race,
    after jittered exponential waits; `Busy` when it lost `tries` times."""
    import tenacity  # here: a function that only reads (a status check) never loads it

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(LOST_RACE),
        wait=tenacity.wait_random_exponential(multiplier=backoff_s, max=max_wait_s),
        stop=tenacity.stop_after_attempt(tries),
        reraise=True,
    )
    try:
        return retrying(attempt)
    except LOST_RACE as exc:
        raise Busy("the record is busy; try again", retry_after=2) from exc
