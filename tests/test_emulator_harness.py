"""The harness talks to the real Firestore emulator and wipes it between tests."""

from __future__ import annotations


def test_emulator_round_trip(firestore_client):
    firestore_client.collection("probe").document("a").set({"n": 1})
    assert firestore_client.collection("probe").document("a").get().to_dict() == {"n": 1}


def test_each_test_starts_on_an_empty_database(firestore_client):
    assert list(firestore_client.collection("probe").stream()) == []
