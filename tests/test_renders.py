"""RenderHistory: the recent renders a polling worker learns its schedule's prior from."""

from __future__ import annotations

import math
import threading

import pytest

from tasks.renders import AGE_MARGIN_S, RenderHistory
from tasks.schedule import Render


def test_no_prior_until_enough_renders_were_seen():
    assert RenderHistory(min_samples=1).min_samples == 2  # a range needs two renders
    history = RenderHistory(min_samples=3)
    history.record("runwayml", Render(20.0, False))
    history.record("runwayml", Render(30.0, False))
    assert history.prior("runwayml") is None
    history.record("runwayml", Render(40.0, False))
    assert history.prior("runwayml") is not None
    assert history.prior("heygen") is None  # each provider learns on its own


def test_the_prior_is_the_low_and_high_quantiles_and_the_share_of_late_starts():
    history = RenderHistory(size=100, min_samples=20)
    for second in range(1, 101):  # renders of 1..100 s, every fourth one started late
        history.record("runwayml", Render(float(second), second % 4 == 0))
    prior = history.prior("runwayml")
    assert prior.shortest_s == pytest.approx(5.95)
    assert prior.longest_s == pytest.approx(95.05)
    assert prior.late_share == pytest.approx(0.25)
    assert prior.snapshot_age_s is None  # no task told how old its first figure was


def test_the_ages_of_first_figures_are_widened_against_the_bias_of_who_reports_them():
    history = RenderHistory(min_samples=20)
    for _ in range(20):
        history.record("runwayml", Render(30.0, False))  # done at the aimed look: no age
    for i in range(19):
        history.record("runwayml", Render(30.0, False, 1.0 + i / 100))
    assert history.prior("runwayml").snapshot_age_s is None  # too few to say where the grid lies
    history.record("runwayml", Render(30.0, False, 1.0))
    assert history.prior("runwayml").snapshot_age_s == pytest.approx((0.0, 1.18 + AGE_MARGIN_S))


def test_a_render_of_no_finite_length_is_not_learned():
    history = RenderHistory(min_samples=2)
    history.record("runwayml", Render(math.inf, False))
    history.record("runwayml", Render(math.nan, False))
    assert history.prior("runwayml") is None


def test_only_the_most_recent_renders_count():
    history = RenderHistory(size=20, min_samples=20)
    for _ in range(20):
        history.record("runwayml", Render(60.0, True))
    for _ in range(20):
        history.record("runwayml", Render(20.0, False))  # the provider got quicker and stopped throttling
    prior = history.prior("runwayml")
    assert (prior.shortest_s, prior.longest_s, prior.late_share) == (20.0, 20.0, 0.0)


def test_concurrent_polls_may_record_at_once():
    history = RenderHistory(size=10_000, min_samples=2)

    def record() -> None:
        for _ in range(500):
            history.record("runwayml", Render(30.0, False))
            history.prior("runwayml")

    threads = [threading.Thread(target=record) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(history._renders["runwayml"]) == 4000
