"""A RunwayML API simulator on loopback, faithful enough for the official `runwayml` SDK.

Same paths, headers and JSON as https://api.dev.runwayml.com, version 2024-11-06::

    POST   /v1/text_to_video, /v1/image_to_video  -> 200 {"id", "estimatedCost": {"credits"}}
    GET    /v1/tasks/{id}                         -> the task; its status is computed from the clock
    DELETE /v1/tasks/{id}                         -> 204; cancels an active task, deletes a finished one
    GET    /v1/organization                       -> creditBalance, tier.models, usage.models
    GET    /outputs/{id}.mp4                      -> the sample MP4 that `output` URLs point at

Each API request passes, in order: a request fault (scripted with `fail_next`, else drawn from the
`FaultPlan`), the bearer key (401; `key_` + hex, or exactly `api_key` when one is configured), the
`X-Runway-Version` header (400), the body (400 `{"error": ...}`), the model's daily quota (429 with
Retry-After) and the credit balance (400).

Task life cycle, computed on each GET from the clock (no threads)::

    PENDING (queue_s) -> THROTTLED (while `concurrency` tasks of its model run) -> RUNNING (progress
    0-1) -> SUCCEEDED (output: [url])
    moderation fault: FAILED with SAFETY.INPUT.TEXT when it would start; stuck fault: RUNNING forever
    DELETE while active: CANCELLED (cost 0 unless it was RUNNING)

Faults beyond the request ones: `stale_read` (a GET of a task answers an older snapshot an earlier
GET returned), `answer_lost` (a create is admitted and charged, then the connection is dropped:
the caller cannot know the task exists) and the download faults of `/outputs/` (a truncated body
under a full Content-Length, or a trickle). All can be scripted with `fail_next` too.

A task's slot is fixed when it is created (the model's first free slot), so cancelling a task does
not let later ones start sooner: a simplification. `creates` counts creates per (endpoint, model),
so tests can prove a create was sent once; `requests` (from `SimServer`) logs every request.

    python -m local.runwayml_sim --port 8101 --speed 10 --faults "http_5xx=0.1,moderation=0.05"
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import json
import math
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from local.simcore import (
    ALL_FAULTS,
    CREATE_FAULTS,
    DOWNLOAD_FAULTS,
    READ_FAULTS,
    REQUEST_FAULTS,
    TASK_FAULTS,
    Durations,
    FaultPlan,
    ManualClock,
    SimClock,
    SimHandler,
    SimServer,
    Snapshots,
)

__all__ = ["API_VERSION", "MODELS", "ManualClock", "RunwayMLSim", "body_error", "main"]

API_VERSION = "2024-11-06"
KEY_PATTERN = re.compile(r"key_[0-9a-fA-F]{16,512}")
TASK_PATH = re.compile(r"/v1/tasks/([^/]+)")
OUTPUT_PATH = re.compile(r"/outputs/([^/]+)\.mp4")
MAX_PROMPT_UNITS = 1000
MAX_SEED = 4_294_967_295
DAY_S = 86_400.0
ACTIVE = ("PENDING", "THROTTLED", "RUNNING")
THRESHOLDS = ("auto", "low")
Answer = tuple[int, dict[str, Any], dict[str, str]]


@dataclass(frozen=True)
class ModelSpec:
    endpoints: tuple[str, ...]
    text_ratios: tuple[str, ...]
    image_ratios: tuple[str, ...]
    durations: tuple[int, ...]
    default_duration: int | None  # None: `duration` is required
    prompt_needed_with_image: bool
    credits_per_second: int
    audio_credits_per_second: int | None = None  # veo: with `audio` true (taken as true when absent)

    def credits(self, body: dict[str, Any]) -> int:
        """Credits of a create body: the per-second rate for its audio choice, times its duration."""
        audio = self.audio_credits_per_second is not None and body.get("audio", True) is not False
        rate = self.audio_credits_per_second if audio else self.credits_per_second
        return rate * body.get("duration", self.default_duration)  # type: ignore[operator]


WIDE = ("1280:720", "720:1280")
GEN_IMAGE = (*WIDE, "1104:832", "960:960", "832:1104", "1584:672")
VEO = (*WIDE, "1080:1920", "1920:1080")
BOTH = ("text_to_video", "image_to_video")
GEN_SECONDS = tuple(range(2, 11))
MODELS = {
    "gen4.5": ModelSpec(BOTH, WIDE, GEN_IMAGE, GEN_SECONDS, None, True, 12),
    "gen4_turbo": ModelSpec(("image_to_video",), (), GEN_IMAGE, GEN_SECONDS, 10, False, 5),
    "veo3.1": ModelSpec(BOTH, VEO, VEO, (4, 6, 8), 8, False, 20, 40),
    "veo3.1_fast": ModelSpec(BOTH, VEO, VEO, (4, 6, 8), 8, False, 10, 15),
}


class Clock(Protocol):
    def now(self) -> float: ...


# ---------------------------------------------------------------------------------------------------
# Body validation (pure): each check returns the API's 400 message, or None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ratio_error(endpoint: str, spec: ModelSpec, body: dict[str, Any]) -> str | None:
    allowed = spec.text_ratios if endpoint == "text_to_video" else spec.image_ratios
    if body.get("ratio") not in allowed:
        return f"ratio: must be one of {', '.join(allowed)} for {body['model']}"
    return None


def _duration_error(endpoint: str, spec: ModelSpec, body: dict[str, Any]) -> str | None:
    duration = body.get("duration", spec.default_duration)
    if not _is_int(duration) or duration not in spec.durations:
        return f"duration: must be one of {list(spec.durations)} for {body['model']}"
    return None


def _prompt_error(endpoint: str, spec: ModelSpec, body: dict[str, Any]) -> str | None:
    text = body.get("promptText")
    needed = endpoint == "text_to_video" or spec.prompt_needed_with_image
    if text is None and not needed:
        return None
    if not isinstance(text, str) or not text.strip():
        return "promptText: required, a non-empty string"
    if len(text.encode("utf-16-le")) // 2 > MAX_PROMPT_UNITS:
        return f"promptText: must be at most {MAX_PROMPT_UNITS} characters"
    return None


def _uri_error(uri: object) -> str | None:
    if not isinstance(uri, str):
        return "promptImage: must be a URI string"
    if uri.startswith(("data:image/", "runway://")):
        return None
    host = urlsplit(uri).hostname
    if not uri.startswith("https://") or not host:
        return "promptImage: must be an HTTPS URL, a runway:// URI or a data URI"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return "promptImage: URLs must use a domain name, not an IP address"


def _image_error(endpoint: str, spec: ModelSpec, body: dict[str, Any]) -> str | None:
    image = body.get("promptImage")
    if endpoint == "text_to_video":
        return None if image is None else "promptImage: not accepted by text_to_video"
    parts = image if isinstance(image, list) else [image]
    if image is None or not parts:
        return "promptImage: required"
    uris = [part.get("uri") if isinstance(part, dict) else part for part in parts]
    return next(filter(None, map(_uri_error, uris)), None)


def _options_error(endpoint: str, spec: ModelSpec, body: dict[str, Any]) -> str | None:
    seed = body.get("seed")
    if seed is not None and not (_is_int(seed) and 0 <= seed <= MAX_SEED):
        return f"seed: must be an integer from 0 to {MAX_SEED}"
    moderation = body.get("contentModeration", {})
    if not isinstance(moderation, dict) or moderation.get("publicFigureThreshold", "auto") not in THRESHOLDS:
        return "contentModeration.publicFigureThreshold: must be auto or low"
    return None


def body_error(endpoint: str, body: object) -> str | None:
    """The 400 message RunwayML would give for this create body; None when it is acceptable."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    spec = MODELS.get(body.get("model"))  # type: ignore[arg-type]
    if spec is None or endpoint not in spec.endpoints:
        usable = [name for name, s in MODELS.items() if endpoint in s.endpoints]
        return f"model: must be one of {', '.join(usable)} for {endpoint}"
    for check in (_ratio_error, _duration_error, _prompt_error, _image_error, _options_error):
        if problem := check(endpoint, spec, body):
            return problem
    return None


