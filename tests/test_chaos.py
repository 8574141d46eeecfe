"""The chaos run: the accounting catches what it must, the delivery proxy copies and waits, and a short
run over the whole local stack ends with every invariant holding.

The short run (`SHORT`, about 90 s: every job's 60 s deadline must pass when one is stuck) is the
in-suite version of `make chaos`; its figures go to build/reliability/chaos-suite.json. The run is
made once per session (`short_chaos_run`) and also read by tests/test_secrets.py, which is why its
keys and secrets carry recognisable markers.
"""

from __future__ import annotations

import functools
import json
import shutil
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from local.chaos import DEFAULT_FAULTS, ChaosConfig, run
from local.chaos_checks import Books, TransitionLog, account, by_invariant, stranded_reason
from local.chaos_report import ChaosResult, render
from local.delivery_proxy import DeliveryProxy, ProxyPlan
from local.procs import free_port
from tests.conftest import ROOT

RUNWAYML_KEY = "key_" + "f00d" * 32
HEYGEN_KEY = "hg_MARKER_5ec7e7_heygen_api_key"
HEYGEN_WEBHOOK_SECRET = "whsec_MARKER_5ec7e7_heygen_webhook"
RUNWAYML_WEBHOOK_SECRET = "whsec_TUFSS0VSXzVlYzdlN19ydW53YXltbA=="  # base64 of MARKER_5ec7e7_runwayml
MARKERS = (
    RUNWAYML_KEY,
    HEYGEN_KEY,
    HEYGEN_WEBHOOK_SECRET,
    RUNWAYML_WEBHOOK_SECRET,
    "MARKER_5ec7e7",
    "f00df00d",
)
WORK_DIR = ROOT / "build" / "chaos-suite"
SHORT = ChaosConfig(
    jobs=24,
    seed=11,
    kills=1,
    clients=3,
    work_dir=WORK_DIR,
    runwayml_key=RUNWAYML_KEY,
    heygen_key=HEYGEN_KEY,
    webhook_secret=HEYGEN_WEBHOOK_SECRET,
    extra_env={"RUNWAYML_WEBHOOK_SECRET": RUNWAYML_WEBHOOK_SECRET},
    # 24 jobs make few status reads, creates and downloads: the later fault kinds are made likelier
    # here so that the short run meets each of them
    faults=DEFAULT_FAULTS | {"stale_read": 0.3, "answer_lost": 0.06, "trickle_download": 0.1},
    p_cancel_in_create=0.15,
)


@functools.cache
def short_chaos_run() -> ChaosResult:
    """The short chaos run, made once per session (logs start empty, in build/chaos-suite/logs)."""
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    result = run(SHORT)
    out = ROOT / "build" / "reliability" / "chaos-suite.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(result.to_json())
    print(render(result))
    return result


# -- the accounting ------------------------------------------------------------------------------------

T = datetime(2030, 1, 1, tzinfo=UTC)


def job(status="completed", attempts=(("j1-a1", "heygen", "succeeded", "v1"),)):
    return {
        "status": status,
        "progress": 100.0,
        "attempts": [{"attemptId": a, "provider": p, "status": s, "taskId": t} for a, p, s, t in attempts],
    }


def clean_books(**changes) -> Books:
    books = Books(
        jobs={"j1": job()},
        tasks={("heygen", "v1"): {"jobId": "j1", "attemptId": "j1-a1"}},
        runway_seeds={},
        job_for_seed={1: "j1"},
        heygen_callbacks={"v1": "j1"},
        heygen_by_key={"j1-a1": 1},
        accepted={"j1"},
    )
    for name, value in changes.items():
        setattr(books, name, value)
    return books


def test_clean_books_have_no_violations():
    assert account(clean_books()) == []


@pytest.mark.parametrize(
    ("changes", "invariant"),
    [
        ({"jobs": {"j1": job("processing")}}, "lost"),
        ({"accepted": {"j1", "j2"}}, "lost"),
        ({"jobs": {"j1": job(attempts=(("j1-a1", "heygen", "active", "v1"),))}}, "lost"),
        ({"heygen_callbacks": {"v1": "j1", "v2": "j1"}}, "double_charge"),
        ({"heygen_by_key": {"j1-a1": 2}}, "double_charge"),
        (
            {
                "jobs": {"j1": job(attempts=(("j1-a1", "runwayml", "succeeded", "r1"),))},
                "tasks": {("runwayml", "r1"): {"jobId": "j1", "attemptId": "j1-a1"}},
                "runway_seeds": {"r1": 1, "r2": 1},
                "heygen_callbacks": {},
            },
            "double_charge",
        ),
        ({"tasks": {}}, "counts"),
        ({"runway_seeds": {"r1": 1}}, "counts"),  # a RunwayML task for a job that never tried RunwayML
        ({"jobs": {"j1": job(attempts=(("j1-a1", "heygen", "succeeded", "v9"),))}}, "counts"),
        ({"stranded": {"j1": "finalizing (heygen task v1 ended); nothing scheduled for 6 s"}}, "lost"),
        (
            {
                "jobs": {"j1": job() | {"output": {"source": "storage", "sizeBytes": 10}}},
                "output_bytes": 9393,
            },
            "counts",
        ),  # a truncated download kept
    ],
)
def test_the_accounting_names_each_broken_invariant(changes, invariant):
    counts = by_invariant(account(clean_books(**changes)))
    assert counts[invariant] >= 1
    assert sum(counts.values()) == counts[invariant], counts


