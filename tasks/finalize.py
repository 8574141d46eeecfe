"""The finalize step: copy a finished video from the provider into our bucket, GIF included.

Provider links expire (RunwayML 24-48 h, HeyGen days), so with STORAGE_BUCKET set a completed
provider task leaves the job `processing` at 99 % with `finalizing: true`, and the poll step enqueues
one named task per attempt (`finalize_video_task {jobId, attemptId}`). Each delivery::

    claim (one change: lease + try count) --done--> 200, nothing else (duplicate or late delivery)
        |                                  --busy--> 200 deferred: another delivery holds the lease;
        |                                     a finalize task is enqueued for when the lease ends
        |                                  --exhausted--> the job fails (finalize_failed)
        v
    URL allowed? (OUTPUT_HOSTS; https, or http on loopback) --no--> no request is made; the job
        |     completes with the provider's own link (`source: "provider"`, its `expiresAt`, as without
        |     a bucket) and a WARNING `event: output_host_refused` names the host, to extend the list
        v
    stream the MP4 (size limit; the time limit on every read) -> gs://BUCKET/jobs/{jobId}/video.mp4
        |      (MD5 + CRC32C kept)
        v
    format gif? ffmpeg: fps=10,scale=480:-1:flags=lanczos,split[a][b];[a]palettegen[p];[b][p]paletteuse
        |          (first GIF_MAX_SECONDS) -> jobs/{jobId}/video.gif
        v
    complete (one change) --the job ended meanwhile (cancelled)--> delete the objects again
        `--> job `completed`, output {source: "storage", videoPath, gifPath, sizeBytes, md5, crc32c, ...}

A try that fails answers 503 so Cloud Tasks retries (its backoff); the tries are counted on the job
(`finalize.tries`), and the try that reaches FINALIZE_MAX_ATTEMPTS, or any failure that cannot get
better (too large, no output, ffmpeg refuses the file), fails the job with a clear
error and answers 200. No side effect runs inside a store change; the lease only keeps concurrent
duplicates from doing the work twice, and a lease left by a crashed try expires
(FINALIZE_TIMEOUT_SECONDS + 2 min). The GIF is always made here, from the stored MP4's bytes, so
every job's GIF has the same size and palette whichever provider made the video (HeyGen's own
`gif_url` is a preview of its choosing).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urljoin

import google_crc32c
import requests
import urllib3

from config import Settings
from errors import AppError
from jobs.records import Job
from jobs.store import JobNotFound, JobStore
from logs import get_logger
from providers.urls import host_of
from providers.urls import output_url_problem as refusal
from tasks.queue import TaskQueue
from tasks.storage import StorageError, StoredObject, VideoStorage, gif_path, job_prefix, video_path

log = get_logger("tasks.finalize")

PIECE_BYTES = 64 * 1024
MAX_REDIRECTS = 3
# A try is bounded by FINALIZE_TIMEOUT_SECONDS (download, upload and GIF all count against it), so
# the lease needs little more: a try killed with its lease blocks the job for about this long.
LEASE_SLACK_S = 15.0
GIF_MAX_SECONDS = 15
GIF_FILTER = "fps=10,scale=480:-1:flags=lanczos,split[a][b];[a]palettegen[p];[b][p]paletteuse"


class FinalizeError(AppError):
    """One try failed; `retryable` says whether another try can do better."""

    retryable = True

    def __init__(self, code: str, message: str, *, retryable: bool = True) -> None:
        super().__init__(message, code=code, retryable=retryable)


class HostRefused(FinalizeError):
    """The output URL (or a redirect) points outside OUTPUT_HOSTS: the job keeps the provider's link."""

    def __init__(self, message: str, host: str | None) -> None:
        super().__init__("output_host_refused", message, retryable=False)
        self.host = host


