"""run_transaction: contention of any kind runs the transaction again, against the emulator."""

from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc

from jobs.txn import is_contention, run_transaction


def test_a_read_that_timed_out_on_a_lock_runs_the_transaction_again(firestore_client):
    ref = firestore_client.collection("txn_test").document("lock-timeout")
    runs = []

    def fn(txn):
        runs.append(ref.get(transaction=txn).exists)
        if len(runs) == 1:  # what the emulator answers a read that waited too long for a lock
            raise gexc.Aborted("Transaction lock timeout.")
        txn.set(ref, {"runs": len(runs)})
        return len(runs)

    assert run_transaction(firestore_client, fn, backoff_s=0.001) == 2
    assert ref.get().to_dict() == {"runs": 2}  # the first run wrote nothing


@pytest.mark.parametrize(
    ("exc", "contended"),
    [
        (gexc.Aborted("Transaction lock timeout."), True),
        (ValueError("Failed to commit transaction in 5 attempts."), False),
        (gexc.FailedPrecondition("no"), False),
        (RuntimeError("bug"), False),
    ],
)
def test_what_counts_as_contention(exc, contended):
    assert is_contention(exc) is contended


def test_a_commit_that_kept_aborting_is_contention():
    failed = ValueError("Failed to commit transaction in 5 attempts.")
    failed.__cause__ = gexc.Aborted("contention")  # as the client raises it
    assert is_contention(failed)
