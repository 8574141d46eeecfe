"""A HeyGen API v3 simulator on loopback: avatar videos, idempotent creates, a wallet, signed webhooks.

Routes (every `/v3/` call needs `X-Api-Key`; errors are v3 bodies `{"error": {"code", "message"}}`)::

    POST /v3/videos              400 validation_error/invalid_parameter; Idempotency-Key: a replay within
                                 24 simulated hours gets the first answer, a replay while the first is in
                                 flight (`create_delay_s` real seconds) gets 409 request_in_progress;
                                 429 rate_limit_exceeded + Retry-After over `max_concurrent` renders;
                                 402 insufficient_credit when the wallet cannot pay for the video
    GET  /v3/videos/{id}         pending -> processing -> completed | failed, computed from the clock
    GET  /v3/videos/statuses     ?video_ids=a,b (<= 100): {"data": [{video_id, status, error}], ...}
    GET  /v3/users/me            balance: initial minus the cost of every completed second, in the v3
                                 shape of `billing` (USD or credits wallet, usage-based, subscription)
    POST /v3/webhooks/endpoints  {url} -> data.secret `whsec_...` (deliveries signed with it)
    GET  /media/{id}.mp4         the real sample MP4; `.gif` (gif_url and thumbnail_url) is a 1x1 GIF

Faults (`FaultPlan`): `http_429`/`http_5xx` answer a create before it is processed; `read_timeout`,
`reset` and `malformed` strike after it was processed, so the answer is lost while the video exists
(the case `Idempotency-Key` is for), and so does `answer_lost` (processed, then the connection is
dropped). Other routes take request faults as they come. Task faults at creation: `stuck` (never
finishes) and `moderation` (fails with `MODERATION_CODE`). `stale_read`: a status read (one video or
the bulk call) answers an older snapshot an earlier read returned (`processing` after `completed`).
MP4 downloads take `truncated_download` (full Content-Length, body cut short) and `trickle_download`.

Webhooks: when a video finishes, a dispatcher thread POSTs `avatar_video.success` / `.fail` to every
registered endpoint, signed with `signatures.sign_heygen` (Heygen-Signature, Heygen-Timestamp,
Heygen-Event-Id), retrying failed deliveries; `webhook_copies=2` delivers each event twice and
`webhook_delay_s` (simulated seconds) delivers late. `videos_by_key` and `videos` let tests prove one
video per key. Run alone: `python -m local.heygen_sim --port N [--speed X] [--faults ...] [--seed S]
[--concurrency N] [--webhook-url U --webhook-secret S]`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from local.simcore import (
    CREATE_FAULTS,
    REQUEST_FAULTS,
    TASK_FAULTS,
    Durations,
    FaultPlan,
    SimClock,
    SimHandler,
    SimServer,
    Snapshots,
)
from providers.signatures import sign_heygen

MODERATION_CODE = "content_moderation_rejected"
IDEMPOTENCY_WINDOW_S = 24 * 3600
MAX_SCRIPT_CHARS = 5000
RENDER_TIMES = Durations(300, 900)  # simulated seconds: HeyGen renders take 5-15 minutes
TINY_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_KEY_PATTERN = re.compile(r"[A-Za-z0-9_:.-]{1,255}")
_BULK_STATUS = {"pending": "queued"}  # the bulk call names the waiting state "queued"
_ENUMS = {"aspect_ratio": ("16:9", "9:16", "4:5", "5:4", "1:1"), "resolution": ("720p", "1080p", "4k")}

Answer = tuple[int, dict, dict[str, str]]


def v3_error(status: int, code: str, message: str, param: str | None = None) -> Answer:
    error = {"code": code, "message": message} | ({"param": param} if param else {})
    return status, {"error": error}, {}


BILLING = ("wallet", "credits_wallet", "usage_based", "subscription")


def user_data(billing: str, balance: float) -> dict[str, Any]:
    """The `data` of `GET /v3/users/me` for a billing type: a USD wallet, an Enterprise wallet in
    credits, usage-based credits or subscription credit buckets (the balance in that unit)."""
    data: dict[str, Any] = {"username": "simulator", "email": "simulator@example.com"}
    if billing in ("wallet", "credits_wallet"):
        currency = "credits" if billing == "credits_wallet" else "usd"
        wallet = {"currency": currency, "remaining_balance": balance}
        return data | {"billing_type": "wallet", "wallet": wallet}
    if billing == "usage_based":
        return data | {"billing_type": billing, "usage_based": {"remaining_credits": balance}}
    credits = {"plan": {"remaining": balance}, "add_on": {"remaining": 0}}
    return data | {"billing_type": "subscription", "subscription": {"plan": "creator", "credits": credits}}


@dataclass(frozen=True)
class SimOptions:
    """The simulator's knobs (keyword arguments of `HeyGenSim`); times are simulated seconds."""

    api_key: str | None = "sim-heygen-key"  # None accepts any key
    avatars: frozenset[str] | None = None  # None accepts any avatar id
    durations: Durations = RENDER_TIMES
    queue_s: float = 20.0
    create_delay_s: float = 0.0  # real seconds a create stays "in flight"
    max_concurrent: int = 10
    concurrency_retry_after_s: int = 5
    balance_usd: float = 1000.0
    usd_per_second: float = 0.0667
    billing: str = "wallet"  # how /v3/users/me reports the balance: one of BILLING
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_copies: int = 1
    webhook_delay_s: float = 0.0
    webhook_attempts: int = 3
    tick_s: float = 0.02  # real seconds between dispatcher rounds

    def __post_init__(self) -> None:
        if (self.webhook_url is None) != (self.webhook_secret is None):
            raise ValueError("webhook_url and webhook_secret go together")
        if self.billing not in BILLING:
            raise ValueError(f"billing must be one of {', '.join(BILLING)}")


