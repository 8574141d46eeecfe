"""Pure mapping between the project's types and RunwayML's wire format: no server, no network."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import requests
from requests.adapters import BaseAdapter

import providers.runwayml as runwayml
from config import load_settings
from providers import prompts
from providers.base import (
    AuthenticationFailed,
    InsufficientCredits,
    InvalidRequest,
    MalformedResponse,
    ModelLimits,
    NotFound,
    OutcomeUnknown,
    ProviderUnavailable,
    RateLimited,
    Status,
    VideoRequest,
    is_terminal,
)
from providers.runwayml import (
    RunwayMLProvider,
    choose_model,
    error_for_response,
    failure_allows_fallback,
    health_from_organization,
    request_body,
    snapshot_from_task,
    wire_duration,
)

USD = 0.01


def request(**overrides: object) -> VideoRequest:
    fields: dict[str, object] = {"job_id": "j", "attempt_id": "j-1", "prompt_text": "A CV", "duration_s": 5}
    return VideoRequest(**{**fields, **overrides})  # type: ignore[arg-type]


def task(status: str, **fields: object) -> dict[str, object]:
    return {"id": "t-1", "createdAt": "2026-01-01T00:00:00.000Z", "status": status, **fields}


def test_the_public_surface_is_declared():
    assert set(runwayml.__all__) <= set(dir(runwayml))


# --- model choice and request body ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "model"),
    [
        ({}, "gen4.5"),
        ({"quality": "premium"}, "gen4.5"),
        ({"resolution": "1080p"}, "veo3.1_fast"),
        ({"resolution": "1080p", "quality": "premium"}, "veo3.1"),
        ({"image_url": "https://x.example/a.png"}, "gen4_turbo"),
        ({"image_url": "https://x.example/a.png", "quality": "premium"}, "gen4.5"),
        ({"model": "veo3.1", "resolution": "720p"}, "veo3.1"),
    ],
)
def test_choose_model_follows_the_request(overrides: dict[str, object], model: str):
    assert choose_model(request(**overrides)) == model


@pytest.mark.parametrize(("asked", "sent"), [(4, 4), (5, 6), (6, 6), (7, 8), (8, 8), (9, 8), (10, 8)])
def test_veo_durations_round_to_the_nearest_allowed_value(asked: int, sent: int):
    assert wire_duration("veo3.1", asked) == sent


def test_gen_durations_are_sent_as_asked():
    assert wire_duration("gen4.5", 7) == 7


@pytest.mark.parametrize(
    ("aspect", "resolution", "ratio"),
    [
        ("16:9", "720p", "1280:720"),
        ("9:16", "720p", "720:1280"),
        ("16:9", "1080p", "1920:1080"),
        ("9:16", "1080p", "1080:1920"),
    ],
)
def test_aspect_ratio_and_resolution_become_the_ratio(aspect: str, resolution: str, ratio: str):
    body = request_body(request(aspect_ratio=aspect, resolution=resolution), "veo3.1")
    assert body["ratio"] == ratio


def test_the_prompt_is_sent_as_given_with_no_second_camera_sentence():
    body = request_body(request(camera_motion="dolly_in", camera_intensity=0.9), "gen4.5")
    assert body["promptText"] == "A CV"


def test_a_built_prompt_names_the_camera_move_exactly_once():
    built = prompts.build_prompt("I am a senior nurse at a hospital.", "professional", "zoom", 0.5)
    body = request_body(request(prompt_text=built.runway_prompt, camera_motion="zoom"), "gen4.5")
    assert body["promptText"] == built.runway_prompt
    assert body["promptText"].count("The camera") == 1
    assert "The camera pushes in steadily." in body["promptText"]


def test_a_gen_body_carries_seed_image_and_content_moderation():
    body = request_body(request(seed=7, image_url="https://x.example/a.png"), "gen4.5")
    assert body == {
        "model": "gen4.5",
        "ratio": "1280:720",
        "duration": 5,
        "promptText": prompts.image_prompt("professional", "zoom", 0.5),  # the image fixes the look
        "promptImage": "https://x.example/a.png",
        "seed": 7,
        "contentModeration": {"publicFigureThreshold": "auto"},
    }


@pytest.mark.parametrize("audio", [True, False])
def test_a_veo_body_says_whether_it_wants_audio(audio: bool):
    assert request_body(request(), "veo3.1_fast", audio=audio)["audio"] is audio


def test_a_veo_estimate_uses_the_audio_rate_when_audio_is_sent():
    base = {"GOOGLE_CLOUD_PROJECT": "p"}
    quiet = load_settings({**base, "RUNWAYML_VEO_AUDIO": "false"})
    with_audio = runwayml.request.estimate("veo3.1_fast", 8, load_settings(base))
    silent = runwayml.request.estimate("veo3.1_fast", 8, quiet)
    assert (with_audio.credits, silent.credits) == (8 * 15, 8 * 10)


def test_a_veo_body_has_no_content_moderation_field():
    assert "contentModeration" not in request_body(request(), "veo3.1_fast")


def test_the_prompt_limit_counts_utf16_code_units():
    provider = RunwayMLProvider(load_settings({"GOOGLE_CLOUD_PROJECT": "p"}))
    emoji = "\N{GRINNING FACE}" * 500  # 1000 code units: two per emoji
    provider.validate(request(prompt_text=emoji))
    with pytest.raises(InvalidRequest, match=r"^prompt_text:"):
        provider.validate(request(prompt_text=emoji + "x"))


# --- task snapshots -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        (task("PENDING", estimatedCost={"credits": 60}), Status.QUEUED),
        (task("THROTTLED", estimatedCost={"credits": 60}), Status.QUEUED),
        (task("RUNNING", progress=0.4, estimatedCost={"credits": 60}), Status.PROCESSING),
        (task("SUCCEEDED", output=["https://o.example/v.mp4"], cost={"credits": 60}), Status.COMPLETED),
        (task("FAILED", failure="boom", cost={"credits": 60}), Status.FAILED),
        (task("CANCELLED", cost={"credits": 0}), Status.CANCELLED),
    ],
)
def test_each_task_status_maps_onto_the_project_status(wire: dict[str, object], status: Status):
    assert snapshot_from_task(wire, USD).status == status


@pytest.mark.parametrize(("raw", "percent"), [(0.4, 40.0), (1, 100.0), (40, 40.0), (250, 100.0), (-1, 0.0)])
def test_running_progress_is_reported_in_percent(raw: float, percent: float):
    assert snapshot_from_task(task("RUNNING", progress=raw), USD).progress == percent


def test_a_succeeded_task_carries_its_outputs_and_cost_in_usd():
    snapshot = snapshot_from_task(
        task("SUCCEEDED", output=["https://o.example/v.mp4"], cost={"credits": 60}), USD
    )
    assert (snapshot.output_urls, snapshot.cost_credits, snapshot.cost_usd) == (
        ("https://o.example/v.mp4",),
        60,
        0.6,
    )


def test_a_failed_task_carries_its_code_and_message():
    snapshot = snapshot_from_task(task("FAILED", failure="Internal error", failureCode="INTERNAL"), USD)
    assert (snapshot.failure_code, snapshot.failure_message, snapshot.fallback_allowed) == (
        "INTERNAL",
        "Internal error",
        True,
    )


@pytest.mark.parametrize(
    ("wire", "status"),
    [(task("ARCHIVED"), Status.QUEUED), (task("UPSCALING", progress=0.5), Status.PROCESSING)],
)
def test_an_unknown_status_is_not_terminal(wire: dict[str, object], status: Status):
    snapshot = snapshot_from_task(wire, USD)
    assert snapshot.status == status
    assert not is_terminal(snapshot.status)


@pytest.mark.parametrize("wire", [[], {"id": "t-1"}, {"status": "RUNNING"}, {"id": 3, "status": "RUNNING"}])
def test_a_task_without_id_or_status_is_malformed(wire: object):
    with pytest.raises(MalformedResponse):
        snapshot_from_task(wire, USD)


@pytest.mark.parametrize(
    ("code", "allowed"),
    [
        ("SAFETY.INPUT.TEXT", False),
        ("SAFETY.OUTPUT.VIDEO", False),
        ("INPUT_PREPROCESSING.SAFETY.TEXT", False),
        ("ASSET.INVALID", False),
        ("INTERNAL", True),
        ("INTERNAL.BAD_OUTPUT.CODE01", True),
        ("INPUT_PREPROCESSING.INTERNAL", True),
        ("SOMETHING.NEW", True),
        (None, True),
    ],
)
def test_failure_codes_decide_whether_another_provider_may_try(code: str | None, allowed: bool):
    assert failure_allows_fallback(code) is allowed


# --- HTTP answers ---------------------------------------------------------------------------------


def error(status: int, body: object = None, retry_after: str | None = None, *, is_create: bool = False):
    return error_for_response(status, json.dumps(body or {}).encode(), retry_after, is_create=is_create)


def test_a_2xx_answer_is_no_error():
    assert error(200) is None


def test_a_400_is_invalid_request_with_the_api_message():
    found = error(400, {"error": "ratio: must be one of 1280:720"})
    assert isinstance(found, InvalidRequest)
    assert found.message == "ratio: must be one of 1280:720"


def test_a_400_about_credits_is_insufficient_credits():
    assert isinstance(
        error(400, {"error": "You do not have enough credits to run this task."}), InsufficientCredits
    )


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, AuthenticationFailed), (403, AuthenticationFailed), (404, NotFound), (422, InvalidRequest)],
)
def test_client_errors_map_onto_the_error_tree(status: int, kind: type):
    assert type(error(status)) is kind


def test_a_429_carries_retry_after_in_seconds():
    found = error(429, {"error": "limit"}, "12")
    assert isinstance(found, RateLimited)
    assert found.retry_after == 12


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_on_a_read_is_unavailable_with_its_status(status: int):
    found = error(status)
    assert type(found) is ProviderUnavailable
    assert found.http_status == status


@pytest.mark.parametrize(
    ("status", "kind"),
    [(500, OutcomeUnknown), (504, OutcomeUnknown), (502, ProviderUnavailable), (503, ProviderUnavailable)],
)
def test_a_5xx_on_a_create_is_unknown_unless_it_was_a_refusal(status: int, kind: type):
    assert type(error(status, is_create=True)) is kind


def test_an_error_body_that_is_not_json_still_gives_a_message():
    found = error_for_response(400, b"<html>bad</html>", None, is_create=False)
    assert found is not None
    assert found.message == "HTTP 400"


# --- the provider over a stub transport -----------------------------------------------------------


class StubAdapter(BaseAdapter):
    """Answers every request with one canned JSON body (a transport, not our own code, is faked)."""

    def __init__(self, payload: object) -> None:
        super().__init__()
        self.payload = payload

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        response = requests.Response()
        response.status_code, response.request, response.url = 200, request, request.url or ""
        response._content = json.dumps(self.payload).encode()
        return response

    def close(self) -> None:
        return None


@pytest.fixture
def warnings() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("cvplus.providers.runwayml")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def stub_provider(payload: object) -> RunwayMLProvider:
    def session() -> requests.Session:
        stub = requests.Session()
        stub.mount("https://", StubAdapter(payload))
        return stub

    settings = load_settings({"GOOGLE_CLOUD_PROJECT": "p", "RUNWAYML_API_KEY": "key_00"})
    return RunwayMLProvider(settings, session_factory=session)


def test_an_unknown_status_from_the_api_is_logged_as_a_warning(warnings: list[logging.LogRecord]):
    snapshot = stub_provider(task("PAUSED")).get("t-1")
    assert snapshot.provider_status == "PAUSED"
    assert [record.__dict__.get("status") for record in warnings] == ["PAUSED"]


def test_a_create_answer_without_an_id_is_outcome_unknown():
    with pytest.raises(OutcomeUnknown):
        stub_provider({"estimatedCost": {"credits": 60}}).create(request())


# --- organization -----------------------------------------------------------------------------------


def test_organization_limits_and_usage_are_read_per_model():
    health = health_from_organization(
        {
            "creditBalance": 500,
            "tier": {"models": {"gen4.5": {"maxConcurrentGenerations": 2, "maxDailyGenerations": None}}},
            "usage": {"models": {"gen4.5": {"dailyGenerations": 4}, "veo3.1": {"dailyGenerations": 1}}},
        },
        USD,
    )
    assert (health.credit_balance, health.balance_usd) == (500, 5.0)
    assert health.limits["gen4.5"] == ModelLimits(max_concurrent=2, max_daily=None, used_today=4)
    assert health.limits["veo3.1"] == ModelLimits(used_today=1)


def test_organization_with_odd_shapes_does_not_crash():
    health = health_from_organization({"creditBalance": "lots", "tier": [], "usage": {"models": 3}}, USD)
    assert (health.credit_balance, health.limits) == (None, {})
