"""The finalize step end to end: Firestore and Cloud Storage emulators, the simulators' real MP4,
functions-framework, ffmpeg. Cloud Tasks is the in-memory queue: a retry is a second delivery by hand.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import socket
import threading
import time
from datetime import timedelta

import pytest
import requests
import urllib3

from local.simcore import SAMPLE_MP4
from tasks.finalize import Download, FinalizeError, refusal
from tasks.storage import gif_path, video_path
from tests.stack import TASKS_SA

FINALIZE = "finalize_video_task"
SAMPLE = SAMPLE_MP4.read_bytes()
SAMPLE_MD5 = base64.b64encode(hashlib.md5(SAMPLE).digest()).decode()  # noqa: S324 - GCS's checksum


def finalize_tasks(stack):
    return [t for t in stack.queue.tasks if t.function == FINALIZE]


def finalizing_job(stack, **body) -> str:
    """A RunwayML job whose provider task succeeded: finalize enqueued, not yet delivered."""
    answer = stack.generate(provider="runwayml", **body)
    assert answer.status_code == 202, answer.get_json()
    job_id = answer.get_json()["jobId"]
    for _ in range(40):
        if finalize_tasks(stack):
            return job_id
        polls = [t for t in stack.queue.take() if t.function != FINALIZE]
        stack.clock.advance(30)
        for task in polls:
            stack.client(task.function).post(
                "/", json=task.payload, headers=stack.service(TASKS_SA, task.function)
            )
    raise AssertionError("the provider task never finished")


def deliver(stack, payload):
    return stack.client(FINALIZE).post("/", json=payload, headers=stack.service(TASKS_SA, FINALIZE))


def take_finalize(stack) -> dict:
    (task,) = [t for t in stack.queue.take() if t.function == FINALIZE]
    return task.payload


def update_job(stack, job_id, fields):
    stack.deps.store.client.collection(stack.settings.jobs_collection).document(job_id).update(fields)


def stored_bytes(stack, path) -> bytes:
    return stack.storage.bucket.blob(path).download_as_bytes()


def gif_frames(data: bytes) -> int:
    """Count the image descriptors of a GIF by walking its blocks (header, screen, color table...)."""
    assert data[:6] == b"GIF89a"
    pos = 13 + (3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    frames = 0
    while data[pos] != 0x3B:
        if data[pos] == 0x21:  # extension: label, then sub-blocks
            pos += 2
        else:  # 0x2C image descriptor, optional local table, LZW minimum code size, sub-blocks
            assert data[pos] == 0x2C
            frames += 1
            flags = data[pos + 9]
            pos += 10 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0) + 1
        while data[pos] != 0:
            pos += data[pos] + 1
        pos += 1
    return frames


# -- storing --------------------------------------------------------------------------------------


def test_a_succeeded_task_leaves_the_job_processing_until_its_output_is_stored(stack_factory):
    stack = stack_factory(storage=True)
    job_id = finalizing_job(stack)
    job = stack.deps.store.get_job(job_id)
    assert (job.status, job.progress, job.finalizing) == ("processing", 99.0, True)
    assert job.current_attempt.status == "succeeded"
    assert job.output is None
    assert finalize_tasks(stack)[0].payload == {"jobId": job_id, "attemptId": job.current_attempt.attempt_id}


def test_the_mp4_is_stored_with_the_right_size_and_checksums(stack_factory):
    stack = stack_factory(storage=True)
    job_id = finalizing_job(stack)
    answer = deliver(stack, take_finalize(stack))
    assert answer.status_code == 200, answer.get_json()
    job = stack.deps.store.get_job(job_id)
    output = job.output
    assert (job.status, job.progress, job.finalizing) == ("completed", 100.0, False)
    assert output["source"] == "storage"
    assert output["videoPath"] == video_path(job_id)
    assert output["sizeBytes"] == len(SAMPLE)
    assert output["md5"] == SAMPLE_MD5
    assert output["contentType"] == "video/mp4"
    assert stored_bytes(stack, video_path(job_id)) == SAMPLE


def test_the_status_check_hands_out_a_download_link_that_serves_the_video(stack_factory):
    stack = stack_factory(storage=True)
    job_id = finalizing_job(stack)
    deliver(stack, take_finalize(stack))
    answer = stack.client("runwayml_status_check").get(f"/?jobId={job_id}", headers=stack.user("alice"))
    link = answer.get_json()["job"]["output"]["download"]
    assert link["url"].startswith(stack.settings.storage_emulator_host)  # the emulator cannot sign
    assert requests.get(link["url"], timeout=5).content == SAMPLE


def test_a_gif_request_gets_a_palette_gif_beside_the_mp4(stack_factory):
    stack = stack_factory(storage=True)
    job_id = finalizing_job(stack)
    update_job(stack, job_id, {"request.format": "gif"})
    assert deliver(stack, take_finalize(stack)).status_code == 200
    output = stack.deps.store.get_job(job_id).output
    assert output["gifPath"] == gif_path(job_id)
    gif = stored_bytes(stack, gif_path(job_id))
    assert output["gifSizeBytes"] == len(gif)
    assert gif_frames(gif) > 1  # 2 s at 10 fps


def test_duplicate_deliveries_store_once(stack_factory):
    stack = stack_factory(storage=True)
    job_id = finalizing_job(stack)
    payload = take_finalize(stack)
    first, again = deliver(stack, payload), deliver(stack, payload)
    assert (first.get_json()["outcome"], again.get_json()["outcome"]) == ("completed", "skipped")
    assert stack.runway.count("GET", "/outputs/") == 1
    assert stack.deps.store.get_job(job_id).finalize.tries == 1


def test_concurrent_duplicates_download_once(stack_factory):
    stack = stack_factory(storage=True)
    job_id = finalizing_job(stack)
    payload = take_finalize(stack)
    answers: list = []
    threads = [threading.Thread(target=lambda: answers.append(deliver(stack, payload))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(a.status_code for a in answers)[0] == 200
    assert all(a.status_code in (200, 503) for a in answers)
    assert stack.runway.count("GET", "/outputs/") == 1
    assert stack.deps.store.get_job(job_id).status == "completed"


def test_a_finalize_for_a_cancelled_job_stores_nothing(stack_factory):
    stack = stack_factory(storage=True)
    job_id = finalizing_job(stack)
    stack.client("cancel_video").post("/", json={"jobId": job_id}, headers=stack.user("alice"))
    assert deliver(stack, take_finalize(stack)).get_json()["outcome"] == "skipped"
    assert stack.storage.list_prefix(f"jobs/{job_id}/") == []
    assert stack.runway.count("GET", "/outputs/") == 0


def test_a_finalize_for_a_job_that_no_longer_exists_is_acknowledged(stack_factory):
    stack = stack_factory(storage=True)
    answer = deliver(stack, {"jobId": "purged-job", "attemptId": "purged-job-a1"})
    assert (answer.status_code, answer.get_json()["outcome"]) == (200, "missing")


# -- failing clearly ------------------------------------------------------------------------------


def test_a_link_that_404s_fails_the_job_after_the_tries(stack_factory):
    stack = stack_factory(storage=True, FINALIZE_MAX_ATTEMPTS="2")
    job_id = finalizing_job(stack)
    update_job(stack, job_id, {"providerOutput.videoUrls": [f"{stack.runway.base_url}/outputs/gone.mp4"]})
    payload = take_finalize(stack)
    first = deliver(stack, payload)
    assert first.status_code == 503  # Cloud Tasks delivers again
    assert first.get_json()["error"]["code"] == "download_failed"
    assert stack.deps.store.get_job(job_id).status == "processing"
    last = deliver(stack, payload)
    assert last.status_code == 200
    job = stack.deps.store.get_job(job_id)
    assert job.status == "failed"
    assert job.error["code"] == "finalize_failed"
    assert "404" in job.error["message"]
    assert deliver(stack, payload).get_json()["outcome"] == "skipped"  # a late third delivery


class SilentServer:
    """Accepts connections on loopback and never answers (a stalled CDN)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/video.mp4"

    def _accept(self) -> None:
        while True:
            try:
                conn = self.sock.accept()[0]
            except OSError:
                return
            self.connections.append(conn)
            self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        """Silent: the connection is held open, nothing is sent."""

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def silent_server():
    server = SilentServer()
    yield server
    server.close()


