"""Shared fixtures: Google's Firestore emulator once per run, wiped before every test that uses it.

The emulator is started lazily (only when a test asks for Firestore), on a free port, and stopped
by its process group at the end of the session -- also when tests fail or the run is interrupted
(`ManagedProcess` registers an `atexit` stop as well).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import Settings, load_settings
from local.firestore_emulator import FirestoreEmulator

pytest_plugins = ["tests.tasks_fixtures", "tests.stack"]

TEST_PROJECT = "cvplus-test"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirestoreEmulator]:
    emulator = FirestoreEmulator(tmp_path_factory.mktemp("emulator-logs")).start()
    previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
    try:
        yield emulator
    finally:
        emulator.stop()
        if previous is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = previous


@pytest.fixture
def settings() -> Settings:
    return load_settings({"GOOGLE_CLOUD_PROJECT": TEST_PROJECT})


@pytest.fixture
def firestore_client(firestore_emulator: FirestoreEmulator):
    """A fresh client on an empty database."""
    from google.cloud import firestore

    firestore_emulator.wipe(TEST_PROJECT)
    client = firestore.Client(project=TEST_PROJECT)
    try:
        yield client
    finally:
        client.close()
