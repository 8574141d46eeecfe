"""A loopback proxy between the Cloud Tasks emulator and the functions: duplicates, late copies, backoff.

The chaos run points the functions' `FUNCTIONS_BASE_URL` (the URL every task targets, and the OIDC
audience its token is minted for) at this proxy, which forwards each delivery to the real function
server at the same path, headers and body::

    emulator --POST /runwayml_polling_task--> proxy --same request--> functions (local.serve)
                                                |--(p_duplicate) a second copy at once, in parallel
                                                `--(p_late) a copy after 0.5-3 s: it arrives after
                                                   later polls of the same task have been applied

The emulator's answer is the function's answer to the original, so its retry on non-2xx stays as
it is. While the function host is down (killed and restarting) the proxy retries the forward with
backoff for up to `down_wait_s` before answering 503, standing in for Cloud Tasks' retry backoff
that the emulator lacks (it retries at once and gives up after a few tries). Copies are fire and
forget; their answers are only counted. Every choice comes from one seeded `random.Random`.
`in_flight()` gives the bodies of the deliveries being forwarded right now (a task the emulator is
dispatching may already be gone from its queue listing): the chaos run's stranded-job check counts
them as scheduled.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}


@dataclass(frozen=True)
class ProxyPlan:
    """How often a delivery is copied, and how long a down function host is waited for."""

    p_duplicate: float = 0.1
    p_late: float = 0.1
    late_s: tuple[float, float] = (0.5, 3.0)
    down_wait_s: float = 20.0
    forward_timeout_s: float = 60.0
    seed: int = 0


class DeliveryProxy:
    """`start()` serves on 127.0.0.1 in a thread; `target` is the function server's base URL."""

    def __init__(self, plan: ProxyPlan, target: str | None = None) -> None:
        self.plan = plan
        self.target = target
        self.stats: Counter[str] = Counter()
        self.answers: list[tuple[str, int, bytes]] = []  # (path, status, body) of every forward
        self._in_flight: Counter[bytes] = Counter()  # bodies being forwarded now
        self._rng = random.Random(plan.seed)
        self._lock = threading.Lock()
        self._copies = ThreadPoolExecutor(max_workers=4, thread_name_prefix="proxy-copy")
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="delivery-proxy", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> DeliveryProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and wait (bounded by the forward timeout) for copies still in flight."""
        self._server.shutdown()
        self._server.server_close()
        self._copies.shutdown(wait=True, cancel_futures=True)
        self._thread.join(timeout=5)

    # -- one delivery -------------------------------------------------------------------------------

    def deliver(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        """Forward the original (waiting out a down host); schedule the copies the plan draws."""
        with self._lock:
            duplicate = self._rng.random() < self.plan.p_duplicate
            late = self._rng.random() < self.plan.p_late
            delay = self._rng.uniform(*self.plan.late_s)
            self.stats["deliveries"] += 1
        if duplicate:
            self._count("duplicates")
            self._copies.submit(self._copy, path, headers, body, 0.0)
        if late:
            self._count("lateCopies")
            self._copies.submit(self._copy, path, headers, body, delay)
        with self._tracked(body):  # while the host is down too: the emulator is still dispatching it
            return self._forward_waiting(path, headers, body)

    def _copy(self, path: str, headers: dict[str, str], body: bytes, delay_s: float) -> None:
        time.sleep(delay_s)  # a late copy: later polls of the same task overtake it
        try:
            with self._tracked(body):
                status, _ = self._forward(path, headers, body)
        except (OSError, http.client.HTTPException):
            status = 0
        self._count(f"copyStatus{status}")

    def _forward_waiting(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        deadline = time.monotonic() + self.plan.down_wait_s
        pause = 0.2
        while True:
            try:
                status, answer = self._forward(path, headers, body)
            except (OSError, http.client.HTTPException):  # refused or reset: down, or killed mid-request
                self._count("hostDown")
                if time.monotonic() + pause > deadline:
                    self._count("gaveUp")
                    return 503, b'{"error": {"code": "host_down", "message": "function host unreachable"}}'
                time.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            with self._lock:
                self.answers.append((path, status, answer))
            self._count(f"status{status}")
            return status, answer

    def _forward(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if self.target is None:
            raise ConnectionRefusedError("no target yet")
        parts = urlsplit(self.target)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.plan.forward_timeout_s)
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    @contextlib.contextmanager
    def _tracked(self, body: bytes) -> Iterator[None]:
        with self._lock:
            self._in_flight[body] += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[body] -= 1
                if self._in_flight[body] <= 0:
                    del self._in_flight[body]

    def in_flight(self) -> list[bytes]:
        """The bodies of the deliveries being forwarded to the function host right now."""
        with self._lock:
            return list(self._in_flight)

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                status, answer = proxy.deliver(self.path, headers, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler
