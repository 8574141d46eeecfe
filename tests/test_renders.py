"""RenderHistory: the recent renders a polling worker learns its schedule's prior from."""

from __future__ import annotations

import threading

import pytest

from tasks.renders import RenderHistory


def test_no_prior_until_enough_renders_were_seen():
    assert RenderHistory(min_samples=1).min_samples == 2  # a range needs two renders
    history = RenderHistory(min_samples=3)
    history.record("runwayml", 20.0, False)
    history.record("runwayml", 30.0, False)
    assert history.prior("runwayml") is None
    history.record("runwayml", 40.0, False)
    assert history.prior("runwayml") is not None
    assert history.prior("heygen") is None  # each provider learns on its own


def test_the_prior_is_the_low_and_high_quantiles_and_the_share_of_late_starts():
    history = RenderHistory(size=100, min_samples=20)
    for second in range(1, 101):  # renders of 1..100 s, every fourth one started late
        history.record("runwayml", float(second), second % 4 == 0)
    prior = history.prior("runwayml")
    assert prior.shortest_s == pytest.approx(5.95)
    assert prior.longest_s == pytest.approx(95.05)
    assert prior.late_share == pytest.approx(0.25)


def test_only_the_most_recent_renders_count():
    history = RenderHistory(size=20, min_samples=20)
    for _ in range(20):
        history.record("runwayml", 60.0, True)
    for _ in range(20):
        history.record("runwayml", 20.0, False)  # the provider got quicker and stopped throttling
    prior = history.prior("runwayml")
    assert (prior.shortest_s, prior.longest_s, prior.late_share) == (20.0, 20.0, 0.0)


def test_concurrent_polls_may_record_at_once():
    history = RenderHistory(size=10_000, min_samples=2)

    def record() -> None:
        for _ in range(500):
            history.record("runwayml", 30.0, False)
            history.prior("runwayml")

    threads = [threading.Thread(target=record) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(history._renders["runwayml"]) == 4000
