"""The polling schedule: how long to wait before looking at a provider task again (pure).

    next_delay(envelope, *, elapsed_s, poll_count, progress=None, status=None,
               typical_duration_s=None, first_reading=None, queued_until_s=None, prior=None,
               rand=None) -> seconds, or None = stop polling

`elapsed_s` is the time since the provider task was created, `poll_count` the polls already made,
`progress` the last reported progress (0-100), `status` the project's status of the last snapshot
("queued" means the provider has not started it). What earlier polls saw: `first_reading` (the first
progress figure and when), `queued_until_s` (the last time the task was still queued). `prior` is
what the provider's recent renders showed (tasks/renders.py; None: the envelope's `render_range_s`,
with starts not trusted). `rand` (0 <= rand < 1) is the only randomness.

Envelope rules (every policy)::

    None   exactly when poll_count >= max_polls or elapsed_s >= max_elapsed_s (the caller times out)
    else   min_delay_s <= delay <= max_delay_s, and a delay that would overshoot max_elapsed_s is
           cut to land on it (never below min_delay_s), so the last look happens at the limit

Policies (`Envelope.policy`)::

    seed_backoff   first_delay_s * factor**poll_count, capped at max_delay_s (the seed's 2 -> 15 s)
    sdk_fixed      6 s +- 1.5 s, as the official runwayml SDK's wait_for_task_output
    stepped        the provider's own advice: (from elapsed_s, delay_s) steps
    adaptive       aims at the task's end from its progress; without a figure it falls back to the
                   envelope's steps or backoff, floored at the update interval (`update_interval_s`)

The adaptive policy (`remaining_range`). The first look comes when the shortest recent render could
end (`first_look`; before any history, `first_delay_s`), 1 s after a whole number of refresh
intervals. Then, from the progress figures:

    two figures     the rate between them gives the end exactly (polls sit whole intervals apart,
                    so the snapshots they saw do too)
    one figure p    if recent tasks have not been starting late, the task ran from `queue_s` to a
                    snapshot 0 to one interval old (or as old as recent first figures were);
                    otherwise it may have started any time since it was last seen queued, and
                    (100 - p) % of a render of the prior's range is left
    p = 100         "any moment": the next refresh
    none            half of what remains of the typical duration (approach it rather than bet on it)

It aims `AIM_AT` (a fifth) into the range of possible ends: a look that comes too early reads a
second figure, from which the next look is exact; one that comes after the end is late.

Where the provider refreshes a task only every `update_interval_s`, its refreshes fall on a fixed
grid: the snapshot just seen is one of them, so the next ones come whole intervals after it. The
adaptive policy then waits a whole number of intervals, the first one that reaches its aim: the poll
lands just after a refresh, so it sees a finished task within one interval of its end (on average
half of one). Without an update interval it aims `completion_margin_s` after the estimated end, and
once overdue it backs off with how late the task is.

Default envelopes (each provider's `ProviderSpec.envelope`, `providers/<name>/__init__.py`)::

    provider  first  min  max  factor  max polls  max elapsed  policy    notes
    runwayml  16 s   5 s  30 s  1.5     180        6 min        adaptive  updates at most every 5 s; 15 s
                                                                          while queued; starts ~2 s in;
                                                                          renders 15-45 s before history
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
    "Reading",
    "Render",
    "RenderPrior",
    "envelope_for",
    "first_look",
    "next_delay",
    "poll_budget",
    "render_seen",
]

SDK_POLL_S = 6.0  # runwayml SDK: POLL_TIME
SDK_JITTER_S = 3.0  # runwayml SDK: POLL_JITTER, spread evenly around POLL_TIME
QUEUED = "queued"


@dataclass(frozen=True)
class Reading:
    """A progress figure (0-100) a poll saw, and when (seconds since the task was created)."""

    elapsed_s: float
    progress: float


@dataclass(frozen=True)
class RenderPrior:
    """What a provider's recent tasks showed (`RenderHistory`): how long a render takes, shortest and
    longest (low and high quantiles), and the share of tasks that started late (seen still queued
    after the usual queue)."""

    shortest_s: float
    longest_s: float
    late_share: float
    snapshot_age_s: tuple[float, float] | None = None  # how old a first figure's snapshot was


@dataclass(frozen=True)
class Render:
    """What one finished task says of renders (`render_seen`)."""

    render_s: float
    started_late: bool
    snapshot_age_s: float | None = None  # how old the first figure's snapshot was, where known


@dataclass(frozen=True)
class PollState:
    """What is known when the next delay is chosen."""

    elapsed_s: float
    poll_count: int
    progress: float | None = None
    status: str | None = None
    typical_duration_s: float | None = None
    first_reading: Reading | None = None  # the first progress figure an earlier poll saw
    queued_until_s: float | None = None  # the last poll that saw the task queued
    prior: RenderPrior | None = None


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


LATE_SHARE_TRUSTED = 0.02  # below it, a task seen running is taken to have started after `queue_s`
LOOK_AFTER_REFRESH_S = 1.0  # a first look this long after a whole number of refresh intervals
AIM_AT = 0.2  # where in the range of possible ends the aimed look goes (0: the earliest possible)


def default_prior(env: Envelope) -> RenderPrior | None:
    """The envelope's own prior, before any history: its render range, and starts not trusted."""
    if env.render_range_s is None:
        return None
    shortest, longest = env.render_range_s
    return RenderPrior(shortest, longest, late_share=1.0)


