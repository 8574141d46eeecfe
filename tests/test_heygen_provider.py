"""The HeyGen provider against the HeyGen simulator on loopback: every status, every error, retries.

Retry decisions are proven by counting requests on the simulator side; retries sleep through an
injected no-op. The simulator runs on a hand-moved clock, so no test waits for a render.
"""

from __future__ import annotations

import threading
import time
import typing
from collections.abc import Iterator

import pytest
import requests

from config import ConfigError, Settings, load_settings
from local.heygen_sim import HeyGenSim
from local.procs import free_port
from local.simcore import REQUEST_FAULTS, Durations, FaultPlan, ManualClock
from providers.base import (
    AuthenticationFailed,
    ConnectFailed,
    InsufficientCredits,
    InvalidRequest,
    MalformedResponse,
    NotFound,
    Provider,
    ProviderUnavailable,
    RateLimited,
    RequestInProgress,
    Status,
    VideoRequest,
)
from providers.heygen import (
    HeyGenProvider,
    create_body,
    error_from_response,
    idempotency_key,
    snapshot_from_video,
)
from providers.heygen.mapping import USD_PER_SECOND, health_from_user

KEY = "sim-heygen-key"
QUEUE_S, RENDER_S = 20.0, 300.0
DONE = QUEUE_S + RENDER_S + 1


class ScriptedFaults(FaultPlan):
    """Request faults in a fixed order (then none): the first create's answer is lost, the next is not."""

    def __init__(self, *script: str) -> None:
        super().__init__(hold_s=0.5)
        self.script = list(script)

    def draw(self, kinds: tuple[str, ...]) -> str | None:
        if kinds == REQUEST_FAULTS and self.script:
            return self.script.pop(0)
        return None


def start_sim(**options) -> HeyGenSim:
    options.setdefault("clock", ManualClock())
    return HeyGenSim(durations=Durations(RENDER_S, RENDER_S), queue_s=QUEUE_S, **options).start()


def make_provider(sim: HeyGenSim, *, sleep=lambda _s: None, session_factory=None, **env) -> HeyGenProvider:
    environ = {
        "GOOGLE_CLOUD_PROJECT": "p1",
        "HEYGEN_API_KEY": KEY,
        "HEYGEN_BASE_URL": sim.base_url,
        "HEYGEN_AVATAR_ID": "look_1",
        "HTTP_CONNECT_TIMEOUT_SECONDS": "1",
        "HTTP_READ_TIMEOUT_SECONDS": "0.25",
        "HTTP_MAX_ATTEMPTS": "3",
    } | env
    return HeyGenProvider(load_settings(environ), sleep=sleep, session_factory=session_factory)


def video_request(**changes) -> VideoRequest:
    fields = {"job_id": "job-1", "attempt_id": "job-1:1", "prompt_text": "p", "script": "Hello, I am Ada."}
    return VideoRequest(**(fields | changes))


@pytest.fixture
def sim() -> Iterator[HeyGenSim]:
    server = start_sim()
    yield server
    server.stop()


@pytest.fixture
def provider(sim: HeyGenSim) -> HeyGenProvider:
    return make_provider(sim)


# -- statuses ---------------------------------------------------------------------------------------


def test_provider_implements_the_protocol(provider):
    assert isinstance(provider, Provider)
    assert provider.capabilities.idempotent_create
    assert not provider.capabilities.supports_cancel


def test_new_video_is_queued_with_no_progress(sim, provider):
    snapshot = provider.get(provider.create(video_request()).task_id)
    assert (snapshot.status, snapshot.provider_status, snapshot.progress) == (Status.QUEUED, "pending", 0)


def test_rendering_video_is_processing(sim, provider):
    video_id = provider.create(video_request()).task_id
    sim.clock.t = QUEUE_S + 1
    assert provider.get(video_id).status is Status.PROCESSING


