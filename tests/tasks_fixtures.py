"""Pytest plugin: the Cloud Tasks emulator once per run, a fresh queue per test, a loopback receiver.

Registered with `pytest_plugins = ["tests.tasks_fixtures"]` (or `-p tests.tasks_fixtures`).

- `tasks_emulator` (session): makes `.venv-tasks` if needed, starts the emulator on a free port,
  stops its whole process group at the end (also on failure; `ManagedProcess` adds an `atexit` stop).
- `task_receiver`: a threading HTTP server on 127.0.0.1 that answers 200 and records every request,
  standing in for the deployed functions.
- `emulator_queue_settings`: `Settings` pointing at a new, uniquely named queue on the emulator
  and at the receiver (`FUNCTIONS_BASE_URL`), so tests never see each other's tasks; deleted afterwards.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from config import Settings, load_settings
from local.tasks_emulator import TasksEmulator

TASKS_PROJECT = "cvplus-test"
TASKS_LOCATION = "us-central1"
TASKS_SERVICE_ACCOUNT = "video-tasks@cvplus-test.iam.gserviceaccount.com"


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float  # time.time(), for comparing with X-CloudTasks-TaskETA


class TaskReceiver:
    """Records requests; `wait_for(n)` blocks (bounded) until `n` have arrived."""

    def __init__(self) -> None:
        self.requests: queue.Queue[ReceivedRequest] = queue.Queue()
        self.failures_left = 0  # answer 503 to this many requests first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.requests.put(ReceivedRequest("POST", self.path, headers, body, time.time()))
                self.send_response(receiver.next_status())
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def next_status(self) -> int:
        with self._lock:
            if self.failures_left > 0:
                self.failures_left -= 1
                return 503
            return 200

    def wait_for(self, count: int, timeout_s: float = 20.0) -> list[ReceivedRequest]:
        got: list[ReceivedRequest] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < count and time.monotonic() < deadline:
            try:
                got.append(self.requests.get(timeout=0.1))
            except queue.Empty:
                continue
        return got

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="session")
def tasks_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TasksEmulator]:
    emulator = TasksEmulator(tmp_path_factory.mktemp("tasks-emulator-logs")).start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def task_receiver() -> Iterator[TaskReceiver]:
    receiver = TaskReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture
def emulator_queue_settings(tasks_emulator: TasksEmulator, task_receiver: TaskReceiver) -> Iterator[Settings]:
    name = f"q-{uuid.uuid4().hex[:12]}"
    path = tasks_emulator.create_queue(TASKS_PROJECT, TASKS_LOCATION, name)
    yield load_settings(
        {
            "GOOGLE_CLOUD_PROJECT": TASKS_PROJECT,
            "FUNCTION_REGION": TASKS_LOCATION,
            "TASKS_QUEUE": name,
            "TASKS_SERVICE_ACCOUNT": TASKS_SERVICE_ACCOUNT,
            "CLOUD_TASKS_EMULATOR_HOST": tasks_emulator.host,
            "FUNCTIONS_BASE_URL": task_receiver.base_url,
        }
    )
    tasks_emulator.client.delete_queue(name=path)  # also ends the emulator's thread for it
