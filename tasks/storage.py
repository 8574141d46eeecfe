"""Cloud Storage seam: where finished videos live, how they get there, and how they are handed out.

    VideoStorage(settings)
      upload_stream(path, reader, content_type) -> StoredObject   resumable, 8 MiB chunks (bounded memory)
      upload_file(path, filename, content_type) -> StoredObject
      delete(paths) -> count deleted                              a missing object is not an error
      delete_prefix(prefix) -> count deleted
      download_link(path, now) -> {"url", "expiresAt"}            time-limited link for the app
    storage_for(settings) -> VideoStorage | None                  None when STORAGE_BUCKET is unset
    video_path(job_id), gif_path(job_id)                          gs://BUCKET/jobs/{jobId}/video.mp4|.gif

Error tree (google-cloud-storage, google-auth and requests errors are translated in `_translate`)::

    StorageError            retryable   cause
      code "storage_unavailable"  yes   5xx, 429, connection trouble, a checksum the server disagrees with
      code "storage_denied"       no    403/401: the runtime account lacks roles/storage.objectAdmin
      code "storage_not_found"    no    404 on the bucket: STORAGE_BUCKET names no bucket
      code "storage_error"        yes   anything else

Download links: in production a V4 signed URL, signed without a key file through IAM `signBlob` as
the runtime service account (`generate_signed_url(version="v4", service_account_email=...,
access_token=...)` with refreshed default credentials; the account needs
roles/iam.serviceAccountTokenCreator on itself). Against the emulator (STORAGE_EMULATOR_HOST) the
link is the emulator's plain media URL, because the emulator cannot sign; its `expiresAt` is None.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, BinaryIO
from urllib.parse import quote

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse

from config import Settings
from errors import AppError

CHUNK_BYTES = 8 * 1024 * 1024  # resumable upload chunk: a multiple of 256 KiB, held in memory once
DELETE_WORKERS = 8
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class StorageError(AppError):
    """A Cloud Storage call failed; `retryable` says whether trying again later can help."""

    default_code = "storage_error"
    retryable = True


@dataclass(frozen=True)
class StoredObject:
    """One object as the server describes it after the upload (checksums base64, as GCS gives them)."""

    path: str
    size_bytes: int
    md5: str | None
    crc32c: str | None
    generation: int | None
    content_type: str | None

    def to_doc(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sizeBytes": self.size_bytes,
            "md5": self.md5,
            "crc32c": self.crc32c,
            "generation": self.generation,
            "contentType": self.content_type,
        }


def video_path(job_id: str) -> str:
    return f"jobs/{job_id}/video.mp4"


def gif_path(job_id: str) -> str:
    return f"jobs/{job_id}/video.gif"


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"


def storage_client(project: str, emulator_url: str | None = None) -> Any:
    """The official client: anonymous against the emulator, default credentials otherwise."""
    from google.cloud import storage

    if emulator_url:
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": emulator_url},
        )
    return storage.Client(project=project)


FOREIGN_ERRORS = (
    gexc.GoogleAPIError,
    auth_exc.GoogleAuthError,
    requests.RequestException,
    ConnectionError,
    TimeoutError,
    DataCorruption,
    InvalidResponse,
)


def _translate(exc: Exception, bucket: str) -> StorageError:
    """The one seam where foreign errors become `StorageError`."""
    if isinstance(exc, gexc.Forbidden | gexc.Unauthorized | auth_exc.GoogleAuthError):
        return StorageError(
            f"access to bucket {bucket} denied: the runtime account needs roles/storage.objectAdmin "
            f"on it ({type(exc).__name__})",
            code="storage_denied",
            retryable=False,
        )
    if isinstance(exc, gexc.NotFound):
        return StorageError(
            f"bucket {bucket} not found; check STORAGE_BUCKET", code="storage_not_found", retryable=False
        )
    unavailable = (
        gexc.ServerError,
        gexc.TooManyRequests,
        gexc.RetryError,
        requests.RequestException,
        ConnectionError,
        TimeoutError,
        DataCorruption,
        InvalidResponse,
    )
    if isinstance(exc, unavailable):
        return StorageError(f"Cloud Storage trouble: {type(exc).__name__}", code="storage_unavailable")
    return StorageError(f"Cloud Storage error: {type(exc).__name__}")


def _described(blob: Any) -> StoredObject:
    return StoredObject(
        path=blob.name,
        size_bytes=int(blob.size or 0),
        md5=blob.md5_hash,
        crc32c=blob.crc32c,
        generation=int(blob.generation) if blob.generation is not None else None,
        content_type=blob.content_type,
    )


class VideoStorage:
    """The project's bucket of finished videos (client and signing credentials created on first use)."""

    def __init__(
        self,
        settings: Settings,
        *,
        client_factory: Callable[[], Any] | None = None,
        credentials_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.bucket_name: str = settings.require("storage_bucket")
        self.emulator_url = settings.storage_emulator_host
        self._client_factory = client_factory or functools.partial(
            storage_client, settings.project_id, self.emulator_url
        )
        self._credentials_factory = credentials_factory or _default_credentials
        self._client: Any = None
        self._credentials: Any = None
        self._lock = threading.Lock()

    @property
    def bucket(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client.bucket(self.bucket_name)

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run a client call; its errors become `StorageError`, a reader's own errors pass through."""
        try:
            return fn()
        except FOREIGN_ERRORS as exc:
            raise _translate(exc, self.bucket_name) from exc

    # -- writing ------------------------------------------------------------------------------------

    def upload_stream(self, path: str, reader: BinaryIO, content_type: str) -> StoredObject:
        """Stream `reader` (read/tell) into `path`; the client checks the CRC32C the server computed."""
        blob = self.bucket.blob(path, chunk_size=CHUNK_BYTES)
        self._call(lambda: blob.upload_from_file(reader, content_type=content_type, checksum="crc32c"))
        return _described(blob)

    def upload_file(self, path: str, filename: str, content_type: str) -> StoredObject:
        blob = self.bucket.blob(path, chunk_size=CHUNK_BYTES)
        self._call(lambda: blob.upload_from_filename(filename, content_type=content_type, checksum="crc32c"))
        return _described(blob)

    def delete(self, paths: Iterable[str]) -> int:
        """Delete objects in parallel; one that is already gone counts as not deleted, not as an error."""
        names = list(dict.fromkeys(paths))
        if not names:
            return 0
        bucket = self.bucket
        with ThreadPoolExecutor(max_workers=min(DELETE_WORKERS, len(names))) as pool:
            return sum(pool.map(lambda name: self._delete_one(bucket, name), names))

    def _delete_one(self, bucket: Any, name: str) -> int:
        try:
            self._call(lambda: bucket.blob(name).delete())
        except StorageError as exc:
            if exc.code == "storage_not_found":  # the object (not the bucket) is gone
                return 0
            raise
        return 1

    def list_prefix(self, prefix: str) -> list[str]:
        return self._call(lambda: [b.name for b in self.bucket.list_blobs(prefix=prefix)])

    def delete_prefix(self, prefix: str) -> int:
        return self.delete(self.list_prefix(prefix))

    # -- reading ------------------------------------------------------------------------------------

    def download_link(self, path: str, now: datetime) -> dict[str, Any]:
        """A link the app can fetch the object with (see the module docstring)."""
        if self.emulator_url:
            url = f"{self.emulator_url}/download/storage/v1/b/{self.bucket_name}/o/{quote(path, safe='')}"
            return {"url": f"{url}?alt=media", "expiresAt": None}
        ttl = timedelta(seconds=self.settings.signed_url_ttl_s)
        credentials = self._signing_credentials()
        blob = self.bucket.blob(path)
        url = self._call(
            lambda: blob.generate_signed_url(
                version="v4",
                expiration=ttl,
                method="GET",
                service_account_email=credentials.service_account_email,
                access_token=credentials.token,
            )
        )
        return {"url": url, "expiresAt": now + ttl}

    def _signing_credentials(self) -> Any:
        """Default credentials with a fresh token (and, on Cloud Run, the real account email)."""
        from google.auth.transport.requests import Request

        with self._lock:
            if self._credentials is None:
                self._credentials = self._credentials_factory()
            credentials = self._credentials
            if not credentials.valid:
                self._call(lambda: credentials.refresh(Request()))
            return credentials


def _default_credentials() -> Any:
    import google.auth

    credentials, _ = google.auth.default(scopes=list(SCOPES))
    return credentials


_instances: dict[tuple[str, str, str | None, int], VideoStorage] = {}
_instances_lock = threading.Lock()


def storage_for(settings: Settings) -> VideoStorage | None:
    """The process-wide `VideoStorage` for these settings; None when no bucket is configured."""
    if settings.storage_bucket is None:
        return None
    key = (
        settings.project_id,
        settings.storage_bucket,
        settings.storage_emulator_host,
        settings.signed_url_ttl_s,
    )
    with _instances_lock:
        if key not in _instances:
            _instances[key] = VideoStorage(settings)
        return _instances[key]
