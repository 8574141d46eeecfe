"""Reads of many jobs and task records: batched gets, one-off queries, and paged sweeps.

A mixin of `JobStore` (it uses the store's client, settings and references). Batched gets send
`GET_ALL_CHUNK` ids a request, a large read's requests side by side, and decode each document
straight from its protobuf (`batch_get`). Sweeps page with cursors (no offsets), so memory stays
bounded whatever the backlog. Queries and the composite indexes they need (`firestore.indexes.json`)::

    jobs_for_owner            ownerUid ==, [status ==], order by createdAt desc          (ops CLI)
    jobs_by_status            status in, [updatedAt <], order by updatedAt               (batch)
    jobs_ended_since          status in terminal, updatedAt >=, order by updatedAt       (monitoring)
    iter_jobs_past_deadline   status in active, deadlineAt <, order by deadlineAt        (cleanup)
    iter_stale_active_jobs    status in active, updatedAt <, order by updatedAt          (cleanup)
    iter_finalizing_jobs      finalizing ==, order by __name__ (single-field index)      (cleanup)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import Any, NamedTuple

from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.base_query import FieldFilter

from config import Settings
from jobs.records import Job, TaskRecord, job_from_doc, task_from_doc
from providers import registry
from providers.base import ACTIVE_STATUSES, TERMINAL_STATUSES, Status

USER_VIEWS = "job_status"  # video_job_status/{jobId} with the default prefix (firestore.rules)
GET_ALL_CHUNK = 300
GET_ALL_WORKERS = 4
SWEEP_PAGE = 200
MAX_WINDOW_JOBS = 5000
# what the provider statistics read of each job (a projection: fewer bytes decoded)
_WINDOW_FIELDS = ["jobId", "ownerUid", "status", "progress", "candidates", "attempts", "deadlineAt"]
_WINDOW_FIELDS += ["createdAt", "endedAt", "updatedAt", "actualCostUsd"]
# what a status summary reads of each job (the batch check): Firestore sends and the store decodes
# only these, not the request, prompt and output maps
STATUS_FIELDS = ("jobId", "status", "progress", "attempts", "error", "createdAt", "updatedAt", "deadlineAt")


class Documents:
    """Where the records live: the jobs collection, and each provider's task collection (its spec)."""

    client: firestore.Client
    settings: Settings

    def _jobs(self) -> firestore.CollectionReference:
        return self.client.collection(self.settings.jobs_collection)

    def job_ref(self, job_id: str) -> firestore.DocumentReference:
        return self._jobs().document(job_id)

    def user_view_ref(self, job_id: str) -> firestore.DocumentReference:
        """The owner's view of a job (`jobs/views.py`), the one document of it the app may read."""
        return self.client.collection(self.settings.collection(USER_VIEWS)).document(job_id)

    def task_collection(self, provider: str) -> str:
        return registry.spec(provider).records_collection(self.settings)

    def task_ref(self, provider: str, task_id: str) -> firestore.DocumentReference:
        return self.client.collection(self.task_collection(provider)).document(task_id)


