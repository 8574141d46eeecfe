"""The RunwayML provider against the simulator on loopback: statuses, errors, retry decisions.

Retry and no-retry decisions are proven by counting the requests the simulator received; `sleep` is
recorded instead of slept, and the simulator's clock moves only when a test advances it.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from config import Settings, load_settings
from local.runwayml_sim import ManualClock, RunwayMLSim
from local.simcore import Durations, FaultPlan
from logs import JsonFormatter
from providers.base import (
    AuthenticationFailed,
    ConnectFailed,
    InsufficientCredits,
    InvalidRequest,
    MalformedResponse,
    NotFound,
    OutcomeUnknown,
    Provider,
    ProviderUnavailable,
    RateLimited,
    Status,
    VideoRequest,
)
from providers.runwayml import RunwayMLProvider

KEY = "key_" + "5ec7e75ec7e7" * 10
RENDER_S, QUEUE_S = 10.0, 2.0
TEXT = "/v1/text_to_video"


def env(base_url: str, **extra: str) -> Settings:
    values = {
        "GOOGLE_CLOUD_PROJECT": "cvplus-test",
        "RUNWAYML_API_KEY": KEY,
        "RUNWAYML_BASE_URL": base_url,
        "HTTP_CONNECT_TIMEOUT_SECONDS": "1",
        "HTTP_READ_TIMEOUT_SECONDS": "1",
        "HTTP_MAX_ATTEMPTS": "3",
    }
    return load_settings({**values, **extra})


def request(**overrides: object) -> VideoRequest:
    fields: dict[str, object] = {
        "job_id": "job-1",
        "attempt_id": "job-1-a1",
        "prompt_text": "A CV",
        "duration_s": 5,
    }
    return VideoRequest(**{**fields, **overrides})  # type: ignore[arg-type]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sim(clock: ManualClock) -> Iterator[RunwayMLSim]:
    server = RunwayMLSim(
        clock=clock,
        faults=FaultPlan(hold_s=1.5),
        durations=Durations(RENDER_S, RENDER_S),
        queue_s=QUEUE_S,
        concurrency=1,
        daily_limit=3,
    ).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_provider(settings: Settings, sleeps: list[float]) -> RunwayMLProvider:
    return RunwayMLProvider(settings, sleep=sleeps.append, rand=lambda: 0.0)


@pytest.fixture
def provider(sim: RunwayMLSim, sleeps: list[float]) -> RunwayMLProvider:
    return make_provider(env(sim.base_url), sleeps)


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(JsonFormatter().format(record))  # type: ignore[method-assign]
    logger = logging.getLogger("cvplus.providers.runwayml")
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


# --- the protocol and the happy path ------------------------------------------------------------


def test_the_provider_implements_the_protocol(provider: RunwayMLProvider):
    assert isinstance(provider, Provider)
    assert provider.name == "runwayml"


def test_create_returns_the_task_id_model_and_estimated_cost(provider: RunwayMLProvider, sim: RunwayMLSim):
    result = provider.create(request())
    assert result.task_id in sim.tasks
    assert (result.model, result.estimated_credits, result.estimated_usd) == ("gen4.5", 60, 0.6)


def test_create_with_an_image_uses_the_image_endpoint(provider: RunwayMLProvider, sim: RunwayMLSim):
    provider.create(request(image_url="https://images.example.com/me.png"))
    assert sim.creates == {("image_to_video", "gen4_turbo"): 1}


def test_a_premium_1080p_request_creates_a_veo_task_at_the_nearest_duration(
    provider: RunwayMLProvider, sim: RunwayMLSim
):
    result = provider.create(request(resolution="1080p", quality="premium", duration_s=7))
    assert sim.creates == {("text_to_video", "veo3.1"): 1}
    assert result.estimated_credits == 8 * 40


@pytest.mark.parametrize(("audio", "per_second"), [("true", 40), ("false", 20)])
def test_a_veo_estimate_matches_what_runway_bills_for_the_audio_sent(
    sim: RunwayMLSim, sleeps: list[float], audio: str, per_second: int
):
    provider = make_provider(env(sim.base_url, RUNWAYML_VEO_AUDIO=audio), sleeps)
    asked = request(resolution="1080p", quality="premium", duration_s=8)
    result = provider.create(asked)  # the simulator prices the `audio` it was sent
    assert result.estimated_credits == provider.estimate_cost(asked).credits == 8 * per_second


def test_a_new_task_is_queued(provider: RunwayMLProvider):
    snapshot = provider.get(provider.create(request()).task_id)
    assert (snapshot.status, snapshot.provider_status) == (Status.QUEUED, "PENDING")


def test_a_throttled_task_is_queued(provider: RunwayMLProvider, clock: ManualClock):
    provider.create(request())
    second = provider.create(request()).task_id
    clock.advance(QUEUE_S + 1)
    snapshot = provider.get(second)
    assert (snapshot.status, snapshot.provider_status) == (Status.QUEUED, "THROTTLED")


def test_a_running_task_is_processing_with_percent_progress(provider: RunwayMLProvider, clock: ManualClock):
    task_id = provider.create(request()).task_id
    clock.advance(QUEUE_S + RENDER_S / 2)
    snapshot = provider.get(task_id)
    assert (snapshot.status, snapshot.progress) == (Status.PROCESSING, 50.0)


def test_a_succeeded_task_is_completed_with_output_and_cost(provider: RunwayMLProvider, clock: ManualClock):
    task_id = provider.create(request()).task_id
    clock.advance(QUEUE_S + RENDER_S)
    snapshot = provider.get(task_id)
    assert snapshot.status == Status.COMPLETED
    assert snapshot.output_urls[0].endswith(f"/outputs/{task_id}.mp4")
    assert (snapshot.progress, snapshot.cost_credits, snapshot.cost_usd) == (100.0, 60, 0.6)


def test_a_moderated_task_fails_without_fallback(
    provider: RunwayMLProvider, sim: RunwayMLSim, clock: ManualClock
):
    sim.fail_next("moderation")
    task_id = provider.create(request()).task_id
    clock.advance(QUEUE_S)
    snapshot = provider.get(task_id)
    assert (snapshot.status, snapshot.failure_code) == (Status.FAILED, "SAFETY.INPUT.TEXT")
    assert snapshot.fallback_allowed is False
    assert snapshot.failure_message


def test_a_stuck_task_stays_processing(provider: RunwayMLProvider, sim: RunwayMLSim, clock: ManualClock):
    sim.fail_next("stuck")
    task_id = provider.create(request()).task_id
    clock.advance(100 * RENDER_S)
    assert provider.get(task_id).status == Status.PROCESSING


def test_cancel_of_a_running_task_makes_it_cancelled(provider: RunwayMLProvider, clock: ManualClock):
    task_id = provider.create(request()).task_id
    clock.advance(QUEUE_S + 1)
    provider.cancel(task_id)
    snapshot = provider.get(task_id)
    assert (snapshot.status, snapshot.cost_credits) == (Status.CANCELLED, 60)


def test_cancel_of_an_unknown_task_is_not_found(provider: RunwayMLProvider):
    with pytest.raises(NotFound):
        provider.cancel("no-such-task")


def test_get_of_an_unknown_task_is_not_found_and_not_retried(provider: RunwayMLProvider, sim: RunwayMLSim):
    with pytest.raises(NotFound):
        provider.get("no-such-task")
    assert sim.count("GET", "/v1/tasks/") == 1


def test_get_many_omits_unknown_tasks(provider: RunwayMLProvider):
    task_id = provider.create(request()).task_id
    assert list(provider.get_many([task_id, "no-such-task"])) == [task_id]


# --- local validation: a bad request never costs a round trip -------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"model": "gen2"}, "model"),
        ({"model": "gen4_turbo"}, "image_url"),
        ({"resolution": "1080p", "model": "gen4.5"}, "resolution"),
        ({"aspect_ratio": "1:1"}, "aspect_ratio"),
        ({"duration_s": 12}, "duration_s"),
        ({"duration_s": 3, "model": "veo3.1"}, "duration_s"),
        ({"prompt_text": "\N{GRINNING FACE}" * 501}, "prompt_text"),
        ({"prompt_text": "x" * 1001}, "prompt_text"),
        ({"prompt_text": ""}, "prompt_text"),
        ({"image_url": "http://images.example.com/me.png"}, "image_url"),
        ({"image_url": "https://203.0.113.7/me.png"}, "image_url"),
        ({"image_url": "https://2130706433/me.png"}, "image_url"),
        ({"image_url": "https://localhost/me.png"}, "image_url"),
        ({"image_url": "https://metadata.google.internal/me.png"}, "image_url"),
        ({"image_url": "https://169.254.169.254.nip.io/me.png"}, "image_url"),
        ({"seed": -1}, "seed"),
    ],
)
def test_local_validation_rejects_a_bad_request_without_sending_it(
    provider: RunwayMLProvider, sim: RunwayMLSim, overrides: dict[str, object], field: str
):
    with pytest.raises(InvalidRequest, match=f"^{field}:"):
        provider.create(request(**overrides))
    assert sim.requests == []


def test_an_image_host_off_the_configured_list_is_refused_without_a_request(
    sim: RunwayMLSim, sleeps: list[float]
):
    provider = make_provider(env(sim.base_url, IMAGE_URL_HOSTS=".images.example.com"), sleeps)
    with pytest.raises(InvalidRequest, match=r"^image_url: .*IMAGE_URL_HOSTS"):
        provider.create(request(image_url="https://elsewhere.example.org/me.png"))
    provider.create(request(image_url="https://cdn.images.example.com/me.png"))
    assert sim.count("POST", "/v1/image_to_video") == 1


# --- HTTP errors and the retry decisions ----------------------------------------------------------


def test_a_400_from_the_api_is_invalid_request_with_its_message(sim: RunwayMLSim, sleeps: list[float]):
    provider = make_provider(env(sim.base_url, RUNWAYML_API_VERSION="2023-01-01"), sleeps)
    with pytest.raises(InvalidRequest, match="Unsupported version"):
        provider.create(request())
    assert sim.count("POST", TEXT) == 1


def test_a_400_for_missing_credits_is_insufficient_credits(clock: ManualClock, sleeps: list[float]):
    poor = RunwayMLSim(clock=clock, credit_balance=10).start()
    try:
        with pytest.raises(InsufficientCredits):
            make_provider(env(poor.base_url), sleeps).create(request())
    finally:
        poor.stop()


def test_a_401_is_authentication_failed_without_the_key_in_the_message(sim: RunwayMLSim, sleeps: list[float]):
    provider = make_provider(env(sim.base_url, RUNWAYML_API_KEY="key_not-hex"), sleeps)
    with pytest.raises(AuthenticationFailed) as caught:
        provider.get("any-task")
    assert "key_not-hex" not in str(caught.value.to_dict())
    assert sim.count("GET", "/v1/tasks/") == 1


def test_a_create_refused_with_429_waits_retry_after_and_is_repeated(
    provider: RunwayMLProvider, sim: RunwayMLSim, sleeps: list[float]
):
    sim.fail_next("http_429", method="POST")
    provider.create(request())
    assert sim.count("POST", TEXT) == 2
    assert sleeps == [1.0]


def test_a_429_with_retry_after_beyond_the_cap_is_raised_at_once(
    provider: RunwayMLProvider, sim: RunwayMLSim
):
    for _ in range(3):
        provider.create(request())
    with pytest.raises(RateLimited) as caught:
        provider.create(request())
    assert caught.value.retry_after == 86_400
    assert sim.count("POST", TEXT) == 4


@pytest.mark.parametrize("status", [502, 503])
def test_a_create_refused_with_502_or_503_is_repeated(
    provider: RunwayMLProvider, sim: RunwayMLSim, status: int
):
    sim.fail_next("http_5xx", method="POST", status=status)
    provider.create(request())
    assert sim.count("POST", TEXT) == 2
    assert sum(sim.creates.values()) == 1


@pytest.mark.parametrize("status", [500, 504])
def test_a_create_answered_with_500_or_504_is_outcome_unknown_and_sent_once(
    provider: RunwayMLProvider, sim: RunwayMLSim, status: int
):
    sim.fail_next("http_5xx", method="POST", status=status)
    with pytest.raises(OutcomeUnknown) as caught:
        provider.create(request())
    assert caught.value.http_status == status
    assert sim.count("POST", TEXT) == 1


@pytest.mark.parametrize("fault", ["read_timeout", "reset", "malformed"])
def test_a_create_without_a_readable_answer_is_outcome_unknown_and_sent_once(
    provider: RunwayMLProvider, sim: RunwayMLSim, fault: str
):
    sim.fail_next(fault, method="POST")
    with pytest.raises(OutcomeUnknown):
        provider.create(request())
    assert sim.count("POST", TEXT) == 1


@pytest.mark.parametrize("fault", ["http_5xx", "read_timeout", "reset", "malformed", "http_429"])
def test_a_get_hit_by_a_transient_fault_is_repeated(provider: RunwayMLProvider, sim: RunwayMLSim, fault: str):
    task_id = provider.create(request()).task_id
    sim.fail_next(fault, method="GET")
    assert provider.get(task_id).status == Status.QUEUED
    assert sim.count("GET", "/v1/tasks/") == 2


def test_a_get_that_keeps_failing_with_5xx_is_unavailable_after_the_last_attempt(sim: RunwayMLSim):
    for _ in range(3):
        sim.fail_next("http_5xx", method="GET", status=500)
    provider = make_provider(env(sim.base_url), [])
    with pytest.raises(ProviderUnavailable) as caught:
        provider.get("any-task")
    assert caught.value.http_status == 500
    assert sim.count("GET", "/v1/tasks/") == 3


def test_a_get_that_keeps_answering_garbage_is_malformed_response(sim: RunwayMLSim):
    for _ in range(3):
        sim.fail_next("malformed", method="GET")
    with pytest.raises(MalformedResponse):
        make_provider(env(sim.base_url), []).get("any-task")


def test_a_create_to_a_closed_port_is_connect_failed_and_repeated(closed_port_url: str, sleeps: list[float]):
    with pytest.raises(ConnectFailed):
        make_provider(env(closed_port_url), sleeps).create(request())
    assert len(sleeps) == 2


def test_a_cancel_hit_by_a_5xx_is_repeated(provider: RunwayMLProvider, sim: RunwayMLSim):
    task_id = provider.create(request()).task_id
    sim.fail_next("http_5xx", method="DELETE", status=503)
    provider.cancel(task_id)
    assert sim.count("DELETE", "/v1/tasks/") == 2


# --- cost, health, secrets ------------------------------------------------------------------------


def test_estimate_cost_is_the_configured_rate_times_the_sent_duration(provider: RunwayMLProvider):
    estimate = provider.estimate_cost(request(duration_s=7, resolution="1080p", quality="premium"))
    assert (estimate.credits, estimate.usd) == (320, 3.2)


def test_estimate_cost_sends_no_request(provider: RunwayMLProvider, sim: RunwayMLSim):
    provider.estimate_cost(request())
    assert sim.requests == []


def test_health_reports_balance_limits_and_usage(provider: RunwayMLProvider, sim: RunwayMLSim):
    provider.create(request())
    health = provider.health()
    assert health.reachable is True
    assert health.credit_balance == sim.credit_balance
    assert health.balance_usd == round(sim.credit_balance * 0.01, 4)
    limits = health.limits["gen4.5"]
    assert (limits.max_concurrent, limits.max_daily, limits.used_today) == (1, 3, 1)


def test_health_of_an_unreachable_api_is_a_value_not_an_exception(closed_port_url: str):
    health = make_provider(env(closed_port_url), []).health()
    assert health.reachable is False
    assert "ConnectFailed" in (health.error or "")


def test_health_without_a_configured_key_names_the_variable(sim: RunwayMLSim):
    settings = load_settings({"GOOGLE_CLOUD_PROJECT": "cvplus-test", "RUNWAYML_BASE_URL": sim.base_url})
    health = make_provider(settings, []).health()
    assert health.reachable is False
    assert "RUNWAYML_API_KEY" in (health.error or "")


def test_the_key_is_in_no_repr_and_no_log_line(
    provider: RunwayMLProvider, sim: RunwayMLSim, log_lines: list[str]
):
    sim.fail_next("http_5xx", method="POST", status=500)
    with pytest.raises(OutcomeUnknown):
        provider.create(request())
    provider.create(request())
    assert log_lines
    assert all(KEY not in line for line in [*log_lines, repr(provider)])