# ---------------------------------------------------------------------------------------------------
# Tasks


@dataclass
class SimTask:
    id: str
    model: str
    created_iso: str
    credits: int
    ready: float  # end of PENDING (simulated seconds)
    start: float  # start of RUNNING
    render_s: float
    fault: str | None = None
    cancelled_refunded: bool | None = None  # set when cancelled

    def status(self, now: float) -> str:
        if self.cancelled_refunded is not None:
            return "CANCELLED"
        if now < self.ready:
            return "PENDING"
        if now < self.start:
            return "THROTTLED"
        if self.fault == "moderation":
            return "FAILED"
        if self.fault == "stuck" or now < self.start + self.render_s:
            return "RUNNING"
        return "SUCCEEDED"

    def progress(self, now: float) -> float:
        cap = 0.5 if self.fault == "stuck" else 0.99
        return round(min(cap, max(0.0, (now - self.start) / self.render_s)), 3)

    def to_json(self, now: float, base_url: str) -> dict[str, Any]:
        status = self.status(now)
        data: dict[str, Any] = {"id": self.id, "createdAt": self.created_iso, "status": status}
        if status in ACTIVE:
            data["estimatedCost"] = {"credits": self.credits}
        else:
            data["cost"] = {"credits": 0 if self.cancelled_refunded else self.credits}
        if status == "RUNNING":
            data["progress"] = self.progress(now)
        elif status == "SUCCEEDED":
            data["output"] = [f"{base_url}/outputs/{self.id}.mp4"]
        elif status == "FAILED":
            data["failure"] = "The text prompt was flagged by content moderation."
            data["failureCode"] = "SAFETY.INPUT.TEXT"
        return data


