"""The Cloud Storage emulator (`gcp-storage-emulator`, PyPI) as a managed child process.

    StorageEmulator(log_dir).start()   gcp-storage-emulator start --host=127.0.0.1 --port=PORT --in-memory
        .url                           the STORAGE_EMULATOR_HOST value (http://127.0.0.1:PORT)
        .create_bucket(project, name)  idempotent
        .wipe()                        deletes every object of every bucket it knows (between tests)

The official `google-cloud-storage` client talks to it with anonymous credentials and the emulator
URL as its endpoint (`storage.storage_client`). It keeps everything in memory, accepts any caller,
does not enforce generation preconditions and cannot sign URLs: code that relies on those is tested
elsewhere or documented as production-only.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path

from local.procs import ManagedProcess, StartupError, free_port, http_ready


def find_emulator() -> str:
    """The `gcp-storage-emulator` command of this virtualenv, or a `StartupError` saying how to get it."""
    beside = Path(sys.executable).with_name("gcp-storage-emulator")
    found = str(beside) if beside.is_file() else shutil.which("gcp-storage-emulator")
    if found is None:
        raise StartupError(
            "gcp-storage-emulator is not installed; install the dev requirements "
            "(pip install -r requirements-dev.txt)"
        )
    return found


class StorageEmulator:
    """One in-memory emulator on a free loopback port."""

    def __init__(self, log_dir: Path, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [find_emulator(), "start", "--host=127.0.0.1", f"--port={self.port}", "--in-memory"]
        self.process = ManagedProcess("storage-emulator", argv, log_path=log_dir / "storage.log")
        self.buckets: set[tuple[str, str]] = set()

    def start(self, timeout_s: float = 30.0) -> StorageEmulator:
        self.process.start()
        self.process.wait_ready(http_ready(f"{self.url}/storage/v1/b?project=ready"), timeout_s)
        return self

    def client(self, project: str):  # -> google.cloud.storage.Client
        from tasks.storage import storage_client

        return storage_client(project, self.url)

    def create_bucket(self, project: str, name: str) -> None:
        from google.api_core import exceptions as gexc

        with contextlib.suppress(gexc.Conflict):
            self.client(project).create_bucket(name)
        self.buckets.add((project, name))

    def wipe(self) -> None:
        """Delete every object in the buckets made through `create_bucket`."""
        for project, name in self.buckets:
            client = self.client(project)
            for blob in client.list_blobs(name):
                blob.delete()

    def stop(self) -> None:
        self.process.stop()