def test_a_stalled_download_fails_after_the_tries_without_hanging(stack_factory, silent_server):
    stack = stack_factory(storage=True, FINALIZE_MAX_ATTEMPTS="2", FINALIZE_TIMEOUT_SECONDS="1")
    job_id = finalizing_job(stack)
    update_job(stack, job_id, {"providerOutput.videoUrls": [silent_server.url]})
    payload = take_finalize(stack)
    started = time.monotonic()
    codes = [deliver(stack, payload).status_code for _ in range(2)]
    assert codes == [503, 200]
    assert time.monotonic() - started < 10
    job = stack.deps.store.get_job(job_id)
    assert (job.status, job.error["cause"]) == ("failed", "download_failed")


@pytest.fixture
def finalize_logs():
    """Records of the finalize logger (the project's loggers do not propagate to caplog)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("cvplus.tasks.finalize")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


class TrickleServer(SilentServer):
    """An HTTP server on loopback that announces a large MP4, then sends one byte every `interval_s`
    (a host that keeps each read alive but never finishes); it gives up after `give_up_s`."""

    def __init__(self, interval_s: float = 0.1, give_up_s: float = 15.0) -> None:
        self.interval_s, self.give_up_s = interval_s, give_up_s
        self.sent = 0
        self.closed = threading.Event()
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)  # the request
            head = b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 1000000\r\n\r\n"
            ends = time.monotonic() + self.give_up_s
            try:
                conn.sendall(head)
                while time.monotonic() < ends and not self.closed.is_set():
                    conn.sendall(b"x")
                    self.sent += 1
                    time.sleep(self.interval_s)
            except OSError:  # the client hung up: what the time limit should do
                return

    def close(self) -> None:
        self.closed.set()
        super().close()


@pytest.fixture
def trickle_server():
    server = TrickleServer()
    yield server
    server.close()


def test_a_trickling_download_ends_at_the_time_limit_not_at_a_full_chunk(stack_factory, trickle_server):
    stack = stack_factory(storage=True, FINALIZE_MAX_ATTEMPTS="2", FINALIZE_TIMEOUT_SECONDS="2")
    job_id = finalizing_job(stack)
    update_job(stack, job_id, {"providerOutput.videoUrls": [trickle_server.url]})
    started = time.monotonic()
    answer = deliver(stack, take_finalize(stack))
    elapsed = time.monotonic() - started
    assert answer.status_code == 503  # Cloud Tasks tries again later
    assert answer.get_json()["error"]["code"] == "download_timeout"
    assert elapsed < 2 + 3  # the limit plus slack for a loaded machine
    assert trickle_server.sent > 0  # bytes kept coming: the limit ended it, not a read timeout


def test_a_host_outside_the_allow_list_keeps_the_provider_link_without_a_request(
    stack_factory, finalize_logs
):
    stack = stack_factory(storage=True, OUTPUT_HOSTS="videos.example.com")
    job_id = finalizing_job(stack)
    answer = deliver(stack, take_finalize(stack))
    assert answer.status_code == 200  # nothing a retry could change
    job = stack.deps.store.get_job(job_id)
    assert (job.status, job.progress, job.finalizing, job.error) == ("completed", 100.0, False, None)
    assert job.output == job.provider_output  # exactly as a job completed without a bucket
    assert job.output["source"] == "provider"
    assert job.output["videoUrls"][0].startswith(stack.runway.base_url)
    assert timedelta(hours=23) < job.output["expiresAt"] - job.ended_at <= timedelta(hours=24)
    assert stack.runway.count("GET", "/outputs/") == 0
    assert stack.storage.list_prefix(f"jobs/{job_id}/") == []
    (record,) = [r for r in finalize_logs if getattr(r, "event", None) == "output_host_refused"]
    assert record.levelno == logging.WARNING
    assert (record.host, record.jobId) == ("127.0.0.1", job_id)
    assert "127.0.0.1" in record.getMessage()


def test_without_storage_the_job_completes_with_the_provider_link_marked(stack):
    answer = stack.generate(provider="runwayml")
    job = stack.run_until_terminal(answer.get_json()["jobId"])
    output = job["output"]
    assert (job["status"], output["source"]) == ("completed", "provider")
    assert output["videoUrls"][0].startswith(stack.runway.base_url)
    assert timedelta(hours=23) < output["expiresAt"] - job["endedAt"] <= timedelta(hours=24)
    assert not finalize_tasks(stack)


def test_an_output_over_the_size_limit_fails_at_once(stack_factory):
    stack = stack_factory(storage=True, FINALIZE_MAX_BYTES="1024")
    job_id = finalizing_job(stack)
    assert deliver(stack, take_finalize(stack)).status_code == 200  # a retry cannot shrink it
    job = stack.deps.store.get_job(job_id)
    assert (job.status, job.error["cause"]) == ("failed", "output_too_large")
    assert stack.storage.list_prefix(f"jobs/{job_id}/") == []


def body_without_length(data: bytes) -> requests.Response:
    """A streamed response as requests builds it, with no Content-Length to check up front."""
    response = requests.Response()
    response.status_code = 200
    response.raw = urllib3.HTTPResponse(body=io.BytesIO(data), preload_content=False)
    return response


def test_the_stream_stops_at_the_size_limit_even_without_a_content_length():
    download = Download(body_without_length(SAMPLE), max_bytes=4096, deadline=time.monotonic() + 5)
    with pytest.raises(FinalizeError) as caught:
        download.read(len(SAMPLE))
    assert (caught.value.code, caught.value.retryable) == ("output_too_large", False)


def test_the_stream_counts_and_checksums_what_it_passes_on():
    download = Download(body_without_length(SAMPLE), max_bytes=len(SAMPLE), deadline=time.monotonic() + 5)
    data = b"".join(iter(lambda: download.read(1000), b""))
    assert (data, download.count, download.tell(), download.md5) == (
        SAMPLE,
        len(SAMPLE),
        len(SAMPLE),
        SAMPLE_MD5,
    )


# -- the allow-list (pure) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://dnznrvs05pmza.cloudfront.net/a.mp4?_jwt=x", True),
        ("https://files2.heygen.ai/v/a.mp4", True),
        ("https://heygen.ai.evil.com/a.mp4", False),
        ("https://evilheygen.ai/a.mp4", False),
        ("http://files2.heygen.ai/a.mp4", False),  # plain http only on loopback
        ("https://user:pw@files2.heygen.ai/a.mp4", False),
        ("http://127.0.0.1:8080/outputs/a.mp4", False),  # loopback, but not listed
        ("file:///etc/passwd", False),
        ("not a url", False),
    ],
)
def test_only_listed_hosts_may_be_fetched(url, allowed):
    hosts = ("dnznrvs05pmza.cloudfront.net", ".heygen.ai")
    assert (refusal(url, hosts) is None) is allowed


def test_loopback_http_is_allowed_when_listed():
    assert refusal("http://127.0.0.1:8080/outputs/a.mp4", ("127.0.0.1",)) is None
    assert refusal("http://127.0.0.1:8080/outputs/a.mp4", ("127.0.0.1:8080",)) is None
    assert refusal("http://127.0.0.1:8080/outputs/a.mp4", ("127.0.0.1:9090",)) is not None


def test_a_delivery_that_finds_the_lease_held_looks_again_when_the_lease_ends(stack_factory):
    stack = stack_factory(storage=True)
    job_id = finalizing_job(stack)
    payload = take_finalize(stack)
    claim = stack.deps.store.claim_finalize(job_id, payload["attemptId"], lease_s=30, max_tries=5)
    assert claim.verdict == "go"  # a try that then dies, holding its lease
    answer = deliver(stack, payload)
    assert (answer.status_code, answer.get_json()["outcome"]) == (200, "deferred")
    (again,) = [t for t in stack.queue.take() if t.function == FINALIZE]
    assert again.payload == payload
    assert 25 <= again.delay_s <= 32  # when the lease ends, whatever the queue's own retry policy
    assert deliver(stack, payload).get_json()["outcome"] == "deferred"
    assert [t for t in stack.queue.take() if t.function == FINALIZE] == []  # one look per lease