@dataclass(frozen=True)
class FinalizeResult:
    outcome: str  # completed | kept_provider_link | skipped | deferred | retry | failed | discarded | missing
    job_id: str
    error: dict[str, Any] | None = None

    @property
    def retry(self) -> bool:
        """Cloud Tasks should deliver again (the handler answers 503)."""
        return self.outcome == "retry"


# ---------------------------------------------------------------------------------------------------
# Streaming download


class Download:
    """A file-like reader over an HTTP body: size and time limits, MD5 + CRC32C, optional copy.

    The time limit holds for the whole body, however slowly it comes: each read takes what has
    arrived (`read1`, never waiting for a full piece) and the socket's timeout is the time left, so a
    host sending a byte a second is cut off at the deadline, not after 64 KiB.
    """

    def __init__(
        self, response: requests.Response, *, max_bytes: int, deadline: float, copy: BinaryIO | None = None
    ) -> None:
        self._raw = response.raw
        self._buffer = b""
        self.max_bytes, self.deadline, self.copy = max_bytes, deadline, copy
        self.count = 0
        self._md5 = hashlib.md5()  # noqa: S324 - an integrity checksum GCS also reports, not security
        self._crc = google_crc32c.Checksum()

    def read(self, size: int = -1) -> bytes:
        pieces, have = [self._buffer], len(self._buffer)
        while size < 0 or have < size:
            piece = self._next_piece()
            if not piece:
                break
            pieces.append(piece)
            have += len(piece)
        data = b"".join(pieces)
        cut = len(data) if size < 0 else size
        chunk, self._buffer = data[:cut], data[cut:]
        return chunk

    def _next_piece(self) -> bytes:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _too_slow()
        _bound_socket(self._raw, left)
        try:
            piece = self._raw.read1(PIECE_BYTES, decode_content=True)
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise _too_slow() from exc
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
            raise FinalizeError("download_failed", f"the download broke off ({type(exc).__name__})") from exc
        self.count += len(piece)
        if self.count > self.max_bytes:
            raise FinalizeError(
                "output_too_large", f"the output exceeds {self.max_bytes} bytes", retryable=False
            )
        self._md5.update(piece)
        self._crc.update(piece)
        if self.copy is not None:
            self.copy.write(piece)
        return piece

    def tell(self) -> int:
        return self.count - len(self._buffer)

    @property
    def md5(self) -> str:
        return base64.b64encode(self._md5.digest()).decode()

    @property
    def crc32c(self) -> str:
        return base64.b64encode(self._crc.digest()).decode()


def _too_slow() -> FinalizeError:
    return FinalizeError("download_timeout", "the provider's output took too long to download")


def _bound_socket(raw: Any, timeout_s: float) -> None:
    """Let the next read on the response's socket wait at most `timeout_s` (the time left)."""
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is not None:
        sock.settimeout(max(0.001, timeout_s))


def open_download(url: str, settings: Settings, deadline: float) -> requests.Response:
    """GET `url` (redirects followed only to allowed hosts); the open response, status 200."""
    for _ in range(MAX_REDIRECTS + 1):
        reason = refusal(url, settings.output_hosts)
        if reason is not None:
            raise HostRefused(reason, host_of(url))
        remaining = max(0.1, deadline - time.monotonic())
        timeout = (min(settings.http_connect_timeout_s, remaining), remaining)
        try:
            response = requests.get(url, stream=True, timeout=timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise FinalizeError(
                "download_failed", f"the provider's output could not be fetched ({type(exc).__name__})"
            ) from exc
        if response.is_redirect and response.headers.get("Location"):
            url = urljoin(url, response.headers["Location"])
            response.close()
            continue
        if response.status_code != 200:
            response.close()
            raise FinalizeError(
                "download_failed", f"the provider's output answered HTTP {response.status_code}"
            )
        _check_length(response, settings.finalize_max_bytes)
        return response
    raise FinalizeError("download_failed", "too many redirects", retryable=False)


def _check_length(response: requests.Response, max_bytes: int) -> None:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        response.close()
        raise FinalizeError("output_too_large", f"the output exceeds {max_bytes} bytes", retryable=False)


# ---------------------------------------------------------------------------------------------------
# GIF


def make_gif(source: Path, target: Path, timeout_s: float) -> None:
    """A palette GIF of the first GIF_MAX_SECONDS of `source` (ffmpeg shipped by imageio-ffmpeg)."""
    import imageio_ffmpeg

    argv = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    argv += ["-t", str(GIF_MAX_SECONDS), "-i", str(source), "-vf", GIF_FILTER, "-loop", "0", str(target)]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=max(1.0, timeout_s), check=False)  # noqa: S603
    except subprocess.TimeoutExpired as exc:
        raise FinalizeError("gif_timeout", "making the GIF took too long") from exc
    if done.returncode != 0 or not target.is_file():
        detail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise FinalizeError(
            "gif_failed", f"ffmpeg could not make the GIF: {detail[0][:200]}", retryable=False
        )


