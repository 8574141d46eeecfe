"""jobs.txn: a read-decide-write that lost the race runs again, against the emulator."""

from __future__ import annotations

import threading

import pytest
from google.api_core import exceptions as gexc
from google.cloud.firestore import Increment

from jobs.txn import Busy, Change, Unconfirmed, run_optimistic


def _counter(client, name):
    ref = client.collection("txn_test").document(name)
    ref.set({"n": 0})
    return ref


def _increment(client, ref, before_commit=lambda: None):
    change = Change(client)
    n = change.get(ref).to_dict()["n"]
    change.update(ref, {"n": n + 1})
    before_commit()
    change.commit()
    return n + 1


def test_a_change_whose_document_moved_after_the_read_commits_nothing(firestore_client):
    ref = _counter(firestore_client, "moved")
    with pytest.raises(gexc.FailedPrecondition):
        _increment(firestore_client, ref, before_commit=lambda: ref.update({"n": 10}))
    assert ref.get().to_dict() == {"n": 10}


def test_a_change_that_lost_the_race_runs_again_on_what_won(firestore_client):
    ref = _counter(firestore_client, "rerun")
    runs = []

    def attempt():
        runs.append(1)
        interfere = (lambda: ref.update({"n": 10})) if len(runs) == 1 else (lambda: None)
        return _increment(firestore_client, ref, interfere)

    assert run_optimistic(attempt, backoff_s=0.001) == 11
    assert len(runs) == 2
    assert ref.get().to_dict() == {"n": 11}


def test_concurrent_changes_lose_no_update(firestore_client):
    ref = _counter(firestore_client, "concurrent")
    threads = [
        threading.Thread(
            target=lambda: [run_optimistic(lambda: _increment(firestore_client, ref)) for _ in range(5)]
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ref.get().to_dict() == {"n": 20}


def test_a_change_that_always_loses_is_busy_not_a_crash(firestore_client):
    ref = _counter(firestore_client, "always")

    def attempt():  # another writer moves the document between every read and commit
        return _increment(firestore_client, ref, before_commit=lambda: ref.update({"n": Increment(100)}))

    with pytest.raises(Busy) as busy:
        run_optimistic(attempt, tries=3, backoff_s=0.001)
    assert (busy.value.code, busy.value.retry_after, busy.value.retryable) == ("busy", 2, True)
    assert ref.get().to_dict() == {"n": 300}  # only the other writer's three writes landed


def test_a_change_writes_only_documents_it_read(firestore_client):
    change = Change(firestore_client)
    with pytest.raises(KeyError):
        change.update(firestore_client.collection("txn_test").document("unread"), {"n": 1})


def test_a_document_taken_as_known_commits_at_that_version(firestore_client):
    ref = _counter(firestore_client, "known")
    version = ref.get().update_time
    change = Change(firestore_client)
    change.assume(ref, version)
    change.update(ref, {"n": 1})
    change.commit()
    assert ref.get().to_dict() == {"n": 1}
    assert change.versions == {ref.path: ref.get().update_time}  # what the next change may assume


def test_a_known_version_that_moved_commits_nothing(firestore_client):
    ref = _counter(firestore_client, "known-moved")
    version = ref.get().update_time
    ref.update({"n": 5})
    change = Change(firestore_client)
    change.assume(ref, version)
    change.update(ref, {"n": 1})
    with pytest.raises(gexc.FailedPrecondition):
        change.commit()
    assert ref.get().to_dict() == {"n": 5}


def test_a_change_that_does_not_write_what_it_assumed_is_unconfirmed(firestore_client):
    ref = _counter(firestore_client, "known-unwritten")
    other = _counter(firestore_client, "other")
    change = Change(firestore_client)
    change.assume(ref, ref.get().update_time)
    change.set(other, {"n": 1})
    with pytest.raises(Unconfirmed):
        change.commit()
    assert other.get().to_dict() == {"n": 0}  # nothing was sent