def test_finished_video_is_completed_with_video_gif_and_thumbnail_urls(sim, provider):
    video_id = provider.create(video_request()).task_id
    sim.clock.t = DONE
    snapshot = provider.get(video_id)
    assert snapshot.status is Status.COMPLETED
    assert snapshot.progress == 100
    assert snapshot.output_urls == (f"{sim.base_url}/media/{video_id}.mp4",)
    assert snapshot.gif_url
    assert snapshot.thumbnail_url
    assert requests.get(snapshot.output_urls[0], timeout=5).content[4:8] == b"ftyp"


def test_moderated_video_fails_without_fallback():
    sim = start_sim(faults=FaultPlan(rates={"moderation": 1.0}))
    try:
        provider = make_provider(sim)
        video_id = provider.create(video_request()).task_id
        sim.clock.t = DONE
        snapshot = provider.get(video_id)
    finally:
        sim.stop()
    assert snapshot.status is Status.FAILED
    assert snapshot.failure_code == "content_moderation_rejected"
    assert snapshot.fallback_allowed is False


def test_failure_without_a_content_code_allows_fallback():
    snapshot = snapshot_from_video("v1", {"status": "failed", "failure_code": "internal_error"})
    assert snapshot.status is Status.FAILED
    assert snapshot.fallback_allowed is True


def test_unknown_status_is_processing_not_a_crash():
    snapshot = snapshot_from_video("v1", {"status": "rendering_v2"})
    assert (snapshot.status, snapshot.provider_status) == (Status.PROCESSING, "rendering_v2")


def test_stuck_video_stays_processing():
    sim = start_sim(faults=FaultPlan(rates={"stuck": 1.0}))
    try:
        provider = make_provider(sim)
        video_id = provider.create(video_request()).task_id
        sim.clock.t = DONE * 100
        assert provider.get(video_id).status is Status.PROCESSING
    finally:
        sim.stop()


# -- create -----------------------------------------------------------------------------------------


def test_create_sends_the_avatar_script_callback_and_idempotency_key(sim):
    sent: list[requests.PreparedRequest] = []

    def recording_session() -> requests.Session:
        session = requests.Session()
        session.hooks["response"].append(lambda response, **_: sent.append(response.request))
        return session

    provider = make_provider(sim, session_factory=recording_session, HEYGEN_VOICE_ID="voice_9")
    provider.create(video_request(aspect_ratio="9:16", resolution="1080p"))
    assert sent[0].headers["Idempotency-Key"] == "job-1:1"
    assert sent[0].headers["X-Api-Key"] == KEY
    assert b'"callback_id": "job-1"' in sent[0].body
    assert b'"voice_id": "voice_9"' in sent[0].body
    assert b'"aspect_ratio": "9:16"' in sent[0].body
    assert b'"type": "avatar"' in sent[0].body


def test_attempt_id_outside_the_key_alphabet_is_hashed_into_a_valid_key():
    key = idempotency_key("job 1/attempt #2")
    assert key.startswith("sha256:")
    assert len(key) == 71
    assert key == idempotency_key("job 1/attempt #2")


def test_empty_script_falls_back_to_the_prompt_text():
    assert create_body(video_request(script="", prompt_text="Prompt"), "look", None)["script"] == "Prompt"


def test_missing_avatar_setting_fails_before_any_request(sim):
    provider = make_provider(sim, HEYGEN_AVATAR_ID="")
    with pytest.raises(ConfigError, match="HEYGEN_AVATAR_ID"):
        provider.create(video_request())
    assert sim.requests == []


def test_script_over_5000_characters_is_refused_before_any_request(sim, provider):
    with pytest.raises(InvalidRequest, match="script"):
        provider.create(video_request(script="a" * 5001))
    assert sim.requests == []


def test_unsupported_aspect_ratio_is_refused_naming_the_field(provider):
    with pytest.raises(InvalidRequest, match="aspect_ratio"):
        provider.validate(video_request(aspect_ratio="4:3"))


def test_an_input_image_is_refused_naming_image_url_before_any_request(sim, provider):
    with pytest.raises(InvalidRequest, match=r"^image_url:"):
        provider.create(video_request(image_url="https://images.example.com/me.png"))
    assert sim.requests == []