def first_look(env: Envelope, prior: RenderPrior | None) -> float:
    """When to look first (adaptive policy): when the prior's shortest render could end; else, and
    for the other policies, `first_delay_s`."""
    if prior is None or env.policy != "adaptive":
        return env.first_delay_s
    earliest_end = env.queue_s + prior.shortest_s
    if env.update_interval_s > 0:  # just after a refresh, should the provider's grid start at the create
        earliest_end = min(earliest_end, _grid_floor(env, earliest_end) + LOOK_AFTER_REFRESH_S)
    return max(env.min_delay_s, earliest_end)


def _grid_floor(env: Envelope, elapsed: float) -> float:
    ticks = math.floor(elapsed / env.update_interval_s)
    return ticks * env.update_interval_s if math.isfinite(ticks) else elapsed


def _span(env: Envelope, gap: float) -> float:
    """Time between two snapshots seen by polls `gap` apart: whole refresh intervals where the
    provider refreshes on a grid (polls are aimed whole intervals apart; dispatch adds a little)."""
    interval = env.update_interval_s
    if interval <= 0 or gap < interval / 2:
        return gap
    whole = round(gap / interval) * interval
    return whole if math.isfinite(whole) else gap


def remaining_range(env: Envelope, state: PollState) -> tuple[float, float] | None:
    """(earliest, latest) seconds from the snapshot just seen to the task's end; None when unknown.

    Two figures a whole number of refreshes apart give the rate, hence the end exactly. One figure
    p gives it from when the task started: after `queue_s` when the prior trusts that (the snapshot
    is 0 to one refresh old, or as old as recent first figures were), else anywhere between then
    and a start that leaves the prior's shortest render, and the end between (100 - p) % of the
    prior's shortest and longest renders.
    """
    if state.status == QUEUED or state.progress is None:
        return None
    p = state.progress / 100.0
    if p <= 0:  # none yet (or a figure too small to divide by)
        return None
    if p >= 1.0:
        return 0.0, 0.0
    first = state.first_reading
    p1 = first.progress / 100.0 if first is not None else 0.0
    if first is not None and 0 < p1 < p and state.elapsed_s > first.elapsed_s:
        span = _span(env, state.elapsed_s - first.elapsed_s)
        exact = (1.0 - p) * span / (p - p1)
        return exact, exact
    left = (1.0 - p) / p
    prior = state.prior or default_prior(env)
    elapsed, interval = state.elapsed_s, env.update_interval_s
    if prior is None or (state.queued_until_s is None and prior.late_share < LATE_SHARE_TRUSTED):
        youngest, oldest = (prior.snapshot_age_s if prior else None) or (0.0, interval)
        oldest = min(oldest, interval) if interval > 0 else oldest  # never older than one refresh
        ran_least, ran_most = elapsed - oldest - env.queue_s, elapsed - youngest - env.queue_s
        return left * max(0.0, ran_least), left * max(0.0, ran_most)
    started_by = (
        env.queue_s if state.queued_until_s is None else max(env.queue_s, state.queued_until_s - interval)
    )
    longest = max(prior.shortest_s, min(prior.longest_s, (elapsed - started_by) / p))
    return (1.0 - p) * prior.shortest_s, (1.0 - p) * longest