class RunwayMLSim(SimServer):
    """The simulator: a `SimServer` holding tasks, quotas and credits for one organization."""

    def __init__(
        self,
        *,
        port: int = 0,
        faults: FaultPlan | None = None,
        clock: Clock | None = None,
        durations: Durations | None = None,
        queue_s: float = 2.0,
        concurrency: int = 2,
        daily_limit: int = 200,
        credit_balance: int = 100_000,
        api_key: str | None = None,
    ) -> None:
        super().__init__(_Handler, port=port, faults=faults)
        self.clock, self.queue_s = clock or SimClock(), queue_s
        self.durations = durations or Durations(15, 45)
        self.concurrency, self.daily_limit, self.api_key = concurrency, daily_limit, api_key
        self.credit_balance = credit_balance
        self.tasks: dict[str, SimTask] = {}
        self.creates: collections.Counter[tuple[str, str]] = collections.Counter()
        self._created_at: dict[str, list[float]] = collections.defaultdict(list)
        self._slots: dict[str, list[float]] = {}
        self._scripted: list[tuple[str, str | None, str | None, int | None]] = []
        self._lock = threading.Lock()
        self.snapshots = Snapshots()

    def serve_forever(self, poll_interval: float = 0.05) -> None:
        """A short poll interval, so `stop()` returns at once in tests."""
        super().serve_forever(poll_interval)

    def fail_next(
        self, kind: str, *, method: str | None = None, path: str | None = None, status: int | None = None
    ) -> None:
        """Give the next matching request (or, for stuck/moderation, the next task) this fault."""
        if kind not in ALL_FAULTS:
            raise ValueError(f"unknown fault kind: {kind}")
        with self._lock:
            self._scripted.append((kind, method, path, status))

    def take_scripted(self, kinds: tuple[str, ...], method: str, path: str) -> tuple[str, int | None] | None:
        """The first scripted fault of `kinds` matching this request, removed from the script."""
        with self._lock:
            return self._pop_scripted(kinds, method, path)

    def _pop_scripted(self, kinds: tuple[str, ...], method: str, path: str) -> tuple[str, int | None] | None:
        for entry in self._scripted:
            kind, want_method, want_path, status = entry
            if kind in kinds and want_method in (None, method) and want_path in (None, path):
                self._scripted.remove(entry)
                return kind, status
        return None

    def key_ok(self, header: str | None) -> bool:
        key = (header or "").removeprefix("Bearer ")
        return key == self.api_key if self.api_key else bool(KEY_PATTERN.fullmatch(key))

    def create_task(self, endpoint: str, body: object) -> Answer:
        """Validate and admit a create: (HTTP status, JSON body, headers)."""
        if problem := body_error(endpoint, body):
            return 400, {"error": problem}, {}
        assert isinstance(body, dict)
        model, spec = body["model"], MODELS[body["model"]]
        credits = spec.credits(body)
        with self._lock:
            now = self.clock.now()
            if refusal := self._refusal(model, credits, now):
                return refusal
            task = self._admit(endpoint, model, credits, now)
            self.creates[(endpoint, model)] += 1
        return 200, {"id": task.id, "estimatedCost": {"credits": credits}}, {}

    def _refusal(self, model: str, credits: int, now: float) -> Answer | None:
        recent = [t for t in self._created_at[model] if t > now - DAY_S]
        if len(recent) >= self.daily_limit:
            retry_after = {"Retry-After": str(math.ceil(recent[0] + DAY_S - now))}
            return 429, {"error": f"Daily generation limit reached for {model}"}, retry_after
        if credits > self.credit_balance:
            return 400, {"error": "You do not have enough credits to run this task."}, {}
        return None

    def _admit(self, endpoint: str, model: str, credits: int, now: float) -> SimTask:
        scripted = self._pop_scripted(TASK_FAULTS, "POST", f"/v1/{endpoint}")
        fault = scripted[0] if scripted else self.faults.draw(TASK_FAULTS)
        render = self.durations.draw(self.faults.random())
        slots = self._slots.setdefault(model, [0.0] * max(1, self.concurrency))
        slot = min(range(len(slots)), key=slots.__getitem__)
        start = max(now + self.queue_s, slots[slot])
        busy = {"stuck": math.inf, "moderation": 0.0}.get(fault or "", render)
        slots[slot] = start + busy
        created = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        task = SimTask(str(uuid.uuid4()), model, created, credits, now + self.queue_s, start, render, fault)
        self.tasks[task.id] = task
        self._created_at[model].append(now)
        self.credit_balance -= credits
        return task

    def task_json(self, task_id: str) -> dict[str, Any] | None:
        with self._lock:
            task = self.tasks.get(task_id)
            return None if task is None else task.to_json(self.clock.now(), self.base_url)

    def read_task(self, task_id: str, *, stale: bool = False) -> dict[str, Any] | None:
        """A GET of the task: its state now, or (a `stale_read`) an older one (`simcore.Snapshots`)."""
        with self._lock:
            task, now = self.tasks.get(task_id), self.clock.now()
            if task is None:
                return None
            current = task.to_json(now, self.base_url)
        born = now if task.cancelled_refunded is not None else task.ready - self.queue_s

        def earlier(share: float) -> dict[str, Any]:
            return task.to_json(born + share * (now - born), self.base_url)

        answer = self.snapshots.read(task_id, current, self.faults, earlier, force=stale)
        return answer  # type: ignore[return-value]

    def finished(self) -> dict[str, str]:
        """Task id -> status, for every task no longer PENDING, THROTTLED or RUNNING."""
        with self._lock:
            now = self.clock.now()
            return {i: s for i, t in self.tasks.items() if (s := t.status(now)) not in ACTIVE}

    def delete_task(self, task_id: str) -> bool:
        """Cancel an active task (refunded unless RUNNING) or delete a finished one; False if unknown."""
        with self._lock:
            task = self.tasks.get(task_id)
            if task is None:
                return False
            status = task.status(self.clock.now())
            if status not in ACTIVE:
                del self.tasks[task_id]
            else:
                task.cancelled_refunded = status != "RUNNING"
                self.credit_balance += task.credits if task.cancelled_refunded else 0
            return True

    def organization(self) -> dict[str, Any]:
        with self._lock:
            now = self.clock.now()
            used = {m: sum(t > now - DAY_S for t in self._created_at[m]) for m in MODELS}
            limits = {"maxConcurrentGenerations": self.concurrency, "maxDailyGenerations": self.daily_limit}
            return {
                "creditBalance": self.credit_balance,
                "tier": {"maxMonthlyCreditSpend": 1_000_000, "models": {m: dict(limits) for m in MODELS}},
                "usage": {"models": {m: {"dailyGenerations": n} for m, n in used.items()}},
            }

    def has_output(self, task_id: str) -> bool:
        with self._lock:
            task = self.tasks.get(task_id)
            return task is not None and task.status(self.clock.now()) == "SUCCEEDED"