def test_same_attempt_twice_returns_the_same_video(sim, provider):
    first = provider.create(video_request())
    second = provider.create(video_request())
    assert first.task_id == second.task_id
    assert len(sim.videos) == 1


@pytest.mark.parametrize("fault", ["read_timeout", "reset", "malformed"])
def test_create_whose_answer_is_lost_is_retried_with_the_same_key_and_makes_one_video(fault):
    sim = start_sim(faults=ScriptedFaults(fault))
    try:
        result = make_provider(sim).create(video_request())
        assert sim.count("POST", "/v3/videos") == 2
        assert list(sim.videos) == [result.task_id]
        assert sim.videos_by_key == {"job-1:1": 1}
    finally:
        sim.stop()


def test_create_while_the_same_key_is_in_flight_raises_request_in_progress():
    sim = start_sim(create_delay_s=1.0)
    try:
        first = threading.Thread(
            target=make_provider(sim, HTTP_READ_TIMEOUT_SECONDS="5").create, args=(video_request(),)
        )
        first.start()
        wait_for(lambda: sim.in_flight() == 1)
        with pytest.raises(RequestInProgress) as caught:
            make_provider(sim, HTTP_MAX_ATTEMPTS="1").create(video_request())
        first.join()
    finally:
        sim.stop()
    assert caught.value.retryable
    assert not caught.value.fallback_allowed


def test_create_retried_after_request_in_progress_returns_the_original_video():
    sim = start_sim(create_delay_s=1.0)
    try:
        provider = make_provider(sim, sleep=lambda _s: wait_for(lambda: sim.in_flight() == 0))
        first = threading.Thread(
            target=make_provider(sim, HTTP_READ_TIMEOUT_SECONDS="5").create, args=(video_request(),)
        )
        first.start()
        wait_for(lambda: sim.in_flight() == 1)
        result = provider.create(video_request())
        first.join()
    finally:
        sim.stop()
    assert list(sim.videos) == [result.task_id]
    assert sim.replays["job-1:1"] >= 1


# -- errors -----------------------------------------------------------------------------------------


def test_rejected_key_is_authentication_failed_and_not_retried(sim):
    with pytest.raises(AuthenticationFailed):
        make_provider(sim, HEYGEN_API_KEY="wrong").create(video_request())
    assert sim.count("POST", "/v3/videos") == 1


def test_empty_wallet_is_insufficient_credits_with_fallback_and_not_retried():
    sim = start_sim(balance_usd=0.0)
    try:
        with pytest.raises(InsufficientCredits) as caught:
            make_provider(sim).create(video_request())
        assert sim.count("POST", "/v3/videos") == 1
    finally:
        sim.stop()
    assert caught.value.fallback_allowed
    assert caught.value.code == "insufficient_credit"


def test_unknown_avatar_is_not_found_and_not_retried():
    sim = start_sim(avatars=frozenset({"someone_else"}))
    try:
        with pytest.raises(NotFound) as caught:
            make_provider(sim).create(video_request())
        assert sim.count("POST", "/v3/videos") == 1
    finally:
        sim.stop()
    assert caught.value.code == "avatar_not_found"


def test_unknown_video_is_not_found(sim, provider):
    with pytest.raises(NotFound):
        provider.get("no-such-video")
    assert sim.count("GET", "/v3/videos/") == 1


@pytest.mark.parametrize("code", ["validation_error", "invalid_parameter", "download_failed"])
def test_bad_input_codes_are_invalid_request(code):
    error = error_from_response(400, {"error": {"code": code, "message": "script is too long"}})
    assert isinstance(error, InvalidRequest)
    assert error.code == code
    assert "script is too long" in error.message


def test_error_body_that_is_not_v3_json_still_maps_by_status():
    assert isinstance(error_from_response(503, "<html>"), ProviderUnavailable)


