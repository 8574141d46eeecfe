"""The official `runwayml` SDK (strict response validation on) talks to the simulator without noticing.

Every task status the SDK models must parse, with the fields the SDK requires (createdAt,
estimatedCost or cost); errors must arrive as the SDK's own exception classes.
"""

from __future__ import annotations

import http.client
import urllib.request
from collections.abc import Iterator

import pytest
import runwayml
from runwayml import RunwayML

from local.runwayml_sim import API_VERSION, ManualClock, RunwayMLSim
from local.simcore import SAMPLE_MP4, Durations

KEY = "key_" + "0123456789abcdef" * 8
IMAGE = "https://images.example.com/portrait.png"
RENDER_S, QUEUE_S = 10.0, 2.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sim(clock: ManualClock) -> Iterator[RunwayMLSim]:
    server = RunwayMLSim(
        clock=clock, durations=Durations(RENDER_S, RENDER_S), queue_s=QUEUE_S, concurrency=1, daily_limit=5
    ).start()
    try:
        yield server
    finally:
        server.stop()


def sdk(sim: RunwayMLSim, **options: object) -> RunwayML:
    """An SDK client on the simulator that validates every response against its models."""
    kwargs: dict[str, object] = {"api_key": KEY, "base_url": sim.base_url, "max_retries": 0, "timeout": 5}
    return RunwayML(**{**kwargs, **options}, _strict_response_validation=True)  # type: ignore[arg-type]


@pytest.fixture
def client(sim: RunwayMLSim) -> Iterator[RunwayML]:
    with sdk(sim) as sdk_client:
        yield sdk_client


def text_task(client: RunwayML, **overrides: object) -> str:
    params: dict[str, object] = {"model": "gen4.5", "prompt_text": "A CV", "ratio": "1280:720", "duration": 5}
    return client.text_to_video.create(**{**params, **overrides}).id  # type: ignore[call-overload]


def test_the_client_validates_responses_strictly(client: RunwayML):
    assert client._strict_response_validation is True


def test_text_to_video_create_returns_id_and_estimated_cost(client: RunwayML):
    created = client.text_to_video.create(model="gen4.5", prompt_text="A CV", ratio="1280:720", duration=5)
    assert created.id
    assert created.estimated_cost.credits == 60


def test_image_to_video_create_returns_id_and_estimated_cost(client: RunwayML, sim: RunwayMLSim):
    created = client.image_to_video.create(
        model="gen4_turbo", prompt_image=IMAGE, ratio="720:1280", duration=4
    )
    assert created.estimated_cost.credits == 20
    assert sim.creates[("image_to_video", "gen4_turbo")] == 1


def test_a_new_task_is_pending_with_created_at_and_estimated_cost(client: RunwayML):
    task = client.tasks.retrieve(text_task(client))
    assert task.status == "PENDING"
    assert task.created_at.tzinfo is not None
    assert task.estimated_cost.credits == 60


def test_a_task_over_the_concurrency_limit_is_throttled(client: RunwayML, clock: ManualClock):
    text_task(client)
    second = text_task(client)
    clock.advance(QUEUE_S + 1)
    task = client.tasks.retrieve(second)
    assert task.status == "THROTTLED"
    assert task.estimated_cost.credits == 60


def test_a_started_task_is_running_with_progress_between_zero_and_one(client: RunwayML, clock: ManualClock):
    task_id = text_task(client)
    clock.advance(QUEUE_S + RENDER_S / 2)
    task = client.tasks.retrieve(task_id)
    assert task.status == "RUNNING"
    assert 0 < task.progress < 1


def test_a_finished_task_succeeds_with_a_served_mp4_and_a_cost(client: RunwayML, clock: ManualClock):
    task_id = text_task(client)
    clock.advance(QUEUE_S + RENDER_S)
    task = client.tasks.retrieve(task_id)
    assert task.status == "SUCCEEDED"
    assert task.cost.credits == 60
    with urllib.request.urlopen(task.output[0], timeout=5) as response:
        assert response.read() == SAMPLE_MP4.read_bytes()


def test_a_moderated_task_fails_with_a_safety_code_and_a_cost(
    client: RunwayML, sim: RunwayMLSim, clock: ManualClock
):
    sim.fail_next("moderation")
    task_id = text_task(client, model="veo3.1", ratio="1920:1080", duration=8)
    clock.advance(QUEUE_S)
    task = client.tasks.retrieve(task_id)
    assert task.status == "FAILED"
    assert task.failure_code == "SAFETY.INPUT.TEXT"
    assert task.failure
    assert task.cost.credits == 320