def test_a_stored_video_of_the_full_size_is_no_violation():
    books = clean_books(
        jobs={"j1": job() | {"output": {"source": "storage", "sizeBytes": 9393}}}, output_bytes=9393
    )
    assert account(books) == []


ENDED = {"heygen": {"v1": "completed"}, "runwayml": {"r1": "SUCCEEDED"}}


@pytest.mark.parametrize(
    ("doc", "stranded"),
    [
        (job("processing", (("a1", "heygen", "active", "v1"),)), True),  # ended at the provider, still active
        (job("processing", (("a1", "heygen", "succeeded", "v1"),)) | {"finalizing": True}, True),
        (job("processing", (("a1", "runwayml", "active", "r2"),)), False),  # the provider still runs it
        (job("processing", (("a1", "heygen", "failed", "v1"), ("a2", "runwayml", "active", "r2"))), False),
        (job("queued", (("a1", "heygen", "submitting", None),)), False),  # the crash window: the cleanup's
        (job("completed", (("a1", "heygen", "succeeded", "v1"),)), False),
    ],
)
def test_a_job_is_stranded_only_when_it_waits_on_a_task_the_provider_ended(doc, stranded):
    assert (stranded_reason(doc, ENDED) is not None) is stranded


@pytest.mark.parametrize(
    "states",
    [
        [("processing", 40.0, ()), ("queued", 40.0, ())],  # status back
        [("processing", 40.0, ()), ("processing", 30.0, ())],  # progress back
        [("completed", 100.0, ()), ("failed", 100.0, ())],  # a terminal status changed
        [("queued", 0.0, (("a1", "succeeded"),)), ("queued", 0.0, (("a1", "active"),))],  # attempt reopened
    ],
)
def test_the_transition_log_shows_every_backward_move(states):
    log = TransitionLog()
    for status, progress, attempts in states:
        doc = {"status": status, "progress": progress}
        doc["attempts"] = [{"attemptId": a, "status": s} for a, s in attempts]
        log.record("jobs/j1", doc)
    assert by_invariant(account(clean_books(states=log.states)))["backward"] == 1


# -- the delivery proxy --------------------------------------------------------------------------------


class Recorder:
    """A function host stand-in that counts what arrives; it can start late (the host was down)."""

    def __init__(self, port: int) -> None:
        self.port, self.bodies, self.server = port, [], None

    def start(self) -> Recorder:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                recorder.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def test_the_proxy_duplicates_and_sends_late_copies():
    host = Recorder(free_port()).start()
    proxy = DeliveryProxy(
        ProxyPlan(p_duplicate=1.0, p_late=1.0, late_s=(0.2, 0.3)), f"http://127.0.0.1:{host.port}"
    )
    proxy.start()
    try:
        answer = requests.post(f"{proxy.base_url}/runwayml_polling_task", data=b'{"n": 1}', timeout=10)
        assert answer.status_code == 200
    finally:
        proxy.stop()  # waits for the copies
        host.stop()
    assert host.bodies == [b'{"n": 1}'] * 3
    assert (proxy.stats["duplicates"], proxy.stats["lateCopies"]) == (1, 1)


def test_the_proxy_names_the_deliveries_it_is_forwarding():
    port = free_port()
    proxy = DeliveryProxy(ProxyPlan(p_duplicate=0.0, p_late=0.0, down_wait_s=10), f"http://127.0.0.1:{port}")
    proxy.start()
    host = Recorder(port)
    threading.Timer(0.8, host.start).start()  # down at first: the delivery waits in the proxy
    seen: list[list[bytes]] = []
    threading.Timer(0.4, lambda: seen.append(proxy.in_flight())).start()
    try:
        requests.post(f"{proxy.base_url}/runwayml_polling_task", data=b'{"jobId": "j1"}', timeout=20)
    finally:
        proxy.stop()
        host.stop()
    assert seen == [[b'{"jobId": "j1"}']]
    assert proxy.in_flight() == []


def test_the_proxy_waits_for_a_host_that_is_restarting():
    port = free_port()
    proxy = DeliveryProxy(ProxyPlan(p_duplicate=0.0, p_late=0.0, down_wait_s=10), f"http://127.0.0.1:{port}")
    proxy.start()
    host = Recorder(port)
    threading.Timer(0.8, host.start).start()  # the host comes back after a while
    try:
        answer = requests.post(f"{proxy.base_url}/runwayml_polling_task", data=b"{}", timeout=20)
    finally:
        proxy.stop()
        host.stop()
    assert answer.status_code == 200
    assert proxy.stats["hostDown"] >= 1
    assert host.bodies == [b"{}"]


# -- the short run ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_short_chaos_run_keeps_every_invariant():
    result = short_chaos_run()
    details = "\n".join(f"{v.invariant}: {v.detail}" for v in result.violations)
    assert result.violations == [], details
    assert result.books["jobs"] == SHORT.jobs
    assert set(result.outcomes) <= {"completed", "failed", "cancelled", "timed_out"}
    assert sum(result.faults.values()) > 0
    assert sum(result.cancels_in_create.values()) > 0
    assert result.deliveries["duplicates"] + result.deliveries["lateCopies"] > 0
    assert len(result.kills) == SHORT.kills
    assert result.cleanup.get("status") == 200
    assert result.transitions > result.books["jobs"]
    assert json.loads(result.to_json())["violations"] == dict.fromkeys(by_invariant([]), 0)