def test_over_concurrency_is_rate_limited_after_retrying_with_retry_after():
    sim = start_sim(max_concurrent=1, concurrency_retry_after_s=5)
    waits: list[float] = []
    try:
        provider = make_provider(sim, sleep=waits.append)
        provider.create(video_request(attempt_id="a1"))
        with pytest.raises(RateLimited) as caught:
            provider.create(video_request(attempt_id="a2"))
        assert sim.count("POST", "/v3/videos") == 1 + 3
    finally:
        sim.stop()
    assert caught.value.retry_after == 5
    assert waits == [5, 5]


def test_retry_after_beyond_the_cap_is_not_waited_for():
    sim = start_sim(max_concurrent=1, concurrency_retry_after_s=120)
    try:
        provider = make_provider(sim)
        provider.create(video_request(attempt_id="a1"))
        with pytest.raises(RateLimited):
            provider.create(video_request(attempt_id="a2"))
        assert sim.count("POST", "/v3/videos") == 1 + 1
    finally:
        sim.stop()


def test_server_errors_are_retried_then_unavailable_with_fallback():
    sim = start_sim(faults=FaultPlan(rates={"http_5xx": 1.0}))
    try:
        with pytest.raises(ProviderUnavailable) as caught:
            make_provider(sim).create(video_request())
        assert sim.count("POST", "/v3/videos") == 3
        assert sim.videos == {}
    finally:
        sim.stop()
    assert caught.value.fallback_allowed


def test_read_timeout_on_a_status_read_is_retried_then_unavailable():
    sim = start_sim(faults=FaultPlan(rates={"read_timeout": 1.0}, hold_s=0.5))
    try:
        with pytest.raises(ProviderUnavailable):
            make_provider(sim).get("v1")
        assert sim.count("GET", "/v3/videos/") == 3
    finally:
        sim.stop()


def test_malformed_status_answer_is_retried_then_malformed_response():
    sim = start_sim(faults=FaultPlan(rates={"malformed": 1.0}))
    try:
        with pytest.raises(MalformedResponse):
            make_provider(sim).get("v1")
        assert sim.count("GET", "/v3/videos/") == 3
    finally:
        sim.stop()


def test_refused_connection_is_connect_failed(sim):
    provider = make_provider(sim, HEYGEN_BASE_URL=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ConnectFailed):
        provider.get("v1")


# -- bulk, cancel, health, cost ---------------------------------------------------------------------


def test_bulk_status_of_more_than_100_ids_is_read_in_chunks_of_100(sim, provider):
    made = [provider.create(video_request(attempt_id=f"a{i}")).task_id for i in range(3)]
    snapshots = provider.get_many(made + [f"unknown-{i}" for i in range(247)])
    assert sim.count("GET", "/v3/videos/statuses") == 3
    assert set(snapshots) == set(made)
    assert {s.status for s in snapshots.values()} == {Status.QUEUED}


def test_bulk_status_of_a_finished_video_carries_its_urls(sim, provider):
    video_id = provider.create(video_request()).task_id
    sim.clock.t = DONE
    snapshot = provider.get_many([video_id])[video_id]
    assert snapshot.status is Status.COMPLETED
    assert snapshot.output_urls


def test_cancel_is_a_no_op_that_sends_nothing(sim, provider):
    provider.cancel("v1")
    assert sim.requests == []


def test_health_reports_the_wallet_balance_after_a_completed_video(sim, provider):
    provider.create(video_request(script="one two three four five six seven eight nine ten"))
    sim.clock.t = DONE
    health = provider.health()
    assert health.reachable
    assert health.latency_ms is not None
    assert health.balance_usd == pytest.approx(1000.0 - 4.0 * 0.0667)


