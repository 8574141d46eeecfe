"""Cloud Tasks and Cloud Scheduler workers, and the clients they need.

    queue.py       TaskQueue protocol, CloudTasksQueue (Cloud Tasks or its emulator), QueueError, names
    memory.py      InMemoryQueue: records tasks, refuses duplicate names (unit tests)
    schedule.py    next_delay (pure) and the named polling policies; envelopes come from provider specs
    poll.py        FirstPoll (what the runner schedules with) and Poller: fetch, apply, schedule next
    finalize.py    copy a finished video into the bucket (GIF made here)
    cleanup.py     the scheduled sweep: retention, deadlines, crash windows, stalled finalize steps
    batch.py       many jobs at once, stale live ones refreshed
    monitoring.py  provider health for operators (statistics are pure)
    storage.py     the Cloud Storage seam

Nothing here creates a client at import time; `CloudTasksQueue` creates its client on first use.
"""

from tasks.memory import InMemoryQueue, QueuedTask
from tasks.queue import (
    FINALIZE_FUNCTION,
    POLL_FUNCTION,
    CloudTasksQueue,
    QueueError,
    TaskQueue,
    finalize_name_key,
    poll_name_key,
    task_id_for,
)
from tasks.schedule import envelope_for, next_delay, poll_budget

__all__ = [
    "FINALIZE_FUNCTION",
    "POLL_FUNCTION",
    "CloudTasksQueue",
    "InMemoryQueue",
    "QueueError",
    "QueuedTask",
    "TaskQueue",
    "envelope_for",
    "finalize_name_key",
    "next_delay",
    "poll_budget",
    "poll_name_key",
    "task_id_for",
]