# ---------------------------------------------------------------------------------------------------
# The step


class Finalizer:
    def __init__(
        self,
        store: JobStore,
        storage: VideoStorage,
        settings: Settings,
        queue: TaskQueue,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.storage, self.settings, self.queue = store, storage, settings, queue
        self.monotonic = monotonic

    def finalize(self, job_id: str, attempt_id: str) -> FinalizeResult:
        settings = self.settings
        lease_s = settings.finalize_timeout_s + LEASE_SLACK_S
        try:
            claim = self.store.claim_finalize(
                job_id, attempt_id, lease_s=lease_s, max_tries=settings.finalize_max_attempts
            )
        except JobNotFound:  # purged by retention, or never ours: nothing to store, do not retry
            log.info("finalize for a job that does not exist", extra={"jobId": job_id})
            return FinalizeResult("missing", job_id)
        if claim.verdict == "done":
            return FinalizeResult("skipped", job_id)
        if claim.verdict == "busy":
            return self._defer(claim.job, attempt_id)
        if claim.verdict == "exhausted":
            last = claim.job.finalize.last_error if claim.job.finalize else None
            error = last or {"code": "finalize_exhausted"}
            return self._fail(job_id, attempt_id, FinalizeError(error["code"], error.get("message", "")))
        try:
            output = self._store(claim.job)
        except HostRefused as exc:
            return self._keep_provider_link(claim.job, attempt_id, exc)
        except (FinalizeError, StorageError) as exc:
            error = exc if isinstance(exc, FinalizeError) else FinalizeError(exc.code, exc.message)
            if not error.retryable or claim.tries >= settings.finalize_max_attempts:
                return self._fail(job_id, attempt_id, error)
            self.store.release_finalize(job_id, attempt_id, error.to_dict(), give_up=False)
            log.warning(
                "finalize try failed", extra={"jobId": job_id, "code": error.code, "try": claim.tries}
            )
            return FinalizeResult("retry", job_id, error.to_dict())
        if not self.store.complete_finalize(job_id, attempt_id, output):
            self._discard(job_id)
            return FinalizeResult("discarded", job_id)
        log.info("output stored", extra={"jobId": job_id, "sizeBytes": output["sizeBytes"]})
        return FinalizeResult("completed", job_id)

    def _keep_provider_link(self, job: Job, attempt_id: str, refused: HostRefused) -> FinalizeResult:
        """Complete with the provider's own (expiring) link, as without a bucket; tell the operator."""
        host = refused.host or "(none)"
        extra = {"event": "output_host_refused", "host": host, "jobId": job.job_id}
        message = f"output host {host} refused ({refused.message}); the job keeps the provider's link"
        log.warning(message, extra=extra)
        if not self.store.complete_finalize(job.job_id, attempt_id, job.provider_output or {}):
            return FinalizeResult("skipped", job.job_id)  # the job ended meanwhile (cancelled)
        return FinalizeResult("kept_provider_link", job.job_id)

    def _defer(self, job: Job, attempt_id: str) -> FinalizeResult:
        """Another delivery holds the lease: look again when it ends, whatever the queue's own retry
        policy (a holder killed mid-try leaves its lease until then). One task per lease (named)."""
        lease_until = job.finalize.lease_until if job.finalize else None
        delay = (lease_until - self.store.clock()).total_seconds() + 1 if lease_until else 1.0
        renewal = f"lease:{lease_until:%Y%m%dT%H%M%S}" if lease_until else "lease"
        self.queue.enqueue_finalize(job_id=job.job_id, attempt_id=attempt_id, delay_s=delay, renewal=renewal)
        return FinalizeResult("deferred", job.job_id)

    def _fail(self, job_id: str, attempt_id: str, error: FinalizeError) -> FinalizeResult:
        self.store.release_finalize(job_id, attempt_id, error.to_dict(), give_up=True)
        self._discard(job_id)
        context = {"event": "finalize_failed", "jobId": job_id, "code": error.code}
        log.error("finalize failed; job failed", extra=context)
        return FinalizeResult("failed", job_id, error.to_dict())

    def _discard(self, job_id: str) -> None:
        try:
            self.storage.delete_prefix(job_prefix(job_id))
        except StorageError as exc:  # retention removes them later
            log.warning("could not delete stored objects", extra={"jobId": job_id, "code": exc.code})

    def _store(self, job: Job) -> dict[str, Any]:
        """Download, upload, GIF: the output fields of the completed job. Raises FinalizeError."""
        job_id, urls, wants_gif = job.job_id, job.provider_video_urls, job.wants_gif
        if not urls:
            raise FinalizeError("no_output", "the provider reported no output URL", retryable=False)
        deadline = self.monotonic() + self.settings.finalize_timeout_s
        with tempfile.TemporaryDirectory(prefix="finalize-") as tmp:
            local = Path(tmp) / "video.mp4"  # the GIF's source; /tmp is memory on Cloud Functions
            with open(local, "wb") if wants_gif else contextlib.nullcontext() as copy:
                video, download = self._upload_video(job_id, urls[0], deadline, copy)
            output = _output(self.storage.bucket_name, video, download)
            if wants_gif:
                gif = Path(tmp) / "video.gif"
                make_gif(local, gif, deadline - self.monotonic())
                stored = self.storage.upload_file(gif_path(job_id), str(gif), "image/gif")
                output.update(gifPath=stored.path, gifSizeBytes=stored.size_bytes)
        return output

    def _upload_video(
        self, job_id: str, url: str, deadline: float, copy: BinaryIO | None
    ) -> tuple[StoredObject, Download]:
        response = open_download(url, self.settings, deadline)
        with response:
            download = Download(
                response, max_bytes=self.settings.finalize_max_bytes, deadline=deadline, copy=copy
            )
            video = self.storage.upload_stream(video_path(job_id), download, "video/mp4")
        if video.size_bytes != download.count or (video.md5 is not None and video.md5 != download.md5):
            raise FinalizeError("checksum_mismatch", "the stored object differs from what was downloaded")
        return video, download


def _output(bucket: str, video: StoredObject, download: Download) -> dict[str, Any]:
    return {
        "source": "storage",
        "bucket": bucket,
        "videoPath": video.path,
        "gifPath": None,
        "sizeBytes": download.count,
        "md5": download.md5,
        "crc32c": download.crc32c,
        "generation": video.generation,
        "contentType": video.content_type,
    }


def links_for(storage: VideoStorage | None, now: datetime) -> Callable[[str], dict[str, Any] | None] | None:
    """A path -> download link function for job views; None without storage. Failures give None."""
    if storage is None:
        return None

    def link(path: str) -> dict[str, Any] | None:
        try:
            return storage.download_link(path, now)
        except StorageError as exc:
            log.warning("could not make a download link", extra={"code": exc.code})
            return None

    return link