class Queries(Documents):
    # -- batched reads ------------------------------------------------------------------------------

    def get_jobs(
        self,
        job_ids: Iterable[str],
        fields: Sequence[str] | None = None,
    ) -> dict[str, Job]:
        """Many jobs by id with batched reads (`batch_get`), missing ones omitted; `fields`: only those."""
        jobs = self._jobs()
        refs = [jobs.document(i) for i in dict.fromkeys(job_ids)]
        return {f.id: job_from_doc(f.fields, f.id) for f in self._get_all(refs, fields)}

    def get_tasks(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], TaskRecord]:
        """Many task records by (provider, task id) with batched reads, missing ones omitted."""
        refs = [self.task_ref(provider, task_id) for provider, task_id in dict.fromkeys(keys)]
        tasks = (task_from_doc(found.fields) for found in self._get_all(refs))
        return {(task.provider, task.task_id): task for task in tasks}

    def _get_all(
        self,
        refs: list[firestore.DocumentReference],
        fields: Sequence[str] | None = None,
    ) -> list[Found]:
        """Each existing document of `refs`: `GET_ALL_CHUNK` references a request, the requests of a
        large read sent side by side (their round trips overlap the decoding)."""
        api = self.client._firestore_api  # built on first use, unguarded: here, never in a worker
        read = partial(batch_get, self.client, api, field_paths=None if fields is None else list(fields))
        chunks = [refs[start : start + GET_ALL_CHUNK] for start in range(0, len(refs), GET_ALL_CHUNK)]
        if len(chunks) <= 1:
            return [found for chunk in chunks for found in read(chunk)]
        with ThreadPoolExecutor(max_workers=min(GET_ALL_WORKERS, len(chunks))) as pool:
            parts = pool.map(read, chunks)
            return [found for part in parts for found in part]

    # -- queries ------------------------------------------------------------------------------------

    def jobs_for_owner(self, owner_uid: str, *, status: Status | None = None, limit: int = 50) -> list[Job]:
        query = self._jobs().where(filter=FieldFilter("ownerUid", "==", owner_uid))
        if status is not None:
            query = query.where(filter=FieldFilter("status", "==", str(status)))
        query = query.order_by("createdAt", direction=firestore.Query.DESCENDING).limit(limit)
        return [job_from_doc(s.to_dict()) for s in query.stream()]

    def jobs_by_status(
        self,
        statuses: Iterable[Status],
        *,
        updated_before: datetime | None = None,
        limit: int = 500,
        fields: Sequence[str] | None = None,
    ) -> list[Job]:
        query = self._jobs().where(filter=FieldFilter("status", "in", _names(statuses)))
        if updated_before is not None:
            query = query.where(filter=FieldFilter("updatedAt", "<", updated_before))
        query = query.order_by("updatedAt").limit(limit)
        if fields is not None:
            query = query.select(list(fields))
        return [job_from_doc(s.to_dict(), s.id) for s in query.stream()]

    def jobs_ended_since(self, since: datetime, *, limit: int = MAX_WINDOW_JOBS) -> tuple[list[Job], bool]:
        """Terminal jobs that ended at or after `since` (the fields statistics need); True if cut."""
        query = self._jobs().where(filter=FieldFilter("status", "in", _names(TERMINAL_STATUSES)))
        query = query.where(filter=FieldFilter("updatedAt", ">=", since)).order_by("updatedAt")
        snaps = list(query.select(_WINDOW_FIELDS).limit(limit + 1).stream())
        jobs = [job_from_doc(s.to_dict(), s.id) for s in snaps[:limit]]
        ended = [j for j in jobs if j.ended_at is None or j.ended_at >= since]
        return ended, len(snaps) > limit

    # -- sweeps (the scheduled cleanup): cursor pages, bounded memory ---------------------------------

    def iter_jobs_past_deadline(self, now: datetime, *, page_size: int = SWEEP_PAGE) -> Iterator[Job]:
        query = self._jobs().where(filter=FieldFilter("status", "in", _names(ACTIVE_STATUSES)))
        query = query.where(filter=FieldFilter("deadlineAt", "<", now)).order_by("deadlineAt")
        return _jobs_of(pages(query, page_size))

    def iter_stale_active_jobs(
        self, updated_before: datetime, *, page_size: int = SWEEP_PAGE
    ) -> Iterator[Job]:
        """Active jobs whose record has not changed since `updated_before` (crash-window candidates)."""
        query = self._jobs().where(filter=FieldFilter("status", "in", _names(ACTIVE_STATUSES)))
        query = query.where(filter=FieldFilter("updatedAt", "<", updated_before)).order_by("updatedAt")
        return _jobs_of(pages(query, page_size))

    def iter_finalizing_jobs(self, *, page_size: int = SWEEP_PAGE) -> Iterator[Job]:
        query = self._jobs().where(filter=FieldFilter("finalizing", "==", True)).order_by("__name__")
        return _jobs_of(pages(query, page_size))


