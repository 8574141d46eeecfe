"""The sample web app in a real browser: headless Chromium, driven over the DevTools protocol, loads
samples/web/ from its own origin on the local stack, makes a video and plays it; the same page from
an origin that CORS_ORIGINS does not list is refused by the browser and says so.

Chromium is Debian's `chromium` package (.ci/run installs it); without it the browser tests skip.
Everything stays on loopback: no proxy, and every host name but 127.0.0.1 resolves to nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket

from local.openapi import SPEC
from local.stack import LocalStack, StackOptions
from local.stack_web import PAGE_DIR, SamplePage
from tests.stack import SCRIPT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ENDED = ("completed", "failed", "cancelled", "timed_out", "refused")  # refused: not sent

pytestmark = pytest.mark.slow
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: apt-get install chromium (.ci/run does)"
)


class Browser:
    """One headless Chromium with one page, driven through the DevTools protocol over a WebSocket."""

    def __init__(self, profile: Path) -> None:
        assert CHROMIUM is not None
        argv = [
            CHROMIUM,
            "--headless",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "--no-proxy-server",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--mute-audio",
            "about:blank",
        ]
        if os.geteuid() == 0:
            argv.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self.log = (profile.parent / "chromium.log").open("wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.events: list[dict[str, Any]] = []
        self._next_id = 0
        port = self._devtools_port(profile / "DevToolsActivePort")
        targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.send("Network.enable")
        self.send("Page.enable")

    def _devtools_port(self, path: Path, timeout_s: float = 30.0) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if path.is_file() and path.read_text().strip():
                return int(path.read_text().split()[0])
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}")
            time.sleep(0.1)
        raise RuntimeError("chromium did not open its DevTools port")

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; events that arrive meanwhile are kept in `events`."""
        self._next_id += 1
        self.ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"not true after {timeout_s} s: {expression}; page: {self.page_state()}")

    def open(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("document.body && document.body.dataset.ready === 'yes'", 15)

    def page_state(self) -> dict[str, Any]:
        return self.evaluate(
            "({status: document.getElementById('status').textContent,"
            " error: document.getElementById('error').textContent})"
        )

    def requests_to(self, fragment: str) -> list[dict[str, Any]]:
        return [
            e["params"]["request"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent" and fragment in e["params"]["request"]["url"]
        ]

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(StackOptions(work_dir=tmp_path_factory.mktemp("stack"), speed=100)) as stack:
        yield stack


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    (tmp_path / "profile").mkdir()
    chromium = Browser(tmp_path / "profile")
    yield chromium
    chromium.close()


def fill_and_submit(browser: Browser, script: str) -> None:
    browser.evaluate(
        f"document.getElementById('script').value = {json.dumps(script)};"
        "document.getElementById('style').value = 'friendly';"
        "document.getElementById('submit').click()"
    )


@needs_chromium
def test_the_page_makes_a_video_and_plays_it_from_its_own_origin(local_stack, browser):
    page = local_stack.page
    assert page is not None
    browser.open(page.origin + "/")
    fill_and_submit(browser, SCRIPT)
    status = "document.getElementById('status').dataset.status"
    ended = browser.wait_for(f"{json.dumps(ENDED)}.includes({status}) && {status}", timeout_s=120)
    assert ended == "completed", browser.page_state()
    ready = browser.wait_for("document.getElementById('video').readyState >= 1 && document.readyState", 30)
    assert ready == "complete"
    assert browser.evaluate("document.getElementById('video').dataset.loaded") == "yes"
    assert browser.evaluate("document.getElementById('error').hidden") is True
    (sent,) = [r for r in browser.requests_to("/generate_video") if r["method"] == "POST"]
    assert sent["headers"]["Authorization"].startswith("Bearer ")
    assert len(sent["headers"]["Idempotency-Key"]) >= 16
    assert browser.requests_to("/runwayml_status_check"), "the page never asked for the job's status"


@needs_chromium
def test_a_page_from_an_origin_not_in_cors_origins_is_refused_by_the_browser(local_stack, browser):
    stranger = SamplePage(local_stack.base_url, local_stack.user_token)
    try:
        assert stranger.origin not in local_stack.settings.cors_origins
        browser.open(stranger.origin + "/")
        fill_and_submit(browser, SCRIPT)
        status = "document.getElementById('status').dataset.status"
        assert browser.wait_for(f"{status} === 'refused' && {status}", timeout_s=30)
        assert browser.evaluate("document.getElementById('error').dataset.code") == "network_error"
        assert "could not be reached" in browser.page_state()["error"]
        failures = [e["params"] for e in browser.events if e.get("method") == "Network.loadingFailed"]
        assert any(f.get("corsErrorStatus") for f in failures), failures
    finally:
        stranger.stop()


def test_the_stack_allows_its_page_origin_and_serves_the_api_reference(local_stack):
    page = local_stack.page
    assert local_stack.settings.cors_origins == (page.origin,)
    docs = requests.get(page.origin + "/docs", timeout=5)
    assert docs.headers["Content-Type"].startswith("text/html")
    for function in ("generate_video", "cancel_video", "runwayml_status_check"):
        assert f"<h2 id='{function}'>" in docs.text
    assert "<script" not in docs.text
    assert "src=" not in docs.text
    assert requests.get(page.origin + "/openapi.yaml", timeout=5).content == SPEC.read_bytes()
    missing = requests.get(page.origin + "/nothing-here", timeout=5)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")


def test_the_page_fetches_nothing_from_another_host():
    html = (PAGE_DIR / "index.html").read_text()
    links = re.findall(r"""(?:src|href)=["']([^"']+)""", html)
    assert links
    assert all(not re.match(r"^[a-z]+:|^//", link) for link in links), links
    code = "\n".join(
        line for line in (PAGE_DIR / "app.js").read_text().splitlines() if not line.lstrip().startswith("//")
    )
    assert "://" not in code