@dataclass
class SimVideo:
    video_id: str
    callback_id: str | None
    title: str
    created_at: float  # simulated seconds
    queue_s: float
    render_s: float
    output_s: float
    fault: str | None
    created_unix: int = field(default_factory=lambda: int(time.time()))
    notified: bool = False

    @property
    def done_at(self) -> float | None:
        return None if self.fault == "stuck" else self.created_at + self.queue_s + self.render_s

    def status_at(self, now: float) -> str:
        if now < self.created_at + self.queue_s:
            return "pending"
        if self.done_at is None or now < self.done_at:
            return "processing"
        return "failed" if self.fault == "moderation" else "completed"


@dataclass
class Delivery:
    due: float  # simulated seconds
    url: str
    secret: str
    event_id: str
    body: bytes
    attempt: int = 1


def validate_create(body: object) -> Answer | None:
    """A 400 answer for a create body HeyGen would refuse, or None."""
    if not isinstance(body, dict):
        return v3_error(400, "validation_error", "body must be a JSON object")
    if body.get("type") != "avatar":
        return v3_error(400, "invalid_parameter", "type must be 'avatar'", "type")
    if not isinstance(body.get("avatar_id"), str) or not body["avatar_id"]:
        return v3_error(400, "validation_error", "avatar_id is required", "avatar_id")
    script = body.get("script")
    if not isinstance(script, str) or not script.strip() or len(script) > MAX_SCRIPT_CHARS:
        return v3_error(400, "validation_error", f"script must be 1-{MAX_SCRIPT_CHARS} characters", "script")
    for name, allowed in _ENUMS.items():
        if name in body and body[name] not in allowed:
            return v3_error(400, "invalid_parameter", f"{name} must be one of {allowed}", name)
    return None


def _bulk_entry(video_id: str, data: dict) -> dict:
    """One entry of the bulk status call, from a video's full status answer."""
    entry = {"video_id": video_id, "status": _BULK_STATUS.get(data["status"], data["status"])}
    if "failure_code" in data:
        entry["error"] = {"code": data["failure_code"], "message": data["failure_message"]}
    return entry