def remaining_estimate(env: Envelope, state: PollState) -> float | None:
    """Seconds until the task is likely done (negative: overdue), or None when nothing is known:
    `AIM_AT` into the range of possible ends; without a progress figure, half of what remains of
    the typical duration (durations spread, so approach it rather than bet on it)."""
    if state.status == QUEUED:
        return None
    span = remaining_range(env, state)
    if span is not None:
        earliest, latest = span
        return earliest + AIM_AT * (latest - earliest)
    typical = state.typical_duration_s if state.typical_duration_s is not None else env.typical_duration_s
    if typical is None:
        return None
    left = typical - state.elapsed_s
    return left / 2 if left > 0 else left


def render_seen(
    env: Envelope, first: Reading | None, last: Reading | None, queued_until_s: float | None, done_s: float
) -> Render:
    """What a task first seen finished `done_s` after its creation says of renders. Its length: from
    two figures, exactly; from one, taking the end as half a refresh before the look that saw it;
    from none, a render that began after `queue_s`. Two figures of a task that started on time also
    tell how old the first one's snapshot was (where the provider's refresh grid lies)."""
    interval = env.update_interval_s
    late = queued_until_s is not None and queued_until_s > env.queue_s + interval
    started = max(env.queue_s, (queued_until_s or 0.0) - interval / 2)
    if first is not None and last is not None and 0 < first.progress < last.progress < 100:
        render = _span(env, last.elapsed_s - first.elapsed_s) * 100.0 / (last.progress - first.progress)
        age = first.elapsed_s - env.queue_s - render * first.progress / 100.0
        known = not late and queued_until_s is None and 0.0 <= age <= interval
        return Render(render, late, age if known else None)
    seen = last if last is not None and 0 < last.progress < 100 else first
    if seen is not None and 0 < seen.progress < 100:
        to_end = max(_span(env, done_s - seen.elapsed_s) - interval / 2, 0.0)
        return Render(to_end * 100.0 / (100.0 - seen.progress), late)
    return Render(max(done_s - interval / 2 - started, 0.0), late)


def adaptive(env: Envelope, state: PollState, rand: float | None) -> float:
    floor = max(env.min_delay_s, env.update_interval_s)
    if state.poll_count == 0 and state.progress is None and state.status is None:
        return first_look(env, state.prior)
    remaining = remaining_estimate(env, state)
    if remaining is None:
        return max(floor, stepped(env, state, rand))
    if env.update_interval_s > 0:  # whole refresh intervals after the snapshot just seen
        span = min(remaining, env.max_delay_s)
        ticks = span / env.update_interval_s
        if not math.isfinite(ticks):  # an interval too small to count in (subnormal): time is continuous
            return max(env.update_interval_s, span)
        return max(1, math.ceil(ticks - 1e-9)) * env.update_interval_s
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
    first_reading: Reading | None = None,
    queued_until_s: float | None = None,
    prior: RenderPrior | None = None,
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
        first_reading=first_reading,
        queued_until_s=_finite_or_none(queued_until_s),
        prior=prior,
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
