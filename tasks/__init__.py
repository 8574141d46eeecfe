"""Cloud Tasks: named, authenticated HTTP tasks, and the polling schedule.

    queue.py     TaskQueue protocol, CloudTasksQueue (Cloud Tasks or its emulator), QueueError, names
    memory.py    InMemoryQueue: records tasks, refuses duplicate names (unit tests)
    schedule.py  Envelope per provider, next_delay (pure), the named polling policies

Nothing here creates a client at import time; `get_queue()` builds the process-wide queue on first use.
"""

from tasks.memory import InMemoryQueue, QueuedTask
from tasks.queue import (
    FINALIZE_FUNCTION,
    POLL_FUNCTION,
    CloudTasksQueue,
    QueueError,
    TaskQueue,
    finalize_name_key,
    get_queue,
    poll_name_key,
    task_id_for,
)
from tasks.schedule import ENVELOPES, HEYGEN, RUNWAYML, Envelope, envelope_for, next_delay, poll_budget

__all__ = [
    "ENVELOPES",
    "FINALIZE_FUNCTION",
    "HEYGEN",
    "POLL_FUNCTION",
    "RUNWAYML",
    "CloudTasksQueue",
    "Envelope",
    "InMemoryQueue",
    "QueueError",
    "QueuedTask",
    "TaskQueue",
    "envelope_for",
    "finalize_name_key",
    "get_queue",
    "next_delay",
    "poll_budget",
    "poll_name_key",
    "task_id_for",
]