V3_USER_ANSWERS = [  # `GET /v3/users/me` as v3 answers it, by billing type
    ({"billing_type": "usage_based", "usage_based": {"remaining_credits": 120}}, 120.0, None),
    (
        {
            "billing_type": "subscription",
            "subscription": {"credits": {"plan": {"remaining": 30}, "add_on": {"remaining": 5.5}}},
        },
        35.5,
        None,
    ),
    ({"billing_type": "wallet", "wallet": {"currency": "usd", "remaining_balance": 12.5}}, None, 12.5),
    ({"billing_type": "wallet", "wallet": {"currency": "credits", "remaining_balance": 900}}, 900.0, None),
    ({"billing_type": "wallet", "wallet": {"remaining_balance": 7}}, None, None),  # never assume USD
]


@pytest.mark.parametrize(("data", "credits", "usd"), V3_USER_ANSWERS)
def test_health_reads_credits_and_the_wallet_by_its_currency(data, credits, usd):
    health = health_from_user({"data": {"username": "ada", **data}}, latency_ms=3.0)
    assert (health.credit_balance, health.balance_usd) == (credits, usd)


@pytest.mark.parametrize("billing", ["credits_wallet", "usage_based", "subscription"])
def test_health_reports_credits_not_usd_from_the_simulators_v3_answer(billing):
    sim = start_sim(billing=billing)
    try:
        health = make_provider(sim).health()
    finally:
        sim.stop()
    assert (health.reachable, health.credit_balance, health.balance_usd) == (True, 1000.0, None)


@pytest.mark.parametrize(
    ("env", "usd_per_second"),
    [
        ({}, 0.0667),  # a digital twin (the default) at 720p/1080p
        ({"HEYGEN_AVATAR_TYPE": "photo_avatar"}, 0.05),
        ({"HEYGEN_AVATAR_TYPE": "studio_avatar"}, 0.0667),
        ({"HEYGEN_AVATAR_TYPE": "photo_avatar", "HEYGEN_USD_PER_SECOND": "0.1"}, 0.1),  # an override
    ],
)
def test_the_price_follows_the_avatar_type_unless_overridden(sim, env, usd_per_second):
    provider = make_provider(sim, **env)
    estimate = provider.estimate_cost(video_request(script="word " * 150, duration_s=5))
    assert estimate.usd == pytest.approx(60 * usd_per_second)


def test_an_unknown_avatar_type_names_the_variable():
    with pytest.raises(ConfigError, match="HEYGEN_AVATAR_TYPE"):
        load_settings({"GOOGLE_CLOUD_PROJECT": "p1", "HEYGEN_AVATAR_TYPE": "cartoon"})


def test_every_avatar_type_the_settings_accept_has_a_price():
    avatar_type = typing.get_type_hints(Settings)["heygen_avatar_type"]
    assert set(typing.get_args(avatar_type)) == set(USD_PER_SECOND)


def test_health_never_raises_and_never_shows_the_key(sim):
    health = make_provider(sim, HEYGEN_API_KEY="hg-secret-123").health()
    assert not health.reachable
    assert "401" in (health.error or "")
    assert "hg-secret-123" not in health.error


def test_key_never_appears_in_repr_or_errors(sim):
    provider = make_provider(sim, HEYGEN_API_KEY="hg-secret-123")
    with pytest.raises(AuthenticationFailed) as caught:
        provider.get("v1")
    assert "hg-secret-123" not in repr(provider) + str(caught.value) + repr(caught.value.to_dict())


def test_cost_is_spoken_length_at_150_words_a_minute_times_the_price(provider):
    estimate = provider.estimate_cost(video_request(script="word " * 300, duration_s=5))
    assert estimate.usd == pytest.approx(120 * 0.0667)
    assert estimate.credits is None


def test_cost_is_never_below_the_requested_duration(provider):
    assert provider.estimate_cost(video_request(script="Hi", duration_s=30)).usd == pytest.approx(30 * 0.0667)


def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_a_completed_video_costs_its_duration_at_the_configured_price():
    snapshot = snapshot_from_video(
        "v1", {"status": "completed", "duration": 30, "video_url": "https://x"}, 0.05
    )
    assert snapshot.cost_usd == 1.5


def test_a_failed_render_costs_nothing():
    assert snapshot_from_video("v1", {"status": "failed"}, 0.05).cost_usd == 0.0
