"""The HeyGen simulator speaks v3: auth, validation, idempotency, limits, wallet, media and webhooks.

Webhook deliveries go to a tiny loopback receiver that verifies each one with `verify_heygen`;
asynchronous delivery is awaited with a bounded polling loop, never a fixed sleep.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from local.heygen_sim import IDEMPOTENCY_WINDOW_S, HeyGenSim
from local.procs import ManagedProcess, free_port, http_ready
from local.simcore import SAMPLE_MP4, Durations, FaultPlan, ManualClock
from local.stack_parts import SimSettings, simulator
from providers.heygen import HeyGenEvent, verify_heygen
from providers.signatures import SignatureError

KEY = "sim-heygen-key"
SECRET = "whsec_receiver-secret"
QUEUE_S, RENDER_S = 20.0, 300.0
DONE = QUEUE_S + RENDER_S + 1
ROOT = Path(__file__).resolve().parent.parent


class Receiver(ThreadingHTTPServer):
    """A webhook endpoint on loopback: verifies every delivery and answers from `statuses`."""

    daemon_threads = True

    def __init__(self, statuses: list[int] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.statuses = statuses or []
        self.events: list[HeyGenEvent | str] = []  # a verified event, or the refusal code
        self.raw: list[tuple[bytes, dict[str, str]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/heygen"


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.raw.append((body, dict(self.headers)))
        try:
            self.server.events.append(
                verify_heygen(body, dict(self.headers), [SECRET], now=time.time(), tolerance_s=300)
            )
        except SignatureError as exc:
            self.server.events.append(exc.code)
        self.send_response(self.server.statuses.pop(0) if self.server.statuses else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def start_sim(**options) -> HeyGenSim:
    options.setdefault("clock", ManualClock())
    options.setdefault("tick_s", 0.01)
    return HeyGenSim(durations=Durations(RENDER_S, RENDER_S), queue_s=QUEUE_S, **options).start()


@pytest.fixture
def sim() -> Iterator[HeyGenSim]:
    server = start_sim()
    yield server
    server.stop()


def post_video(sim: HeyGenSim, body: dict | None = None, key: str | None = "k1", api_key: str = KEY):
    headers = {"X-Api-Key": api_key} | ({"Idempotency-Key": key} if key else {})
    body = (
        {"type": "avatar", "avatar_id": "look_1", "script": "one two three four five"}
        if body is None
        else body
    )
    return requests.post(f"{sim.base_url}/v3/videos", json=body, headers=headers, timeout=5)


def get(sim: HeyGenSim, path: str) -> requests.Response:
    return requests.get(f"{sim.base_url}{path}", headers={"X-Api-Key": KEY}, timeout=5)


def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


# -- the API ----------------------------------------------------------------------------------------


def test_create_without_the_api_key_is_401_with_a_v3_error_body(sim):
    answer = requests.post(f"{sim.base_url}/v3/videos", json={}, timeout=5)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"


def test_create_without_a_script_is_400_naming_the_param(sim):
    answer = post_video(sim, {"type": "avatar", "avatar_id": "look_1"})
    assert answer.status_code == 400
    assert answer.json()["error"] | {"message": ""} == {
        "code": "validation_error",
        "message": "",
        "param": "script",
    }


def test_unsupported_resolution_is_400_invalid_parameter(sim):
    answer = post_video(sim, {"type": "avatar", "avatar_id": "a", "script": "hi", "resolution": "8k"})
    assert answer.json()["error"]["code"] == "invalid_parameter"


def test_idempotency_key_outside_the_alphabet_is_400(sim):
    assert post_video(sim, key="bad key!").status_code == 400


def test_create_answers_waiting_with_a_video_id(sim):
    data = post_video(sim).json()["data"]
    assert data["status"] == "waiting"
    assert data["video_id"] in sim.videos


def test_replay_within_24_hours_returns_the_first_answer_and_makes_one_video(sim):
    first, second = post_video(sim).json(), post_video(sim).json()
    assert first == second
    assert sim.videos_by_key == {"k1": 1}


def test_replay_after_24_hours_makes_a_new_video(sim):
    first = post_video(sim).json()
    sim.clock.t = IDEMPOTENCY_WINDOW_S + 1
    assert post_video(sim).json() != first
    assert sim.videos_by_key == {"k1": 2}


def test_replay_while_the_first_is_in_flight_is_409_request_in_progress():
    sim = start_sim(create_delay_s=1.0)
    try:
        first = threading.Thread(target=post_video, args=(sim,))
        first.start()
        wait_for(lambda: sim.in_flight() == 1)
        answer = post_video(sim)
        first.join()
    finally:
        sim.stop()
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "request_in_progress"


def test_refused_create_does_not_hold_its_key(sim):
    post_video(sim, {"type": "avatar"})
    assert post_video(sim).status_code == 200


def test_over_the_concurrency_limit_is_429_with_retry_after():
    sim = start_sim(max_concurrent=1, concurrency_retry_after_s=7)
    try:
        post_video(sim, key="k1")
        answer = post_video(sim, key="k2")
    finally:
        sim.stop()
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "7"


def test_wallet_that_cannot_pay_is_402_insufficient_credit():
    sim = start_sim(balance_usd=0.1, usd_per_second=1.0)
    try:
        answer = post_video(sim)
    finally:
        sim.stop()
    assert answer.status_code == 402
    assert answer.json()["error"]["code"] == "insufficient_credit"


def test_balance_drops_by_the_price_of_each_completed_second():
    sim = start_sim(balance_usd=10.0, usd_per_second=0.5)
    try:
        post_video(sim)  # five words: two seconds of speech
        sim.clock.t = DONE
        wallet = get(sim, "/v3/users/me").json()["data"]["wallet"]
    finally:
        sim.stop()
    assert wallet["remaining_balance"] == pytest.approx(9.0)


@pytest.mark.parametrize(
    ("billing", "where"),
    [
        ("wallet", ("wallet", "remaining_balance")),
        ("credits_wallet", ("wallet", "remaining_balance")),
        ("usage_based", ("usage_based", "remaining_credits")),
        ("subscription", ("subscription", "credits", "plan", "remaining")),
    ],
)
def test_the_user_answer_has_the_v3_billing_shape(billing, where):
    sim = start_sim(balance_usd=10.0, billing=billing)
    try:
        data = get(sim, "/v3/users/me").json()["data"]
    finally:
        sim.stop()
    value = data
    for key in where:
        value = value[key]
    assert value == pytest.approx(10.0)
    assert data["billing_type"] == billing.removeprefix("credits_")
    if billing.endswith("wallet"):
        assert data["wallet"]["currency"] == ("credits" if billing == "credits_wallet" else "usd")
    assert "remaining_credits" not in data  # v3 has no top-level credit field


@pytest.mark.parametrize(("t", "status"), [(0, "pending"), (QUEUE_S + 1, "processing"), (DONE, "completed")])
def test_video_status_follows_the_clock(sim, t, status):
    video_id = post_video(sim).json()["data"]["video_id"]
    sim.clock.t = t
    assert get(sim, f"/v3/videos/{video_id}").json()["data"]["status"] == status


def test_moderated_video_fails_with_a_content_code():
    sim = start_sim(faults=FaultPlan(rates={"moderation": 1.0}))
    try:
        video_id = post_video(sim).json()["data"]["video_id"]
        sim.clock.t = DONE
        data = get(sim, f"/v3/videos/{video_id}").json()["data"]
    finally:
        sim.stop()
    assert (data["status"], data["failure_code"]) == ("failed", "content_moderation_rejected")


def test_bulk_statuses_list_every_id_and_not_found_for_unknown_ones(sim):
    video_id = post_video(sim).json()["data"]["video_id"]
    entries = get(sim, f"/v3/videos/statuses?video_ids={video_id},nope").json()["data"]
    assert entries == [
        {"video_id": video_id, "status": "queued"},
        {"video_id": "nope", "status": "not_found"},
    ]


def test_bulk_statuses_refuse_more_than_100_ids(sim):
    ids = ",".join(f"v{i}" for i in range(101))
    assert get(sim, f"/v3/videos/statuses?video_ids={ids}").status_code == 400


def test_video_url_serves_the_sample_mp4_and_gif_url_a_gif(sim):
    video_id = post_video(sim).json()["data"]["video_id"]
    sim.clock.t = DONE
    data = get(sim, f"/v3/videos/{video_id}").json()["data"]
    assert requests.get(data["video_url"], timeout=5).content == SAMPLE_MP4.read_bytes()
    assert requests.get(data["gif_url"], timeout=5).content.startswith(b"GIF89a")


def test_unknown_video_is_404(sim):
    assert get(sim, "/v3/videos/nope").json()["error"]["code"] == "video_not_found"


# -- the chaos run's later fault kinds ------------------------------------------------------------


def test_a_stale_read_answers_an_earlier_snapshot_in_both_status_calls():
    sim = start_sim(faults=FaultPlan(rates={"stale_read": 1.0}))
    try:
        video_id = post_video(sim).json()["data"]["video_id"]
        sim.clock.t = QUEUE_S + 1
        first = get(sim, f"/v3/videos/{video_id}").json()["data"]["status"]  # nothing older yet
        bulk_first = get(sim, f"/v3/videos/statuses?video_ids={video_id}").json()["data"][0]["status"]
        sim.clock.t = DONE
        again = get(sim, f"/v3/videos/{video_id}").json()["data"]["status"]
        bulk_again = get(sim, f"/v3/videos/statuses?video_ids={video_id}").json()["data"][0]["status"]
    finally:
        sim.stop()
    assert first in ("pending", "processing")  # no read before: the video as it was earlier
    assert bulk_first in ("queued", "processing")
    assert "completed" not in (again, bulk_again)  # completed, not yet visible
    assert sim.faults.injected["stale_read"] == 4


def test_a_stale_first_read_shows_the_video_as_it_was_a_while_ago():
    sim = start_sim(faults=FaultPlan(rates={"stale_read": 1.0}, seed=3))
    try:
        video_id = post_video(sim).json()["data"]["video_id"]
        sim.clock.t = DONE
        data = get(sim, f"/v3/videos/{video_id}").json()["data"]
    finally:
        sim.stop()
    assert data["status"] in ("pending", "processing")
    assert "video_url" not in data


def test_an_answer_lost_after_a_create_leaves_the_video_and_a_repeat_with_the_key_gets_it():
    sim = start_sim(faults=FaultPlan(rates={"answer_lost": 1.0}))
    try:
        with pytest.raises(requests.ConnectionError):
            post_video(sim, key="lost-1")
        assert len(sim.videos) == 1
        sim.faults.rates["answer_lost"] = 0.0
        replay = post_video(sim, key="lost-1").json()["data"]["video_id"]
    finally:
        sim.stop()
    assert list(sim.videos) == [replay]
    assert (sim.videos_by_key["lost-1"], sim.faults.injected["answer_lost"]) == (1, 1)


@pytest.mark.parametrize("fault", ["truncated_download", "trickle_download"])
def test_mp4_downloads_can_be_cut_short_or_trickle(fault):
    sim = start_sim(faults=FaultPlan(rates={fault: 1.0}, trickle_bps=40_000, truncate_at=0.25))
    try:
        video_id = post_video(sim).json()["data"]["video_id"]
        sim.clock.t = DONE
        url = get(sim, f"/v3/videos/{video_id}").json()["data"]["video_url"]
        began = time.monotonic()
        if fault == "truncated_download":
            with pytest.raises(requests.exceptions.ChunkedEncodingError):
                requests.get(url, timeout=5)  # Content-Length promised more than arrived
            return
        body = requests.get(url, timeout=5).content
    finally:
        sim.stop()
    assert body == SAMPLE_MP4.read_bytes()
    assert time.monotonic() - began >= 0.8 * len(body) / 40_000


# -- webhooks ---------------------------------------------------------------------------------------


def test_finished_video_is_delivered_signed_to_the_configured_endpoint(receiver):
    sim = start_sim(webhook_url=receiver.url, webhook_secret=SECRET)
    try:
        video_id = post_video(
            sim, {"type": "avatar", "avatar_id": "a", "script": "hi", "callback_id": "job-7"}
        )
        sim.clock.t = DONE
        wait_for(lambda: receiver.events)
    finally:
        sim.stop()
    event = receiver.events[0]
    assert isinstance(event, HeyGenEvent)
    assert (event.event_type, event.video_id) == ("avatar_video.success", video_id.json()["data"]["video_id"])
    assert (event.callback_id, event.url) == ("job-7", f"{sim.base_url}/media/{event.video_id}.mp4")


def test_failed_video_is_delivered_as_avatar_video_fail(receiver):
    sim = start_sim(
        webhook_url=receiver.url, webhook_secret=SECRET, faults=FaultPlan(rates={"moderation": 1.0})
    )
    try:
        post_video(sim)
        sim.clock.t = DONE
        wait_for(lambda: receiver.events)
    finally:
        sim.stop()
    assert receiver.events[0].event_type == "avatar_video.fail"
    assert receiver.events[0].message


def test_event_delivered_twice_keeps_its_event_id(receiver):
    sim = start_sim(webhook_url=receiver.url, webhook_secret=SECRET, webhook_copies=2)
    try:
        post_video(sim)
        sim.clock.t = DONE
        wait_for(lambda: len(receiver.events) == 2)
    finally:
        sim.stop()
    assert receiver.events[0].event_id == receiver.events[1].event_id


def test_late_delivery_waits_for_its_delay(receiver):
    sim = start_sim(webhook_url=receiver.url, webhook_secret=SECRET, webhook_delay_s=600)
    try:
        post_video(sim)
        sim.clock.t = DONE
        wait_for(lambda: all(v.notified for v in sim.videos.values()))
        undelivered = list(receiver.events)
        sim.clock.t = DONE + 600
        wait_for(lambda: receiver.events)
    finally:
        sim.stop()
    assert undelivered == []


def test_refused_delivery_is_retried(receiver):
    receiver.statuses = [500]
    sim = start_sim(webhook_url=receiver.url, webhook_secret=SECRET)
    try:
        post_video(sim)
        sim.clock.t = DONE
        wait_for(lambda: len(sim.deliveries) == 1)
        sim.clock.t = DONE + 3600
        wait_for(lambda: len(sim.deliveries) == 2)
    finally:
        sim.stop()
    assert [status for _, _, status in sim.deliveries] == [500, 200]


def test_endpoint_registered_through_the_api_gets_deliveries_signed_with_its_whsec_secret(sim, receiver):
    answer = requests.post(
        f"{sim.base_url}/v3/webhooks/endpoints",
        json={"url": receiver.url},
        headers={"X-Api-Key": KEY},
        timeout=5,
    )
    secret = answer.json()["data"]["secret"]
    post_video(sim)
    sim.clock.t = DONE
    wait_for(lambda: receiver.raw)
    body, headers = receiver.raw[0]
    assert secret.startswith("whsec_")
    assert verify_heygen(body, headers, [secret], now=time.time(), tolerance_s=300).event_type == (
        "avatar_video.success"
    )


def test_runs_standalone_from_the_command_line(tmp_path):
    port = free_port()
    argv = [sys.executable, "-m", "local.heygen_sim", "--port", str(port), "--speed", "100", "--seed", "3"]
    process = ManagedProcess("heygen-sim", argv, log_path=tmp_path / "sim.log", cwd=ROOT).start()
    try:
        process.wait_ready(http_ready(f"http://127.0.0.1:{port}/v3/users/me"), timeout_s=30)
        answer = requests.get(f"http://127.0.0.1:{port}/v3/users/me", headers={"X-Api-Key": KEY}, timeout=5)
    finally:
        process.stop()
    assert json.loads(answer.content)["data"]["billing_type"] == "wallet"


def test_the_local_stack_starts_it_with_the_account_limit_it_is_given(tmp_path):
    settings = SimSettings(speed=1.0, faults="", seed=0, concurrency={"heygen": 1})
    process, port = simulator("heygen", settings, tmp_path, {}, webhook=None)
    process.start()
    try:
        process.wait_ready(http_ready(f"http://127.0.0.1:{port}/v3/users/me"), timeout_s=30)
        sim = SimpleNamespace(base_url=f"http://127.0.0.1:{port}")
        first, second = post_video(sim, key="k1"), post_video(sim, key="k2")
    finally:
        process.stop()
    assert first.status_code == 200
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "rate_limit_exceeded"
