"""The polling schedule: envelope properties (Hypothesis), the two default envelopes, the policies."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.schedule import (
    HEYGEN,
    POLICIES,
    RUNWAYML,
    RUNWAYML_SDK,
    RUNWAYML_SEED,
    RUNWAYML_SEED_POLL_BUDGET,
    Envelope,
    Reading,
    Render,
    RenderPrior,
    envelope_for,
    first_look,
    next_delay,
    poll_budget,
    render_seen,
)

# --- properties -------------------------------------------------------------------------------------


@st.composite
def envelopes(draw: st.DrawFn) -> Envelope:
    min_delay = draw(st.floats(0.5, 30))
    first = draw(st.floats(min_delay, min_delay * 3))
    max_delay = draw(st.floats(first, first * 10))
    starts = sorted(draw(st.lists(st.floats(0, 600), max_size=4)))
    return Envelope(
        first_delay_s=first,
        min_delay_s=min_delay,
        max_delay_s=max_delay,
        factor=draw(st.floats(1, 3)),
        max_polls=draw(st.integers(1, 300)),
        max_elapsed_s=draw(st.floats(1, 3600)),
        update_interval_s=draw(st.floats(0, max_delay)),
        steps=tuple((start, draw(st.floats(0.1, 120))) for start in starts),
        typical_duration_s=draw(st.none() | st.floats(1, 1000)),
        render_range_s=draw(st.none() | st.tuples(st.floats(0.1, 100), st.floats(100, 1000))),
        completion_margin_s=draw(st.floats(0, 5)),
        queue_s=draw(st.floats(0, 60)),
        policy=draw(st.sampled_from(POLICIES)),
    )


snapshots = st.fixed_dictionaries(
    {
        "progress": st.none() | st.floats(-10, 110) | st.sampled_from([math.nan, math.inf]),
        "status": st.sampled_from([None, "queued", "processing"]),
        "typical_duration_s": st.none() | st.floats(0, 2000),
        "first_reading": st.none() | st.builds(Reading, st.floats(0, 3000), st.floats(-10, 110)),
        "queued_until_s": st.none() | st.floats(-5, 3000) | st.just(math.nan),
        "prior": st.none()
        | st.builds(
            RenderPrior,
            st.floats(0.1, 100),
            st.floats(100, 1000),
            st.floats(0, 1),
            st.none() | st.tuples(st.floats(0, 10), st.floats(0, 10)),
        ),
        "rand": st.none() | st.floats(0, 1, exclude_max=True),
    }
)


@given(envelopes(), st.floats(-5, 8000), st.integers(0, 400), snapshots)
def test_delay_is_inside_the_envelope_and_none_exactly_past_it(
    env: Envelope, elapsed: float, polls: int, snapshot: dict
):
    delay = next_delay(env, elapsed_s=elapsed, poll_count=polls, **snapshot)
    past = polls >= env.max_polls or elapsed >= env.max_elapsed_s
    if past:
        assert delay is None
    else:
        assert delay is not None
        assert env.min_delay_s <= delay <= env.max_delay_s


@given(envelopes(), st.lists(snapshots, min_size=1, max_size=50))
def test_polls_are_bounded_and_end_by_the_limit(env: Envelope, seen: list[dict]):
    elapsed, polls = 0.0, 0
    while (
        delay := next_delay(env, elapsed_s=elapsed, poll_count=polls, **seen[polls % len(seen)])
    ) is not None:
        elapsed += delay
        polls += 1
    assert polls <= env.max_polls
    assert polls <= math.ceil(env.max_elapsed_s / env.min_delay_s) + 1
    assert elapsed < env.max_elapsed_s + env.min_delay_s


@given(envelopes(), st.floats(0, 3000), st.integers(0, 300), st.floats(0, 1, exclude_max=True))
def test_randomness_only_moves_the_sdk_policy(env: Envelope, elapsed: float, polls: int, rand: float):
    with_rand = next_delay(env, elapsed_s=elapsed, poll_count=polls, rand=rand)
    without = next_delay(env, elapsed_s=elapsed, poll_count=polls)
    if env.policy != "sdk_fixed":
        assert with_rand == without


# --- the seed's RunwayML schedule -------------------------------------------------------------------


def test_seed_backoff_grows_from_2_to_15_seconds():
    delays = [next_delay(RUNWAYML_SEED, elapsed_s=0, poll_count=n) for n in range(7)]
    assert delays == [2.0, 3.0, 4.5, 6.75, 10.125, 15.0, 15.0]


def test_seed_six_minutes_come_long_before_180_polls():
    # Given the seed's backoff, a task that never finishes
    assert RUNWAYML_SEED.max_polls == 180
    # Then polling ends on the 6-minute limit, after 28 polls, the last one at exactly 360 s
    assert RUNWAYML_SEED_POLL_BUDGET == poll_budget(RUNWAYML_SEED) == 28
    elapsed = sum(next_delay(RUNWAYML_SEED, elapsed_s=0, poll_count=n) for n in range(5))
    elapsed += 15.0 * 22 + 3.625  # the last wait is cut to land on the limit
    assert elapsed == 360.0


@pytest.mark.parametrize(
    ("elapsed", "polls", "expected"),
    [(0, 0, 2.0), (350, 27, 10.0), (358, 27, 2.0), (359.5, 27, 2.0), (360, 28, None), (100, 180, None)],
)
def test_runwayml_envelope_limits(elapsed: float, polls: int, expected: float | None):
    assert next_delay(RUNWAYML_SEED, elapsed_s=elapsed, poll_count=polls) == expected


def test_sdk_policy_is_6_plus_or_minus_1_5_seconds():
    assert next_delay(RUNWAYML_SDK, elapsed_s=10, poll_count=2) == 6.0
    assert next_delay(RUNWAYML_SDK, elapsed_s=10, poll_count=2, rand=0.0) == 4.5
    assert next_delay(RUNWAYML_SDK, elapsed_s=10, poll_count=2, rand=0.999) == pytest.approx(7.5, abs=0.01)


# --- HeyGen -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [(0, 10.0), (119, 10.0), (120, 30.0), (299, 30.0), (300, 60.0), (1100, 60.0), (1150, 50.0), (1195, 10.0)],
)
def test_heygen_follows_its_own_advice(elapsed: float, expected: float):
    assert next_delay(HEYGEN, elapsed_s=elapsed, poll_count=1) == expected


def test_heygen_gives_up_after_20_minutes():
    assert next_delay(HEYGEN, elapsed_s=1200, poll_count=30) is None
    assert poll_budget(HEYGEN) == 12 + 6 + 15  # the time limit, not max_polls, ends it


# --- the adaptive policy ----------------------------------------------------------------------------


TRUSTED = RenderPrior(shortest_s=15.0, longest_s=45.0, late_share=0.0)  # no task has started late
AGED = dataclasses.replace(TRUSTED, snapshot_age_s=(1.0, 1.5))


@pytest.mark.parametrize(
    ("snapshot", "expected"),
    [
        ({"elapsed_s": 0, "poll_count": 0}, 16.0),  # no render ends sooner: the first look sees progress
        ({"elapsed_s": 60, "poll_count": 8, "status": "queued"}, 15.0),  # the shortest render, once started
        # one figure, starts not trusted yet: (100 - p) % of a 15-45 s render (or what the figure allows) left
        ({"elapsed_s": 20, "poll_count": 1, "progress": 50}, 10.0),  # 7.5-18 s left: aim at 9.6
        ({"elapsed_s": 40, "poll_count": 2, "progress": 80}, 5.0),  # 3-9 s left: aim at 4.2
        ({"elapsed_s": 40, "poll_count": 2, "progress": 98}, 5.0),  # nearly done: the next refresh
        ({"elapsed_s": 40, "poll_count": 2, "progress": 100}, 5.0),  # done, not yet final
        ({"elapsed_s": 20, "poll_count": 1, "progress": 10}, 20.0),  # 13.5-40.5 s left: aim at 18.9
        ({"elapsed_s": 50, "poll_count": 4, "typical_duration_s": 60}, 5.0),  # half of ~10 s: next refresh
        # starts trusted: it ran from 2 s to a snapshot 0-5 s old
        ({"elapsed_s": 20, "poll_count": 1, "progress": 50, "prior": TRUSTED}, 15.0),  # 13-18 s left
        ({"elapsed_s": 40, "poll_count": 2, "progress": 80, "prior": TRUSTED}, 10.0),  # 8.25-9.5 s left
        # ... and where recent first figures were 1-1.5 s old, 12.5-13 s left (not 9-14 s)
        ({"elapsed_s": 16, "poll_count": 1, "progress": 50, "prior": TRUSTED}, 10.0),
        ({"elapsed_s": 16, "poll_count": 1, "progress": 50, "prior": AGED}, 15.0),
        # ... unless this task was seen queued at 30 s: it started after 25 s, so 12-36 s left
        ({"elapsed_s": 40, "poll_count": 2, "progress": 20, "prior": TRUSTED, "queued_until_s": 30}, 20.0),
        # two figures 10 s apart: 20 % in 10 s, so 40 % takes 20 s more, exactly
        ({"elapsed_s": 26, "poll_count": 2, "progress": 60, "first_reading": Reading(16, 40)}, 20.0),
        ({"elapsed_s": 26.4, "poll_count": 2, "progress": 60, "first_reading": Reading(16, 40)}, 20.0),
    ],
)
def test_adaptive_aims_at_the_estimated_completion(snapshot: dict, expected: float):
    assert next_delay(RUNWAYML, **{"status": "processing", **snapshot}) == expected


@pytest.mark.parametrize(
    ("prior", "expected"),
    [
        (None, 16.0),  # the envelope's own first delay
        (RenderPrior(15.0, 45.0, 0.0), 16.0),  # queue 2 s + 15 s: 1 s after the refresh at 15 s
        (RenderPrior(26.2, 40.0, 0.0), 26.0),  # 28.2 s: 1 s after the refresh at 25 s
        (RenderPrior(1.0, 40.0, 0.0), 5.0),  # never sooner than min_delay_s
    ],
)
def test_the_first_look_comes_when_the_shortest_recent_render_could_end(prior, expected):
    assert first_look(RUNWAYML, prior) == expected
    assert first_look(HEYGEN, prior) == HEYGEN.first_delay_s  # the stepped policy keeps its own


@pytest.mark.parametrize(
    ("first", "last", "queued_until", "done", "expected"),
    [
        # two figures: 20 % per 10 s, so 50 s; 40 % of it ran from 2 s to 22 s, seen at 26 s: 4 s old
        (Reading(26, 40), Reading(36, 60), None, 56, Render(50.0, False, 4.0)),
        (Reading(16, 40), Reading(26, 60), None, 46, Render(50.0, False)),  # 40 % by 16 s: no start at 2 s
        (
            Reading(16, 50),
            None,
            None,
            36,
            Render(35.0, False),
        ),  # one: the end 2.5 s before the look, 50 % left
        (None, None, None, 21, Render(16.5, False)),  # none: from the queue's end to 2.5 s before the look
        (None, None, 40, 61, Render(21.0, True)),  # seen queued at 40 s: started about 37.5 s in, late
    ],
)
def test_a_finished_task_tells_how_long_it_rendered(first, last, queued_until, done, expected):
    seen = render_seen(RUNWAYML, first, last, queued_until, done)
    assert seen.render_s == pytest.approx(expected.render_s)
    assert seen.started_late == expected.started_late
    assert seen.snapshot_age_s == pytest.approx(expected.snapshot_age_s)


@given(st.floats(3, 300), st.floats(0.1, 99.9))
def test_adaptive_waits_whole_refresh_intervals_after_a_snapshot(elapsed: float, progress: float):
    # Given a running task whose provider refreshes it every 5 s
    delay = next_delay(RUNWAYML, elapsed_s=elapsed, poll_count=2, progress=progress, status="processing")
    # Then the next look comes a whole number of refreshes later (unless the time limit cuts it)
    assert delay is not None
    cut = delay == RUNWAYML.max_elapsed_s - elapsed
    assert cut or delay % RUNWAYML.update_interval_s == 0


def test_a_later_estimate_never_waits_longer_for_more_progress():
    delays = [
        next_delay(RUNWAYML, elapsed_s=30, poll_count=1, progress=p, status="processing")
        for p in range(5, 100, 5)
    ]
    assert delays == sorted(delays, reverse=True)


def _simulate(env: Envelope, queued_s: float, run_s: float, update_s: float = 5.0) -> tuple[int, float]:
    """(polls, seconds from completion to the poll that saw it) for a task with linear progress."""
    elapsed, polls, progress, status = 0.0, 0, None, None
    while (
        delay := next_delay(env, elapsed_s=elapsed, poll_count=polls, progress=progress, status=status)
    ) is not None:
        elapsed, polls = elapsed + delay, polls + 1
        if elapsed >= queued_s + run_s:
            return polls, elapsed - queued_s - run_s
        running = elapsed >= queued_s
        status = "processing" if running else "queued"
        updated = queued_s + (elapsed - queued_s) // update_s * update_s  # what the provider last wrote
        progress = 100 * (updated - queued_s) / run_s if running else None
    raise AssertionError("the task outlived the envelope")


def test_adaptive_polls_less_than_both_baselines_and_detects_sooner_than_the_seed():
    cases = [(queued, run) for queued in (0, 3, 10, 30) for run in (12, 20, 30, 45, 60, 90, 120, 180, 240)]
    totals = {}
    for env in (RUNWAYML, RUNWAYML_SEED, RUNWAYML_SDK):
        runs = [_simulate(env, queued, run) for queued, run in cases]
        totals[env.policy] = (sum(p for p, _ in runs), sum(d for _, d in runs) / len(runs))
    assert totals["adaptive"][0] < totals["seed_backoff"][0] < totals["sdk_fixed"][0]
    assert totals["adaptive"][1] < totals["seed_backoff"][1]


# --- construction ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"min_delay_s": 0},
        {"first_delay_s": 1.0},  # below min_delay_s
        {"max_delay_s": 1.0},
        {"factor": 0.5},
        {"max_polls": 0},
        {"max_elapsed_s": 0},
        {"update_interval_s": 40.0},  # above max_delay_s
        {"queue_s": -1.0},
        {"steps": ((60.0, 5.0), (0.0, 5.0))},
        {"policy": "random"},
    ],
)
def test_invalid_envelopes_are_refused(change: dict):
    with pytest.raises(ValueError, match=r"^(need|steps must|unknown policy)"):
        dataclasses.replace(RUNWAYML, **change)


def test_envelopes_are_configurable_and_frozen():
    longer = dataclasses.replace(RUNWAYML, max_elapsed_s=900)
    assert next_delay(longer, elapsed_s=600, poll_count=40, status="queued") == 15.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        RUNWAYML.max_polls = 1  # type: ignore[misc]


def test_envelope_for_names_the_known_providers():
    assert envelope_for("heygen") is HEYGEN
    with pytest.raises(KeyError, match="heygen"):
        envelope_for("sora")


def test_negative_poll_count_is_a_bug():
    with pytest.raises(ValueError, match="poll_count"):
        next_delay(RUNWAYML, elapsed_s=0, poll_count=-1)


@pytest.mark.parametrize(
    "snapshot",
    [
        {"progress": 5e-324},  # a percentage that is zero once divided by 100
        {"progress": 1e-321, "first_reading": Reading(1.0, 9.9e-322)},  # two that are equal once divided
    ],
)
def test_a_progress_figure_too_small_to_divide_by_gives_a_delay_in_the_envelope(snapshot: dict):
    delay = next_delay(RUNWAYML, elapsed_s=20.0, poll_count=2, status="processing", **snapshot)
    assert RUNWAYML.min_delay_s <= delay <= RUNWAYML.max_delay_s


def test_a_refresh_interval_too_small_to_divide_by_still_gives_a_delay_in_the_envelope():
    env = Envelope(
        first_delay_s=1.0,
        min_delay_s=1.0,
        max_delay_s=1.0,
        factor=1.0,
        max_polls=1,
        max_elapsed_s=1.0,
        update_interval_s=5e-324,  # subnormal: 1 s / it overflows to infinity
        typical_duration_s=1.0,
        policy="adaptive",
    )
    assert next_delay(env, elapsed_s=0.0, poll_count=0, rand=0.0) == 1.0
