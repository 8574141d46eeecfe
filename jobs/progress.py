"""Progress that moves and an estimated finish time for every live job (pure).

Each reading of a job's current provider task (a poll, a webhook, a status check) moves the job's
progress and its `estimatedReadyAt` (a new job's first estimate is its first candidate's typical
time). From the task's
reported progress `p` (0-100), its age `t` (since it was created) and the provider's typical render
time `T` (`ProviderSpec.typical_render_s`)::

    task status   reported        progress                               ready in
    queued        -               as reported (0)                        T - t, at least T / 10
    processing    1 <= p          p                                      t * (100 - p) / p
    processing    0 < p < 1       p                                      T - t, at least T / 10
    processing    none (p = 0)    99 * (1 - exp(-ln 10 * t / T))         T - t, at least T / 10
                                  (89 % at T, ever closer to 99)         (overdue: soon, not "late")

The job's progress is then the highest of its stored value and the estimate (it never goes back)
and at most LIVE_MAX while the job is live: only completion (`jobs/rules.py`) makes it 100. A job
that has ended, is storing its output (finalizing, 99 %), or whose current attempt is not the
task's is left as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from jobs.records import Job, TaskRecord
from providers.base import Status, is_terminal

LIVE_MAX = 99.0  # a live job's progress never reaches 100
PACE_FROM = 1.0  # reported progress from which its pace foretells the finish
OVERDUE_FRACTION = 0.1  # a task past its typical time: expected within this share of it
_RATE = math.log(10)  # the elapsed-time curve stands at 90 % of LIVE_MAX after one typical time


@dataclass(frozen=True)
class Estimate:
    progress: float  # 0 <= progress <= LIVE_MAX
    remaining_s: float  # >= 0


def estimate(status: Status, reported: float, elapsed_s: float, typical_s: float) -> Estimate:
    """The progress and time left of a live task (see the module docstring)."""
    elapsed_s = max(0.0, elapsed_s)
    by_typical = max(typical_s - elapsed_s, typical_s * OVERDUE_FRACTION)
    if status is Status.QUEUED:
        return Estimate(_live(reported), by_typical)
    if reported >= PACE_FROM:
        return Estimate(_live(reported), elapsed_s * max(0.0, 100.0 - reported) / reported)
    if reported > 0:  # too little done to tell its pace
        return Estimate(_live(reported), by_typical)
    return Estimate(_live(LIVE_MAX * (1 - math.exp(-_RATE * elapsed_s / typical_s))), by_typical)


def _live(progress: float) -> float:
    return round(min(LIVE_MAX, max(0.0, progress)), 1)


def first_estimate(now: datetime, typical_s: Sequence[float]) -> datetime | None:
    """When a new job should be ready: its first candidate's typical time from now (None: none)."""
    return now + timedelta(seconds=typical_s[0]) if typical_s else None


def advanced(before: Job, after: Job, task: TaskRecord, now: datetime, typical_s: float) -> Job:
    """`after` (the job once a reading of `task` was applied) with the progress and the finish
    time that reading implies; `before` is the job as stored (its progress is the floor)."""
    attempt = after.current_attempt
    live = not (is_terminal(after.status) or is_terminal(task.status) or after.finalizing)
    if not live or attempt is None or attempt.attempt_id != task.attempt_id:
        return after
    age = (now - task.created_at).total_seconds() if task.created_at else 0.0
    guess = estimate(task.status, task.progress, age, typical_s)
    progress = max(before.progress, _live(max(after.progress, guess.progress)))
    return replace(after, progress=progress, estimated_ready_at=now + timedelta(seconds=guess.remaining_s))