class HeyGenHandler(SimHandler):
    server: HeyGenSim

    def do_GET(self) -> None:
        self._route(self.command)

    do_HEAD = do_POST = do_GET

    def _route(self, method: str) -> None:
        path, _, query = self.path.partition("?")
        if path.startswith("/media/") and method in ("GET", "HEAD"):
            return self._media(path)
        body = self.read_body() if method == "POST" else b""
        if not self.server.authorized(self.headers.get("X-Api-Key")):
            return self._answer(v3_error(401, "unauthorized", "missing or invalid X-Api-Key"))
        if (method, path) == ("POST", "/v3/videos"):
            return self._create(body)
        if self.inject_request_fault({"error": {"code": "server_error", "message": "simulated"}}):
            return None
        return self._answer(self.server.route(method, path, parse_qs(query), body))

    def _create(self, body: bytes) -> None:
        fault = self.server.faults.draw(REQUEST_FAULTS)
        code = "rate_limit_exceeded" if fault == "http_429" else "server_error"
        error = {"error": {"code": code, "message": "simulated"}}
        if fault in ("http_429", "http_5xx"):
            return self.apply_request_fault(fault, error)
        answer = self.server.create(body, self.headers.get("Idempotency-Key"))
        if fault is not None:  # processed, but the answer is lost or mangled
            return self.apply_request_fault(fault, answer[1])
        if answer[0] == 200 and self.server.faults.maybe(CREATE_FAULTS):
            return self.lose_answer()  # the video exists; a repeat with the same key gets it
        return self._answer(answer)

    def _media(self, path: str) -> None:
        name = path.rsplit("/", 1)[-1]
        video_id, _, ext = name.partition(".")
        if not self.server.has_video(video_id) or ext not in ("mp4", "gif"):
            return self.send_json(404, {"error": {"code": "not_found", "message": "no such file"}})
        if ext == "gif":
            return self.send_raw(200, TINY_GIF, "image/gif")
        return self.send_sample_video()

    def _answer(self, answer: Answer) -> None:
        status, payload, headers = answer
        self.send_json(status, payload, headers)


