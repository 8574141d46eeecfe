"""Provider ranking and the circuit breaker: pure functions over explicit state and a given time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers import base, registry
from providers.base import Capabilities
from providers.circuit import (
    CLOSED,
    COUNTING_OUTCOMES,
    CircuitPolicy,
    CircuitState,
    Outcome,
    Phase,
    effective_state,
    outcome_for_error,
    record_outcome,
)
from providers.selection import ProviderState, Ranking, SelectionRequest, rank

T0 = datetime(2026, 1, 1, tzinfo=UTC)
OPEN = CircuitState(Phase.OPEN, 5, opened_until=T0 + timedelta(seconds=30), changed_at=T0)
RUNWAY_CAPS = Capabilities(("gen4.5",), 2, 10, ("16:9",), ("720p",), ("mp4",), 1000, True, True, False)
HEYGEN_TRAITS, RUNWAY_TRAITS = registry.spec("heygen").traits, registry.spec("runwayml").traits


def heygen(**kw) -> ProviderState:
    return ProviderState(
        **{"name": "heygen", "priority": 1, "est_cost_usd": 0.33, "traits": HEYGEN_TRAITS, **kw}
    )


def runwayml(**kw) -> ProviderState:
    return ProviderState(
        **{"name": "runwayml", "priority": 2, "est_cost_usd": 0.60, "traits": RUNWAY_TRAITS, **kw}
    )


def ranked(request=None, hg=None, rw=None) -> Ranking:
    return rank(request or SelectionRequest(), [hg or heygen(), rw or runwayml()], T0)


# -- rankings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        pytest.param(SelectionRequest(), ("heygen", "runwayml"), id="default-heygen-first"),
        pytest.param(SelectionRequest(user_tier="pro"), ("heygen", "runwayml"), id="default-pro"),
        pytest.param(
            SelectionRequest(quality="premium", user_tier="pro"), ("runwayml", "heygen"), id="premium"
        ),
        pytest.param(
            SelectionRequest(quality="premium", user_tier="free"),
            ("heygen", "runwayml"),
            id="free-tier-avoids-the-expensive-premium",
        ),
        pytest.param(
            SelectionRequest(style="energetic", duration_s=5), ("runwayml", "heygen"), id="energetic-clip"
        ),
        pytest.param(
            SelectionRequest(style="energetic", wants_avatar=True, quality="premium", user_tier="pro"),
            ("heygen", "runwayml"),
            id="talking-avatar",
        ),
        pytest.param(SelectionRequest(preference="runwayml"), ("runwayml", "heygen"), id="preference"),
        pytest.param(
            SelectionRequest(wants_avatar=True, preference="runwayml"),
            ("runwayml", "heygen"),
            id="preference-beats-content",
        ),
    ],
)
def test_request_shapes_the_order(request_, expected):
    assert ranked(request_).candidates == expected


def test_an_open_circuit_excludes_the_provider_with_its_reason():
    ranking = ranked(hg=heygen(circuit=OPEN))
    assert ranking.candidates == ("runwayml",)
    assert "circuit open after 5 failures, retry in 30 s" in ranking.excluded["heygen"]


def test_a_preference_never_brings_back_an_excluded_provider():
    ranking = ranked(SelectionRequest(preference="heygen"), hg=heygen(circuit=OPEN))
    assert ranking.candidates == ("runwayml",)


def test_an_expired_open_circuit_is_half_open_and_penalized():
    expired = replace(OPEN, opened_until=T0 - timedelta(seconds=1))
    ranking = ranked(hg=heygen(circuit=expired))
    assert ranking.candidates == ("heygen", "runwayml")
    assert "circuit half-open, on trial after failures (-15)" in ranking.reasons["heygen"]
    assert ranking.scores["heygen"] == ranked().scores["heygen"] - 15


def test_a_provider_that_refused_the_request_is_excluded_with_its_validation_reason():
    ranking = ranked(rw=runwayml(invalid_reason="aspect_ratio 4:3 is not supported"))
    assert ranking.candidates == ("heygen",)
    assert ranking.excluded["runwayml"] == "cannot take this request: aspect_ratio 4:3 is not supported"


def test_a_duration_outside_the_capabilities_excludes():
    ranking = ranked(SelectionRequest(duration_s=30), rw=runwayml(capabilities=RUNWAY_CAPS))
    assert ranking.excluded == {"runwayml": "makes 2-10 s, not 30 s"}


def test_all_excluded_leaves_no_candidate_and_the_earliest_return():
    sooner = replace(OPEN, opened_until=T0 + timedelta(seconds=12))
    ranking = ranked(hg=heygen(circuit=OPEN), rw=runwayml(circuit=sooner))
    assert ranking.candidates == ()
    assert set(ranking.excluded) == {"heygen", "runwayml"}
    assert ranking.retry_after_s == 12.0


def test_nothing_to_wait_for_when_an_exclusion_is_permanent():
    ranking = ranked(
        hg=heygen(invalid_reason="script too long"), rw=runwayml(circuit=OPEN, invalid_reason="no")
    )
    assert ranking.candidates == ()
    assert ranking.retry_after_s is None


def test_every_candidate_has_reasons_and_the_document_is_plain_data():
    ranking = ranked(SelectionRequest(style="energetic", wants_avatar=True))
    assert all(ranking.reasons[name] for name in ranking.candidates)
    assert ranking.reasons["heygen"][0] == "priority 1 (+20)"
    doc = ranking.to_doc()
    assert doc["candidates"] == list(ranking.candidates)
    assert set(doc) == {"candidates", "scores", "reasons", "excluded", "retryAfterS"}
    assert ranking.reasons["heygen"][:2] == ["priority 1 (+20)", "talking avatar requested (+40)"]


def test_ties_go_to_priority_then_name():
    same = {"est_cost_usd": None, "traits": frozenset()}
    states = [ProviderState("y", 4, **same), ProviderState("a", 4, **same), ProviderState("x", 3, **same)]
    ranking = rank(SelectionRequest(), states, T0)
    assert set(ranking.scores.values()) == {0}
    assert ranking.candidates == ("x", "a", "y")


def test_duplicate_providers_are_refused():
    with pytest.raises(ValueError, match="only once"):
        rank(SelectionRequest(), [heygen(), heygen()], T0)


circuits = st.builds(
    CircuitState,
    state=st.sampled_from(Phase),
    consecutive_failures=st.integers(0, 9),
    opened_until=st.just(T0 + timedelta(seconds=10)),
)
states = st.builds(
    ProviderState,
    name=st.sampled_from(["heygen", "runwayml", "other"]),
    priority=st.integers(1, 3),
    circuit=circuits,
    est_cost_usd=st.none() | st.floats(0, 5),
    invalid_reason=st.none() | st.just("no"),
)
requests = st.builds(
    SelectionRequest,
    style=st.sampled_from(["professional", "friendly", "energetic"]),
    quality=st.sampled_from(["standard", "premium"]),
    duration_s=st.integers(1, 20),
    wants_avatar=st.booleans(),
    user_tier=st.sampled_from(["free", "pro"]),
    preference=st.none() | st.sampled_from(["heygen", "runwayml", "other"]),
)


@settings(max_examples=150, deadline=None)
@given(requests, st.lists(states, max_size=3, unique_by=lambda s: s.name))
def test_ranking_is_a_deterministic_permutation_of_the_providers_not_excluded(request, providers):
    ranking = rank(request, providers, T0)
    names = {s.name for s in providers}
    assert sorted(ranking.candidates) == sorted(names - set(ranking.excluded))
    assert not set(ranking.candidates) & set(ranking.excluded)
    assert all(ranking.reasons[n] for n in ranking.candidates)
    assert rank(request, list(reversed(providers)), T0) == ranking


@settings(max_examples=150, deadline=None)
@given(requests, st.sampled_from(["heygen", "runwayml"]), st.floats(0.01, 5), st.floats(0.01, 5))
def test_a_preference_wins_over_everything_but_health(request, preferred, cost_hg, cost_rw):
    request = replace(request, preference=preferred)
    ranking = ranked(request, hg=heygen(est_cost_usd=cost_hg), rw=runwayml(est_cost_usd=cost_rw))
    assert ranking.candidates[0] == preferred


# -- circuit breaker ------------------------------------------------------------------------------

POLICY = CircuitPolicy(failure_threshold=3, cooldown_s=60)


def run(outcomes, state=CLOSED, policy=POLICY, now=T0):
    for outcome in outcomes:
        state = record_outcome(state, outcome, now, policy)
    return state


@pytest.mark.parametrize(
    ("outcomes", "phase", "failures"),
    [
        pytest.param([Outcome.UNAVAILABLE] * 2, Phase.CLOSED, 2, id="below-threshold"),
        pytest.param([Outcome.TIMEOUT, Outcome.RATE_LIMITED, Outcome.NO_CREDITS], Phase.OPEN, 3, id="opens"),
        pytest.param([Outcome.UNAVAILABLE] * 2 + [Outcome.SUCCESS], Phase.CLOSED, 0, id="success-resets"),
        pytest.param(
            [Outcome.UNAVAILABLE, Outcome.CONTENT_REJECTED, Outcome.INVALID_REQUEST, Outcome.UNAVAILABLE],
            Phase.CLOSED,
            2,
            id="neutral-outcomes-neither-count-nor-reset",
        ),
        pytest.param([Outcome.AUTH_FAILED] * 10, Phase.CLOSED, 0, id="auth-does-not-count"),
        pytest.param([Outcome.UNAVAILABLE] * 3 + [Outcome.SUCCESS], Phase.OPEN, 3, id="open-ignores-late"),
    ],
)
def test_circuit_moves(outcomes, phase, failures):
    state = run(outcomes)
    assert (state.state, state.consecutive_failures) == (phase, failures)


def test_the_default_policy_opens_after_five_for_sixty_seconds():
    state = run([Outcome.UNAVAILABLE] * 5, policy=CircuitPolicy())
    assert state.state is Phase.OPEN
    assert state.opened_until == T0 + timedelta(seconds=60)
    assert run([Outcome.UNAVAILABLE] * 4, policy=CircuitPolicy()).state is Phase.CLOSED


def test_after_the_cool_down_it_is_half_open_and_a_success_closes_it():
    opened = run([Outcome.UNAVAILABLE] * 3)
    later = T0 + timedelta(seconds=60)
    assert effective_state(opened, later - timedelta(microseconds=1)).state is Phase.OPEN
    assert effective_state(opened, later).state is Phase.HALF_OPEN
    closed = record_outcome(opened, Outcome.SUCCESS, later, POLICY)
    assert (closed.state, closed.consecutive_failures, closed.changed_at) == (Phase.CLOSED, 0, later)


def test_a_failure_in_half_open_reopens_for_another_cool_down():
    later = T0 + timedelta(seconds=61)
    reopened = record_outcome(run([Outcome.UNAVAILABLE] * 3), Outcome.TIMEOUT, later, POLICY)
    assert reopened.state is Phase.OPEN
    assert reopened.opened_until == later + timedelta(seconds=60)


def test_a_neutral_outcome_in_half_open_keeps_it_on_trial():
    later = T0 + timedelta(seconds=61)
    state = record_outcome(run([Outcome.UNAVAILABLE] * 3), Outcome.CONTENT_REJECTED, later, POLICY)
    assert state.state is Phase.HALF_OPEN


def test_a_slow_success_counts_as_a_timeout_when_the_policy_says_so():
    slow = CircuitPolicy(failure_threshold=1, slow_call_ms=10_000)
    assert record_outcome(CLOSED, Outcome.SUCCESS, T0, slow, latency_ms=12_000).state is Phase.OPEN
    assert record_outcome(CLOSED, Outcome.SUCCESS, T0, slow, latency_ms=800).state is Phase.CLOSED


def test_the_state_survives_a_round_trip_through_a_document():
    state = run([Outcome.UNAVAILABLE] * 3)
    assert CircuitState.from_doc(state.to_doc()) == state
    assert CircuitState.from_doc(None) == CLOSED


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (base.ProviderUnavailable("x"), Outcome.UNAVAILABLE),
        (base.ConnectFailed("x"), Outcome.UNAVAILABLE),
        (base.RateLimited("x"), Outcome.RATE_LIMITED),
        (base.InsufficientCredits("x"), Outcome.NO_CREDITS),
        (base.OutcomeUnknown("x"), Outcome.TIMEOUT),
        (base.ContentRejected("x"), Outcome.CONTENT_REJECTED),
        (base.InvalidRequest("x"), Outcome.INVALID_REQUEST),
        (base.RequestInProgress("x"), Outcome.OTHER),
    ],
)
def test_errors_map_to_outcomes_and_only_fallback_worthy_ones_count(error, outcome):
    assert outcome_for_error(error) is outcome
    assert outcome.counts == error.fallback_allowed


outcomes = st.sampled_from(Outcome)
neutral = st.sampled_from(sorted(set(Outcome) - COUNTING_OUTCOMES - {Outcome.SUCCESS}))
steps = st.lists(st.tuples(outcomes, st.integers(0, 120)), max_size=30)


@settings(max_examples=100, deadline=None)
@given(st.lists(neutral, max_size=40), circuits)
def test_non_counting_failures_never_open_a_circuit(failures, start):
    start = replace(start, state=Phase.CLOSED)
    assert run(failures, state=start).state is Phase.CLOSED


@settings(max_examples=100, deadline=None)
@given(steps)
def test_an_open_circuit_is_always_half_open_once_its_cool_down_is_over(history):
    state, now = CLOSED, T0
    for outcome, gap in history:
        now += timedelta(seconds=gap)
        state = record_outcome(state, outcome, now, POLICY)
        if state.state is Phase.OPEN:
            assert state.opened_until <= now + timedelta(seconds=POLICY.cooldown_s)
            assert effective_state(state, state.opened_until).state is Phase.HALF_OPEN