class Found(NamedTuple):
    """A document read straight from the wire: its full name and its (projected) fields, decoded."""

    name: str
    fields: dict[str, Any]

    @property
    def id(self) -> str:
        return self.name.rpartition("/")[2]

    @classmethod
    def decode(cls, document: Any, client: firestore.Client) -> Found:
        """From a `google.firestore.v1.Document` protobuf, decoded as the client decodes it."""
        return cls(document.name, _decode_map(document.fields, client))


def _decode_map(fields: Any, client: firestore.Client) -> Any:
    """A protobuf map of `Value`s as `_helpers.decode_dict` decodes it, the common kinds of value
    taken here: the client's decoder spends most of a bulk read's CPU looking up each value's `_pb`
    and each map's vector or BSON form. A map with a reserved `__` key (a vector, a BSON value) and
    the rarer kinds of value (bytes, references, points) go to the client's own decoder."""
    if any(key.startswith("__") for key in fields):
        return _helpers.decode_dict(fields, client)
    return {key: _decode_value(value, client) for key, value in fields.items()}


def _decode_value(value: Any, client: firestore.Client) -> Any:
    kind = value.WhichOneof("value_type")
    if kind == "string_value":
        return value.string_value
    if kind == "timestamp_value":
        return DatetimeWithNanoseconds.from_timestamp_pb(value.timestamp_value)
    if kind == "integer_value":
        return value.integer_value
    if kind == "map_value":
        return _decode_map(value.map_value.fields, client)
    if kind == "array_value":
        return [_decode_value(item, client) for item in value.array_value.values]
    if kind == "null_value":
        return None
    if kind == "boolean_value":
        return value.boolean_value
    if kind == "double_value":
        return value.double_value
    return _helpers.decode_value(value, client)


def batch_get(
    client: firestore.Client,
    api: Any,
    refs: list[firestore.DocumentReference],
    field_paths: list[str] | None = None,
    *,
    first_only: bool = False,
) -> list[Found]:
    """What `client.get_all` reads, as a `Found` for each existing document, without its snapshots:
    the same request to the same GAPIC method (`api`, the client's `_firestore_api`), each document
    decoded as the client decodes it, straight from the protobuf (`Found.decode`). `get_all` wraps
    every response in proto-plus and deep-copies each document into its snapshot, and `to_dict()`
    copies it again: most of a bulk read's time. Leans on the client's private request builder and
    decoder; a test pins what it reads to what `get_all` reads. `first_only`: read the first
    response and no further, as `DocumentReference.get` does for its one document (the stream's end
    is another wait, and nothing more)."""
    request, _, _ = client._prep_get_all(refs, field_paths, None)  # its retry=None: not taken
    responses = api.batch_get_documents(request=request, metadata=client._rpc_metadata)
    found = []
    for response in itertools.islice(responses, 1) if first_only else responses:
        pb = response._pb
        if pb.WhichOneof("result") == "found":
            found.append(Found.decode(pb.found, client))
    return found


def _names(statuses: Iterable[Status]) -> list[str]:
    return sorted(str(s) for s in statuses)


def pages(query: firestore.Query, page_size: int) -> Iterator[list[firestore.DocumentSnapshot]]:
    """A query's results page by page, each page starting after the last one (a cursor, no offset)."""
    cursor = None
    while True:
        page_query = query.limit(page_size)
        if cursor is not None:
            page_query = page_query.start_after(cursor)
        page = list(page_query.stream())
        if page:
            yield page
        if len(page) < page_size:
            return
        cursor = page[-1]


def _jobs_of(pages: Iterable[list[firestore.DocumentSnapshot]]) -> Iterator[Job]:
    for page in pages:
        yield from (job_from_doc(s.to_dict()) for s in page)
