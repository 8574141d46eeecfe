"""The polling schedule: how long to wait before looking at a provider task again (pure).

    next_delay(envelope, *, elapsed_s, poll_count, progress=None, status=None,
               typical_duration_s=None, rand=None) -> seconds, or None = stop polling

`elapsed_s` is the time since the provider task was created, `poll_count` the polls already made,
`progress` the last reported progress (0-100), `status` the project's status of the last snapshot
("queued" means the provider has not started it). `rand` (0 <= rand < 1) is the only randomness.

Envelope rules (every policy)::

    None   exactly when poll_count >= max_polls or elapsed_s >= max_elapsed_s (the caller times out)
    else   min_delay_s <= delay <= max_delay_s, and a delay that would overshoot max_elapsed_s is
           cut to land on it (never below min_delay_s), so the last look happens at the limit

Policies (`Envelope.policy`)::

    seed_backoff   first_delay_s * factor**poll_count, capped at max_delay_s (the seed's 2 -> 15 s)
    sdk_fixed      6 s +- 1.5 s, as the official runwayml SDK's wait_for_task_output
    stepped        the provider's own advice: (from elapsed_s, delay_s) steps
    adaptive       aims at the estimated completion; without an estimate it falls back to the
                   envelope's steps or backoff, floored at the update interval (`update_interval_s`)

The adaptive estimate: a snapshot with progress p (0 < p < 100) was written on average half an update
interval ago, `queue_s` after the create at the earliest; the task ran `ran` seconds to reach p, so
it ends about ran * (100 - p) / p after the snapshot. p = 100 without a terminal status means "any
moment"; with no progress, half of what remains of the typical duration (durations spread, so
approach it rather than bet on it).

Where the provider refreshes a task only every `update_interval_s`, its refreshes fall on a fixed
grid: the snapshot just seen is one of them, so the next ones come whole intervals after it. The
adaptive policy then waits a whole number of intervals, the first one that reaches the estimated
end: the poll lands just after a refresh, so it sees a finished task within one interval of its end
(on average half of one) without a second look. Without an update interval it aims
`completion_margin_s` after the estimated end, and once overdue it backs off with how late the task
is.

Default envelopes (each provider's `ProviderSpec.envelope`, `providers/<name>/__init__.py`)::

    provider  first  min  max  factor  max polls  max elapsed  policy    notes
    runwayml  17 s   5 s  30 s  1.5     180        6 min        adaptive  updates at most every 5 s; 15 s
                                                                          while queued; starts ~2 s in
    heygen    10 s   10 s 60 s  1.5     60         20 min       stepped   10 s to 2 min, 30 s to 5 min,
                                                                          then 60 s (HeyGen's advice)

The seed's schedule (`RUNWAYML_SEED`: 2 s growing by 1.5 to 15 s, inside the same limits) reaches the
6-minute limit first: `RUNWAYML_SEED_POLL_BUDGET` (28) polls, far from the 180 the seed names.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from providers import registry
from providers.spec import POLICIES, Envelope

__all__ = [
    "ENVELOPES",
    "HEYGEN",
    "POLICIES",
    "RUNWAYML",
    "RUNWAYML_SDK",
    "RUNWAYML_SEED",
    "RUNWAYML_SEED_POLL_BUDGET",
    "Envelope",
    "PollState",
    "envelope_for",
    "next_delay",
    "poll_budget",
]

SDK_POLL_S = 6.0  # runwayml SDK: POLL_TIME
SDK_JITTER_S = 3.0  # runwayml SDK: POLL_JITTER, spread evenly around POLL_TIME
QUEUED = "queued"


@dataclass(frozen=True)
class PollState:
    """What is known when the next delay is chosen."""

    elapsed_s: float
    poll_count: int
    progress: float | None = None
    status: str | None = None
    typical_duration_s: float | None = None


# ---------------------------------------------------------------------------------------------------
# Policies: (envelope, state, rand) -> raw delay; `next_delay` applies the envelope afterwards


def seed_backoff(env: Envelope, state: PollState, rand: float | None) -> float:
    exponent = min(state.poll_count, 64)  # beyond that the cap has long applied
    return min(env.max_delay_s, env.first_delay_s * env.factor**exponent)


def sdk_fixed(env: Envelope, state: PollState, rand: float | None) -> float:
    spread = 0.5 if rand is None else rand
    return SDK_POLL_S + (spread - 0.5) * SDK_JITTER_S


def stepped(env: Envelope, state: PollState, rand: float | None) -> float:
    if not env.steps:
        return seed_backoff(env, state, rand)
    delay = env.steps[0][1]
    for start, step_delay in env.steps:
        if state.elapsed_s >= start:
            delay = step_delay
    return delay if state.poll_count > 0 else max(delay, env.first_delay_s)


def remaining_estimate(env: Envelope, state: PollState) -> float | None:
    """Seconds until the task is likely done (negative: overdue), or None when nothing is known."""
    if state.status == QUEUED:
        return None
    progress = state.progress
    if progress is not None and progress >= 100:
        return 0.0
    if progress is not None and progress > 0 and state.elapsed_s > 0:
        seen_at = max(state.elapsed_s - env.update_interval_s / 2, 0.0)
        ran = seen_at - env.queue_s if seen_at > env.queue_s else seen_at
        return seen_at + ran * (100.0 - progress) / progress - state.elapsed_s
    typical = state.typical_duration_s if state.typical_duration_s is not None else env.typical_duration_s
    if typical is None:
        return None
    left = typical - state.elapsed_s
    return left / 2 if left > 0 else left


def adaptive(env: Envelope, state: PollState, rand: float | None) -> float:
    floor = max(env.min_delay_s, env.update_interval_s)
    remaining = remaining_estimate(env, state)
    if remaining is None:
        return max(floor, stepped(env, state, rand))
    if env.update_interval_s > 0:  # whole refresh intervals after the snapshot just seen
        span = min(remaining, env.max_delay_s)
        ticks = span / env.update_interval_s
        if not math.isfinite(ticks):  # an interval too small to count in (subnormal): time is continuous
            return max(env.update_interval_s, span)
        return max(1, math.ceil(ticks)) * env.update_interval_s
    if remaining <= 0:
        return max(floor, -remaining / 2)
    return max(floor, remaining + env.completion_margin_s)


POLICY_FUNCTIONS: Mapping[str, Callable[[Envelope, PollState, float | None], float]] = MappingProxyType(
    {"seed_backoff": seed_backoff, "sdk_fixed": sdk_fixed, "stepped": stepped, "adaptive": adaptive}
)


# ---------------------------------------------------------------------------------------------------
# The envelope


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def next_delay(
    envelope: Envelope,
    *,
    elapsed_s: float,
    poll_count: int,
    progress: float | None = None,
    status: str | None = None,
    typical_duration_s: float | None = None,
    rand: float | None = None,
) -> float | None:
    """Seconds until the next poll, or None when the envelope is exhausted (see module docstring)."""
    if poll_count < 0 or math.isnan(elapsed_s):
        raise ValueError("poll_count must be >= 0 and elapsed_s a number")
    elapsed_s = max(elapsed_s, 0.0)  # a clock slightly behind the provider's
    if poll_count >= envelope.max_polls or elapsed_s >= envelope.max_elapsed_s:
        return None
    progress = _finite_or_none(progress)
    state = PollState(
        elapsed_s=elapsed_s,
        poll_count=poll_count,
        progress=None if progress is None else min(max(progress, 0.0), 100.0),
        status=status,
        typical_duration_s=_finite_or_none(typical_duration_s),
    )
    raw = POLICY_FUNCTIONS[envelope.policy](envelope, state, rand)
    delay = min(max(raw, envelope.min_delay_s), envelope.max_delay_s)
    left = envelope.max_elapsed_s - elapsed_s
    return min(delay, max(left, envelope.min_delay_s))


def poll_budget(envelope: Envelope) -> int:
    """How many polls a task that never finishes (and reports nothing) gets under `envelope`."""
    elapsed, polls = 0.0, 0
    while (delay := next_delay(envelope, elapsed_s=elapsed, poll_count=polls)) is not None:
        elapsed += delay
        polls += 1
    return polls


def envelope_for(provider: str) -> Envelope:
    """The default envelope of a provider (its spec's); a `KeyError` names the known ones."""
    return registry.spec(provider).envelope


# Named envelopes for benchmarks and tests: the specs' own, and the RunwayML one under the seed's and
# the SDK's policies.
RUNWAYML = envelope_for("runwayml")
HEYGEN = envelope_for("heygen")
RUNWAYML_SEED = dataclasses.replace(
    RUNWAYML,
    first_delay_s=2.0,
    min_delay_s=2.0,
    max_delay_s=15.0,
    steps=(),
    queue_s=0.0,
    policy="seed_backoff",
)
RUNWAYML_SDK = dataclasses.replace(RUNWAYML_SEED, policy="sdk_fixed")
RUNWAYML_SEED_POLL_BUDGET = poll_budget(RUNWAYML_SEED)

# A snapshot of the registered providers' envelopes (providers registered later: `envelope_for`).
ENVELOPES: Mapping[str, Envelope] = MappingProxyType({s.name: s.envelope for s in registry.specs()})
