"""Counting Firestore work at the client level: every RPC, and the documents it read, wrote or deleted.

    counter = FirestoreCounter().attach(client)    wraps the client's GAPIC API object in place
    counter.snapshot()                             {"rpcs", "reads", "writes", "deletes", "by_rpc"}

Counted the way Firestore bills (https://cloud.google.com/firestore/pricing): each document returned
by a get or a query is a read, a get of a missing document is a read, a query that returns nothing
is one read; each document written in a commit or batch_write is a write, each delete a delete.
Transactions are counted as their gets and their commit (begin/rollback are RPCs, not billed).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

STREAMING = ("batch_get_documents", "run_query")
WRITING = ("commit", "batch_write")


class FirestoreCounter:
    def __init__(self) -> None:
        self.by_rpc: Counter[str] = Counter()
        self.reads = self.writes = self.deletes = 0
        self.writes_by_collection: Counter[str] = Counter()  # top-level collection of each write
        self._lock = threading.Lock()

    def attach(self, client: Any) -> FirestoreCounter:
        api = client._firestore_api  # built lazily by the client; we take its place
        if not isinstance(api, _CountingApi):
            client._firestore_api_internal = _CountingApi(api, self)
        return self

    def add(
        self,
        rpc: str,
        *,
        reads: int = 0,
        writes: int = 0,
        deletes: int = 0,
        collections: Counter | None = None,
    ) -> None:
        with self._lock:
            self.writes_by_collection.update(collections or {})
            if rpc:
                self.by_rpc[rpc] += 1
            self.reads += reads
            self.writes += writes
            self.deletes += deletes

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "rpcs": sum(self.by_rpc.values()),
                "reads": self.reads,
                "writes": self.writes,
                "deletes": self.deletes,
                "by_rpc": dict(self.by_rpc),
                "writes_by_collection": dict(self.writes_by_collection),
            }

    @staticmethod
    def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            key: after[key] - before[key] for key in ("rpcs", "reads", "writes", "deletes")
        }
        for key in ("by_rpc", "writes_by_collection"):
            counts = Counter(after[key])
            counts.subtract(before[key])
            out[key] = {k: v for k, v in counts.items() if v}
        return out


class _CountingApi:
    """Stands in for the GAPIC `FirestoreClient`: counts, then forwards every call."""

    def __init__(self, inner: Any, counter: FirestoreCounter) -> None:
        self._inner = inner
        self._counter = counter

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if name in STREAMING:
            return self._streaming(name, target)
        if name in WRITING:
            return self._writing(name, target)
        if callable(target) and not name.startswith("_"):
            return self._plain(name, target)
        return target

    def _plain(self, name: str, target: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self._counter.add(name)
            return target(*args, **kwargs)

        return call

    def _writing(self, name: str, target: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            writes = _field(kwargs.get("request"), "writes") or []
            deletes = sum(1 for w in writes if _is_delete(w))
            collections = Counter(_collection(w) for w in writes if not _is_delete(w))
            self._counter.add(name, writes=len(writes) - deletes, deletes=deletes, collections=collections)
            return target(*args, **kwargs)

        return call

    def _streaming(self, name: str, target: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Iterator[Any]:
            self._counter.add(name)
            return self._count_stream(name, target(*args, **kwargs))

        return call

    def _count_stream(self, name: str, responses: Iterator[Any]) -> Iterator[Any]:
        seen = 0
        try:
            for response in responses:
                seen += _documents_in(name, response)
                yield response
        finally:
            self._counter.add("", reads=seen if seen or name == "batch_get_documents" else 1)


def _field(request: Any, name: str) -> Any:
    if request is None:
        return None
    if isinstance(request, dict):
        return request.get(name)
    return getattr(request, name, None)


def _is_delete(write: Any) -> bool:
    pb = getattr(write, "_pb", write)
    try:
        return pb.WhichOneof("operation") == "delete"
    except (AttributeError, ValueError):
        return bool(getattr(write, "delete", ""))


def _collection(write: Any) -> str:
    """The top-level collection a write goes to (`.../documents/<collection>/<id>`)."""
    pb = getattr(write, "_pb", write)
    name = getattr(getattr(pb, "update", None), "name", "") or ""
    return name.split("/documents/", 1)[-1].split("/", 1)[0] if "/documents/" in name else "?"


def _documents_in(name: str, response: Any) -> int:
    pb = getattr(response, "_pb", response)
    if name == "batch_get_documents":  # a found or a missing document: billed either way
        return 1 if pb.WhichOneof("result") else 0
    return 1 if pb.HasField("document") else 0