class HeyGenSim(SimServer):
    """The simulator's state and rules; `HeyGenHandler` only speaks HTTP."""

    def __init__(
        self, *, port: int = 0, faults: FaultPlan | None = None, clock: SimClock | None = None, **options: Any
    ) -> None:
        opts = SimOptions(**options)  # before binding the port: bad options must not leak a socket
        super().__init__(HeyGenHandler, port=port, faults=faults)
        self.clock, self.options = clock or SimClock(), opts
        self.videos: dict[str, SimVideo] = {}
        self.videos_by_key: Counter[str] = Counter()
        self.replays: Counter[str] = Counter()
        self.endpoints = [(opts.webhook_url, opts.webhook_secret)] if opts.webhook_url else []
        self.deliveries: list[tuple[str, str, int]] = []  # (event_type, video_id, HTTP status or 0)
        self._keys: dict[str, tuple[float, Answer | None]] = {}  # key -> (simulated time, answer)
        self.snapshots = Snapshots()  # earlier status answers, for `stale_read`
        self._outbox: list[Delivery] = []
        self._rng = random.Random(self.faults.seed + 1)
        self._state = threading.RLock()
        self._halt = threading.Event()
        self._dispatcher = threading.Thread(
            target=self._dispatch_loop, name="heygen-sim-webhooks", daemon=True
        )

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> HeyGenSim:
        super().start()
        self._dispatcher.start()
        return self

    def serve_forever(self, poll_interval: float = 0.05) -> None:
        super().serve_forever(poll_interval)  # a short poll makes stop() quick

    def stop(self) -> None:
        self._halt.set()
        if self._dispatcher.is_alive():
            self._dispatcher.join(timeout=5)
        super().stop()

    # -- rules ------------------------------------------------------------------------------------

    def authorized(self, key: str | None) -> bool:
        return bool(key) and (self.options.api_key is None or key == self.options.api_key)

    def has_video(self, video_id: str) -> bool:
        with self._state:
            return video_id in self.videos

    def create(self, raw: bytes, key: str | None) -> Answer:
        """Idempotency first, then the create itself; only a 200 is remembered for replays."""
        if key is not None and not _KEY_PATTERN.fullmatch(key):
            return v3_error(400, "invalid_parameter", "must be 1-255 of [A-Za-z0-9_:.-]", "Idempotency-Key")
        if key is not None:
            with self._state:
                seen = self._keys.get(key)
                if seen is not None and self.clock.now() - seen[0] < IDEMPOTENCY_WINDOW_S:
                    if seen[1] is None:
                        return v3_error(409, "request_in_progress", "a request with this key is in flight")
                    self.replays[key] += 1
                    return seen[1]
                self._keys[key] = (self.clock.now(), None)
        answer = v3_error(500, "server_error", "the simulator failed")
        try:
            time.sleep(self.options.create_delay_s)  # the window in which the key is "in flight"
            answer = self._create_video(raw, key)
        finally:
            if key is not None:
                self._settle(key, answer)
        return answer

    def _settle(self, key: str, answer: Answer) -> None:
        with self._state:
            if answer[0] == 200:
                self._keys[key] = (self._keys[key][0], answer)
            else:
                del self._keys[key]

    def in_flight(self) -> int:
        with self._state:
            return sum(1 for _, answer in self._keys.values() if answer is None)

    def _create_video(self, raw: bytes, key: str | None) -> Answer:
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        refusal = validate_create(body)
        if refusal is not None:
            return refusal
        if self.options.avatars is not None and body["avatar_id"] not in self.options.avatars:
            return v3_error(404, "avatar_not_found", "no avatar look with this id", "avatar_id")
        output_s = max(1.0, len(body["script"].split()) * 60.0 / 150)
        with self._state:
            now = self.clock.now()
            if self._active(now) >= self.options.max_concurrent:
                status, error, _ = v3_error(429, "rate_limit_exceeded", "too many videos rendering")
                return status, error, {"Retry-After": str(self.options.concurrency_retry_after_s)}
            if self.balance_usd(committed=True) < output_s * self.options.usd_per_second:
                return v3_error(402, "insufficient_credit", "the wallet cannot pay for this video")
            video = SimVideo(
                video_id=uuid.uuid4().hex,
                callback_id=body.get("callback_id"),
                title=str(body.get("title") or ""),
                created_at=now,
                queue_s=self.options.queue_s,
                render_s=self.options.durations.draw(self._rng.random()),
                output_s=output_s,
                fault=self.faults.draw(TASK_FAULTS),
            )
            self.videos[video.video_id] = video
            if key is not None:
                self.videos_by_key[key] += 1
        return 200, {"data": {"video_id": video.video_id, "status": "waiting", "output_format": "mp4"}}, {}

    def finished(self) -> dict[str, str]:
        """Video id -> status, for every video that is completed or failed."""
        with self._state:
            now = self.clock.now()
            done = {i: v.status_at(now) for i, v in self.videos.items()}
        return {i: s for i, s in done.items() if s in ("completed", "failed")}

    def _active(self, now: float) -> int:
        return sum(1 for v in self.videos.values() if v.status_at(now) in ("pending", "processing"))

    def balance_usd(self, *, committed: bool = False) -> float:
        """Initial balance minus completed seconds (plus running renders when `committed`)."""
        now = self.clock.now()
        with self._state:
            charged = ("completed", "pending", "processing") if committed else ("completed",)
            spent = sum(v.output_s for v in self.videos.values() if v.status_at(now) in charged)
        return self.options.balance_usd - spent * self.options.usd_per_second

    def route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Answer:
        if (method, path) == ("GET", "/v3/videos/statuses"):
            return self._statuses(query)
        if method == "GET" and path.startswith("/v3/videos/"):
            return self._video(path.removeprefix("/v3/videos/"))
        if (method, path) in (("GET", "/v3/users/me"), ("GET", "/v3/user/me")):
            return 200, {"data": user_data(self.options.billing, round(self.balance_usd(), 4))}, {}
        if (method, path) == ("POST", "/v3/webhooks/endpoints"):
            return self._register(body)
        return v3_error(404, "not_found", f"no route {method} {path}")

    def _video(self, video_id: str) -> Answer:
        with self._state:
            video = self.videos.get(video_id)
        if video is None:
            return v3_error(404, "video_not_found", "no video with this id")
        answer = self.snapshots.read(video_id, self.video_json(video), self.faults, self._earlier(video))
        return 200, {"data": answer}, {}

    def _earlier(self, video: SimVideo, shape: Any = None) -> Any:
        """The video as a read at the share `f` of its life so far showed it (for `stale_read`)."""
        now = self.clock.now()

        def earlier(share: float) -> dict:
            data = self.video_json(video, video.created_at + share * (now - video.created_at))
            return data if shape is None else shape(data)

        return earlier

    def video_json(self, video: SimVideo, at: float | None = None) -> dict:
        status = video.status_at(self.clock.now() if at is None else at)
        data = {
            "id": video.video_id,
            "title": video.title,
            "status": status,
            "created_at": video.created_unix,
        }
        if status == "completed":
            media = f"{self.base_url}/media/{video.video_id}"
            data |= {"video_url": f"{media}.mp4", "gif_url": f"{media}.gif", "thumbnail_url": f"{media}.gif"}
            data |= {
                "duration": video.output_s,
                "completed_at": video.created_unix + int(video.queue_s + video.render_s),
            }
        elif status == "failed":
            data |= {
                "failure_code": MODERATION_CODE,
                "failure_message": "the script was rejected by moderation",
            }
        return data

    def _statuses(self, query: dict[str, list[str]]) -> Answer:
        ids = [i for i in ",".join(query.get("video_ids", [])).split(",") if i]
        if not ids or len(ids) > 100:
            return v3_error(400, "invalid_parameter", "video_ids takes 1-100 ids", "video_ids")
        entries = []
        for video_id in ids:
            with self._state:
                video = self.videos.get(video_id)
            if video is None:
                entries.append({"video_id": video_id, "status": "not_found"})
                continue
            entry = _bulk_entry(video_id, self.video_json(video))
            earlier = self._earlier(video, lambda data, v=video_id: _bulk_entry(v, data))
            entries.append(self.snapshots.read(("bulk", video_id), entry, self.faults, earlier))
        return 200, {"data": entries, "has_more": False, "next_token": None}, {}

    def _register(self, raw: bytes) -> Answer:
        try:
            url = json.loads(raw or b"{}").get("url")
        except (ValueError, AttributeError):
            url = None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return v3_error(400, "validation_error", "url is required", "url")
        secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
        with self._state:
            self.endpoints.append((url, secret))
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        endpoint = {"endpoint_id": uuid.uuid4().hex, "url": url, "secret": secret, "created_at": created}
        return 200, {"data": endpoint | {"status": "enabled", "events": None}}, {}

    # -- webhook dispatcher -------------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while not self._halt.wait(self.options.tick_s):
            self._enqueue_finished()
            self._deliver_due()

    def _enqueue_finished(self) -> None:
        now = self.clock.now()
        with self._state:
            for video in self.videos.values():
                if video.notified or video.done_at is None or now < video.done_at:
                    continue
                video.notified = True
                body = json.dumps(self.event_payload(video)).encode()
                event_id = uuid.uuid4().hex
                due = video.done_at + self.options.webhook_delay_s
                for url, secret in self.endpoints * self.options.webhook_copies:
                    self._outbox.append(Delivery(due, url, secret, event_id, body))

    def event_payload(self, video: SimVideo) -> dict:
        data = {"video_id": video.video_id, "callback_id": video.callback_id}
        if video.fault == "moderation":
            return {"event_type": "avatar_video.fail", "event_data": data | {"msg": "rejected by moderation"}}
        url = f"{self.base_url}/media/{video.video_id}.mp4"
        return {"event_type": "avatar_video.success", "event_data": data | {"url": url}}

    def _deliver_due(self) -> None:
        now = self.clock.now()
        with self._state:
            due = [d for d in self._outbox if d.due <= now]
            self._outbox = [d for d in self._outbox if d.due > now]
        for delivery in due:
            status = self._post(delivery)
            payload = json.loads(delivery.body)
            with self._state:
                self.deliveries.append((payload["event_type"], payload["event_data"]["video_id"], status))
                if not 200 <= status < 300 and delivery.attempt < self.options.webhook_attempts:
                    delivery.due, delivery.attempt = now + 60.0 * delivery.attempt, delivery.attempt + 1
                    self._outbox.append(delivery)

    def _post(self, delivery: Delivery) -> int:
        headers = sign_heygen(
            delivery.body, delivery.secret, timestamp=int(time.time()), event_id=delivery.event_id
        )
        request = urllib.request.Request(delivery.url, data=delivery.body, method="POST")
        for name, value in (headers | {"Content-Type": "application/json"}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="HeyGen API v3 simulator on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    parser.add_argument("--faults", default="", help='e.g. "http_5xx=0.1,moderation=0.05"')
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--api-key", default="sim-heygen-key")
    parser.add_argument("--balance", type=float, default=1000.0, help="wallet in USD")
    parser.add_argument("--concurrency", type=int, default=SimOptions.max_concurrent, help="renders at once")
    parser.add_argument("--webhook-url")
    parser.add_argument("--webhook-secret")
    args = parser.parse_args(argv)
    sim = HeyGenSim(
        port=args.port,
        faults=FaultPlan.parse(args.faults, seed=args.seed),
        clock=SimClock(args.speed),
        api_key=args.api_key,
        balance_usd=args.balance,
        max_concurrent=args.concurrency,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
    ).start()
    print(f"HeyGen simulator on {sim.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
