"""`InMemoryQueue`: a `TaskQueue` that records tasks instead of sending them (fast unit tests).

It behaves like Cloud Tasks where callers can tell: the same `name_key` is refused as a duplicate
(`enqueue` returns False, also after the task was taken, as the real service keeps names reserved),
delays are clamped the same way, and payloads must be JSON. `fail_next` makes the next enqueue
calls raise a `QueueError`, so callers' error paths can be tested without a network.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from tasks.queue import QueueError, TaskQueue, clamp_delay, task_id_for


@dataclass(frozen=True)
class QueuedTask:
    """One recorded task."""

    function: str
    payload: dict[str, Any]
    name_key: str
    task_id: str
    delay_s: float


class InMemoryQueue(TaskQueue):
    """Records tasks in order; refuses duplicate names like the real service."""

    def __init__(self) -> None:
        self.tasks: list[QueuedTask] = []
        self._names: set[str] = set()
        self._failures: list[QueueError] = []
        self._lock = threading.Lock()

    def enqueue(self, *, function: str, payload: dict[str, Any], name_key: str, delay_s: float) -> bool:
        with self._lock:
            if self._failures:
                raise self._failures.pop(0)
            task_id = task_id_for(name_key)
            if task_id in self._names:
                return False
            body = json.loads(json.dumps(payload))  # a copy, and proof that it is JSON
            self._names.add(task_id)
            self.tasks.append(QueuedTask(function, body, name_key, task_id, clamp_delay(delay_s)))
            return True

    def fail_next(self, error: QueueError, times: int = 1) -> None:
        """Make the next `times` enqueue calls raise `error`."""
        with self._lock:
            self._failures.extend([error] * times)

    def take(self) -> list[QueuedTask]:
        """Remove and return the recorded tasks (their names stay reserved)."""
        with self._lock:
            taken, self.tasks = self.tasks, []
            return taken

    def for_function(self, function: str) -> list[QueuedTask]:
        return [task for task in self.tasks if task.function == function]