class _Handler(SimHandler):
    server: RunwayMLSim

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        body = self.read_body()
        if (match := OUTPUT_PATH.fullmatch(path)) and self.command in ("GET", "HEAD"):
            return self._output(match.group(1))
        if self._fault(path):
            return None
        if not self.server.key_ok(self.headers.get("Authorization")):
            return self.send_json(401, {"error": "Invalid API key"})
        version = self.headers.get("X-Runway-Version")
        if version != API_VERSION:
            message = "X-Runway-Version header is required" if version is None else "Unsupported version"
            return self.send_json(400, {"error": f"{message}; use {API_VERSION}"})
        return self._route(path, body)

    do_GET = do_HEAD = do_POST = do_DELETE = _dispatch

    def _fault(self, path: str) -> bool:
        error = {"error": "Simulated failure"}
        scripted = self.server.take_scripted(REQUEST_FAULTS, self.command, path)
        if scripted is None:
            return self.inject_request_fault(error)
        self.apply_request_fault(scripted[0], error, scripted[1])
        return True

    def _route(self, path: str, body: bytes) -> None:
        endpoint = path.removeprefix("/v1/")
        if self.command == "POST" and endpoint in BOTH:
            return self._create(endpoint, body)
        if self.command == "GET" and path == "/v1/organization":
            return self.send_json(200, self.server.organization())
        match = TASK_PATH.fullmatch(path)
        if match and self.command == "GET":
            stale = self.server.take_scripted(READ_FAULTS, "GET", path) is not None
            task = self.server.read_task(match.group(1), stale=stale)
            return self.send_json(200, task) if task else self.send_json(404, {"error": "Task not found"})
        if match and self.command == "DELETE":
            found = self.server.delete_task(match.group(1))
            return self.send_empty(204) if found else self.send_json(404, {"error": "Task not found"})
        return self.send_json(404, {"error": "Not found"})

    def _create(self, endpoint: str, raw: bytes) -> None:
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return self.send_json(400, {"error": "Request body is not valid JSON"})
        status, payload, headers = self.server.create_task(endpoint, body)
        if status == 200:
            scripted = self.server.take_scripted(CREATE_FAULTS, "POST", f"/v1/{endpoint}")
            if scripted is not None:
                self.server.faults.count(scripted[0])
            if scripted is not None or self.server.faults.maybe(CREATE_FAULTS):
                return self.lose_answer()  # the task exists and is charged; nobody hears of it
        return self.send_json(status, payload, headers)

    def _output(self, task_id: str) -> None:
        if self.server.has_output(task_id):
            scripted = self.server.take_scripted(DOWNLOAD_FAULTS, self.command, urlsplit(self.path).path)
            if scripted is not None:
                self.server.faults.count(scripted[0])
            return self.send_sample_video(scripted[0] if scripted else None)
        return self.send_json(404, {"error": "Not found"})


def main(argv: list[str] | None = None) -> None:
    """Serve the simulator until interrupted."""
    parser = argparse.ArgumentParser(description="RunwayML API simulator on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    parser.add_argument("--faults", default="", help='fault rates, e.g. "http_5xx=0.1,moderation=0.05"')
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--daily-limit", type=int, default=200)
    args = parser.parse_args(argv)
    faults, clock = FaultPlan.parse(args.faults, seed=args.seed), SimClock(args.speed)
    limits = {"concurrency": args.concurrency, "daily_limit": args.daily_limit}
    sim = RunwayMLSim(port=args.port, faults=faults, clock=clock, **limits)
    print(f"RunwayML simulator on {sim.base_url}", flush=True)
    try:
        sim.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sim.server_close()


if __name__ == "__main__":
    main()