def test_deleting_a_running_task_cancels_it(client: RunwayML, clock: ManualClock):
    task_id = text_task(client)
    clock.advance(QUEUE_S + 1)
    client.tasks.delete(task_id)
    task = client.tasks.retrieve(task_id)
    assert task.status == "CANCELLED"
    assert task.cost.credits == 60


def test_deleting_a_pending_task_cancels_it_without_charge(client: RunwayML):
    task_id = text_task(client)
    client.tasks.delete(task_id)
    task = client.tasks.retrieve(task_id)
    assert task.status == "CANCELLED"
    assert task.cost.credits == 0


def test_deleting_a_finished_task_removes_it(client: RunwayML, clock: ManualClock):
    task_id = text_task(client)
    clock.advance(QUEUE_S + RENDER_S)
    client.tasks.delete(task_id)
    with pytest.raises(runwayml.NotFoundError):
        client.tasks.retrieve(task_id)


def test_an_unknown_task_is_not_found(client: RunwayML):
    with pytest.raises(runwayml.NotFoundError):
        client.tasks.retrieve("00000000-0000-0000-0000-000000000000")


def test_the_organization_reports_balance_limits_and_usage(client: RunwayML):
    before = client.organization.retrieve().credit_balance
    text_task(client)
    organization = client.organization.retrieve()
    assert organization.credit_balance == before - 60
    assert organization.tier.models["gen4.5"].max_concurrent_generations == 1
    assert organization.tier.models["gen4.5"].max_daily_generations == 5
    assert organization.usage.models["gen4.5"].daily_generations == 1


def test_an_invalid_body_is_a_bad_request_with_the_api_message(client: RunwayML):
    with pytest.raises(runwayml.BadRequestError, match="ratio"):
        client.text_to_video.create(model="gen4.5", prompt_text="A CV", ratio="1920:1080", duration=5)  # type: ignore[arg-type]


def test_a_malformed_key_is_an_authentication_error(sim: RunwayMLSim):
    with sdk(sim, api_key="not-a-key") as client, pytest.raises(runwayml.AuthenticationError):
        client.organization.retrieve()


def test_an_unsupported_version_is_a_bad_request(sim: RunwayMLSim):
    with sdk(sim, runway_version="2023-01-01") as client, pytest.raises(runwayml.BadRequestError):
        client.organization.retrieve()


def test_the_default_version_is_the_one_the_simulator_speaks(client: RunwayML):
    assert client.runway_version == API_VERSION


def test_a_spent_daily_quota_is_a_rate_limit_error(client: RunwayML):
    for _ in range(5):
        text_task(client)
    with pytest.raises(runwayml.RateLimitError):
        text_task(client)


# -- the chaos run's later fault kinds: the SDK still parses what comes back --------------------------


def test_a_stale_read_gives_the_sdk_an_earlier_valid_snapshot(
    client: RunwayML, sim: RunwayMLSim, clock: ManualClock
):
    task_id = text_task(client)
    clock.advance(QUEUE_S + RENDER_S * 0.4)
    running = client.tasks.retrieve(task_id)
    clock.advance(RENDER_S)
    sim.fail_next("stale_read", method="GET")
    stale = client.tasks.retrieve(task_id)
    assert (running.status, stale.status, stale.progress) == ("RUNNING", "RUNNING", running.progress)
    assert client.tasks.retrieve(task_id).status == "SUCCEEDED"
    assert sim.faults.injected["stale_read"] == 1


def test_an_answer_lost_after_a_create_leaves_a_charged_task(client: RunwayML, sim: RunwayMLSim):
    sim.fail_next("answer_lost", method="POST")
    with pytest.raises(runwayml.APIConnectionError):
        text_task(client)
    assert sim.creates[("text_to_video", "gen4.5")] == 1
    assert len(sim.tasks) == 1
    assert sim.organization()["creditBalance"] == 100_000 - 60


@pytest.mark.parametrize("fault", ["truncated_download", "trickle_download"])
def test_output_downloads_can_be_cut_short_or_trickle(
    client: RunwayML, sim: RunwayMLSim, clock: ManualClock, fault: str
):
    task_id = text_task(client)
    clock.advance(QUEUE_S + RENDER_S)
    url = client.tasks.retrieve(task_id).output[0]
    sim.faults.trickle_bps = 50_000
    sim.fail_next(fault, method="GET", path=f"/outputs/{task_id}.mp4")
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Length"] == str(SAMPLE_MP4.stat().st_size)
        if fault == "truncated_download":
            with pytest.raises(http.client.IncompleteRead):
                response.read()
        else:
            assert response.read() == SAMPLE_MP4.read_bytes()
    assert sim.faults.injected[fault] == 1
