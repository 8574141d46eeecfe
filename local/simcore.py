"""Shared machinery of the provider simulators: a loopback HTTP server, seeded faults, a clock.

A simulator is a `SimServer` subclass's handler plus its own state; this module gives it:

- `FaultPlan`: rates per fault kind, drawn from one seeded `random.Random`, so a run repeats.
  Kinds: `http_429` (with Retry-After), `http_5xx`, `read_timeout` (holds the request past the
  client's timeout, then drops it), `reset` (closes the connection without an answer),
  `malformed` (a 200 whose body is not JSON), `stuck` (a task that never finishes) and
  `moderation` (a task that fails with a content code). The first five apply to requests, the
  last two to tasks at creation. Four more kinds are drawn only where they apply, and only when
  their rate is not zero (so plans without them draw exactly as before): `stale_read` (a status
  read answers an older snapshot that an earlier read already returned, as an eventually
  consistent API would: `Snapshots`), `answer_lost` (a create is processed and charged, then the
  connection is dropped before the answer), `truncated_download` (the output file announces its
  full Content-Length and stops part-way) and `trickle_download` (the output file is sent at
  `trickle_bps` bytes per second). Every fault injected is counted in `FaultPlan.injected`.
- `SimClock`: real time scaled by a factor, so "30 s renders" take 0.3 s in tests.
- `Durations`: a seeded log-normal-ish spread of render times between a low and a high bound.
- `SimServer`: a threading HTTP server on 127.0.0.1 and a free port, started in a thread, with a
  request log (method, path, status) that tests use to count what the provider really sent.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SAMPLE_MP4 = Path(__file__).resolve().parent / "assets" / "sample.mp4"

REQUEST_FAULTS = ("http_429", "http_5xx", "read_timeout", "reset", "malformed")
TASK_FAULTS = ("stuck", "moderation")
READ_FAULTS = ("stale_read",)  # status reads of a task
CREATE_FAULTS = ("answer_lost",)  # after a create was processed
DOWNLOAD_FAULTS = ("truncated_download", "trickle_download")  # GET of an output file
ALL_FAULTS = REQUEST_FAULTS + TASK_FAULTS + READ_FAULTS + CREATE_FAULTS + DOWNLOAD_FAULTS


@dataclass
class FaultPlan:
    """Seeded fault injection: `rates` maps a fault kind to its probability (0-1)."""

    rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    retry_after_s: int = 1
    hold_s: float = 2.0  # how long a `read_timeout` holds the request before dropping it
    trickle_bps: int = 4096  # how fast a `trickle_download` sends the file
    truncate_at: float = 0.5  # the share of the file a `truncated_download` sends

    def __post_init__(self) -> None:
        unknown = set(self.rates) - set(ALL_FAULTS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()

    @classmethod
    def parse(cls, spec: str, seed: int = 0) -> FaultPlan:
        """From `"http_5xx=0.1,http_429=0.05"` (the command-line form)."""
        rates = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            kind, _, rate = part.partition("=")
            rates[kind.strip()] = float(rate)
        return cls(rates=rates, seed=seed)

    def draw(self, kinds: tuple[str, ...]) -> str | None:
        """At most one fault among `kinds`, or None; counted when injected."""
        with self._lock:
            roll = self._rng.random()
            edge = 0.0
            for kind in kinds:
                edge += self.rates.get(kind, 0.0)
                if roll < edge:
                    self.injected[kind] += 1
                    return kind
        return None

    def count(self, kind: str) -> None:
        """Count a fault injected by a script rather than drawn."""
        with self._lock:
            self.injected[kind] += 1

    def maybe(self, kinds: tuple[str, ...]) -> str | None:
        """`draw`, but without touching the random sequence when none of `kinds` has a rate."""
        if not any(self.rates.get(kind, 0.0) > 0 for kind in kinds):
            return None
        return self.draw(kinds)

    def random(self) -> float:
        with self._lock:
            return self._rng.random()


class Snapshots:
    """What each task looked like to earlier status reads, so a `stale_read` can answer one of them.

    `read(key, current, faults, earlier)` remembers `current` and returns it, unless the plan draws
    a `stale_read` and an older answer differs: one an earlier read of `key` returned (RUNNING at
    9 % after 43 %), or else, when given, `earlier(f)`: the task as it was at the share `f` of its
    life so far (drawn; 0 is its creation), as a replica that has not caught up would show it
    (RUNNING after SUCCEEDED, when a render ends between two polls). The draw is made only when
    there is an older answer, so every counted stale read is really stale.
    """

    KEEP = 8

    def __init__(self) -> None:
        self._seen: dict[object, list[object]] = {}
        self._lock = threading.Lock()

    def read(
        self,
        key: object,
        current: object,
        faults: FaultPlan,
        earlier: Callable[[float], object] | None = None,
        *,
        force: bool = False,
    ) -> object:
        """`force` (a scripted stale read): the oldest older answer, when there is one."""
        with self._lock:
            seen = self._seen.setdefault(key, [])
            older = [snapshot for snapshot in seen if snapshot != current]
            first = earlier(0.0) if earlier is not None and not older else None
            if first is not None and first != current:
                older = [first]
            if older and force:
                faults.count(READ_FAULTS[0])
                return older[0]
            if older and faults.maybe(READ_FAULTS):
                if first is not None and earlier is not None:
                    lagged = earlier(faults.random())
                    return first if lagged == current else lagged
                return older[int(faults.random() * len(older)) % len(older)]
            if not seen or seen[-1] != current:
                seen.append(current)
                del seen[: -self.KEEP]
            return current


class SimClock:
    """Simulated seconds: real monotonic time multiplied by `speed` (100 => 1 real s = 100 s)."""

    def __init__(self, speed: float = 1.0) -> None:
        self.speed = speed
        self._start = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._start) * self.speed


class ManualClock:
    """Simulated seconds that move only when a test says so."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start  # tests may also set it directly

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass(frozen=True)
class Durations:
    """Render durations (simulated seconds) between `low` and `high`, skewed towards the middle."""

    low: float
    high: float

    def draw(self, rand: float) -> float:
        mid = math.log(self.low * self.high) / 2
        spread = (math.log(self.high) - math.log(self.low)) / 4
        # inverse of a logistic CDF: smooth, seeded, clipped to the bounds
        rand = min(max(rand, 1e-6), 1 - 1e-6)
        value = math.exp(mid + spread * math.log(rand / (1 - rand)) / 1.8)
        return min(self.high, max(self.low, value))


class SimHandler(BaseHTTPRequestHandler):
    """Base handler: JSON helpers, request log, and request-level fault injection."""

    server: SimServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        self.send_raw(status, json.dumps(payload).encode(), "application/json", headers)

    def send_raw(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.server.record(self.command, self.path, status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_empty(self, status: int) -> None:
        self.server.record(self.command, self.path, status)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def inject_request_fault(self, error_body: object) -> bool:
        """Apply a drawn request fault; True when the request has been answered (or dropped)."""
        fault = self.server.faults.draw(REQUEST_FAULTS)
        if fault is None:
            return False
        self.apply_request_fault(fault, error_body)
        return True

    def apply_request_fault(self, fault: str, error_body: object, status: int | None = None) -> None:
        """Answer (or drop) this request as `fault` says; `status` pins the code of an `http_5xx`."""
        if fault == "http_429":
            retry = str(self.server.faults.retry_after_s)
            self.send_json(429, error_body, {"Retry-After": retry})
        elif fault == "http_5xx":
            code = status if status is not None else self.server.faults_rng_choice((500, 502, 503, 504))
            self.send_json(code, error_body)
        elif fault == "malformed":
            self.send_raw(200, b'{"id": "trunc', "application/json")
        else:  # read_timeout or reset: no answer at all
            self.server.record(self.command, self.path, 0)
            if fault == "read_timeout":
                time.sleep(self.server.faults.hold_s)
            self.drop_connection()

    def send_sample_video(self, fault: str | None = None) -> None:
        """The sample MP4; a GET may get a download fault (`fault`, else drawn from the plan)."""
        body = SAMPLE_MP4.read_bytes()
        if self.command == "GET" and fault is None:
            fault = self.server.faults.maybe(DOWNLOAD_FAULTS)
        if fault is None or self.command != "GET":
            return self.send_raw(200, body, "video/mp4")
        self.server.record(self.command, self.path, 200)
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(body)))  # always the full length
        self.end_headers()
        with contextlib.suppress(OSError):
            if fault == "truncated_download":
                self.wfile.write(body[: max(1, int(len(body) * self.server.faults.truncate_at))])
                self.wfile.flush()
                self.drop_connection()
                return None
            piece = max(1, self.server.faults.trickle_bps // 10)
            for start in range(0, len(body), piece):
                self.wfile.write(body[start : start + piece])
                self.wfile.flush()
                time.sleep(piece / self.server.faults.trickle_bps)
        return None

    def drop_connection(self) -> None:
        """Close this connection without (the rest of) an answer."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def lose_answer(self) -> None:
        """An `answer_lost`: the request was processed, but no answer reaches the caller."""
        self.server.record(self.command, self.path, 0)
        self.drop_connection()


class SimServer(ThreadingHTTPServer):
    """A simulator on 127.0.0.1; `start()` serves in a daemon thread, `stop()` shuts down."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler: type[SimHandler], *, port: int = 0, faults: FaultPlan | None = None):
        super().__init__(("127.0.0.1", port), handler)
        self.faults = faults or FaultPlan()
        self.requests: list[tuple[str, str, int]] = []
        self._log_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def record(self, method: str, path: str, status: int) -> None:
        with self._log_lock:
            self.requests.append((method, path.split("?")[0], status))

    def count(self, method: str, path_prefix: str) -> int:
        """How many requests with this method reached a path starting with `path_prefix`."""
        with self._log_lock:
            return sum(1 for m, p, _ in self.requests if m == method and p.startswith(path_prefix))

    def faults_rng_choice(self, options: tuple[int, ...]) -> int:
        return options[int(self.faults.random() * len(options)) % len(options)]

    def start(self) -> SimServer:
        self._thread = threading.Thread(target=self.serve_forever, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
