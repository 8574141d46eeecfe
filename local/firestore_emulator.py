"""Google's Firestore emulator as a managed child process (tests, local stack, benchmarks).

The emulator ships with the gcloud CLI (`google-cloud-cli-firestore-emulator`) and needs Java.
It cannot be installed from the package registries, so a missing piece fails fast with a message
that says what to install, never with a hang.
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from pathlib import Path

from local.procs import ManagedProcess, StartupError, free_port, http_ready

EMULATOR_JAR_CANDIDATES = (
    os.environ.get("FIRESTORE_EMULATOR_JAR", ""),
    "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar",
    "/usr/share/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar",
)
MAIN_CLASS = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"


def find_emulator() -> tuple[str, str]:
    """(java, jar) paths, or `StartupError` saying what is missing and how to get it."""
    java = shutil.which("java")
    if java is None:
        raise StartupError(
            "Java is not installed; the Firestore emulator needs Java 11+ "
            "(Debian: apt-get install openjdk-17-jre-headless)"
        )
    for candidate in EMULATOR_JAR_CANDIDATES:
        if candidate and Path(candidate).is_file():
            return java, candidate
    raise StartupError(
        "the Firestore emulator jar was not found; install the gcloud component "
        "(apt-get install google-cloud-cli-firestore-emulator, or "
        "gcloud components install cloud-firestore-emulator) or set FIRESTORE_EMULATOR_JAR"
    )


class FirestoreEmulator:
    """One emulator process on a free loopback port; `host` is the FIRESTORE_EMULATOR_HOST value."""

    def __init__(self, log_dir: Path, *, rules: Path | None = None, port: int | None = None) -> None:
        java, jar = find_emulator()
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        argv = [java, "-Duser.language=en", "-Xmx512m", "-cp", jar, MAIN_CLASS]
        argv += ["--host=127.0.0.1", f"--port={self.port}"]
        if rules is not None:
            argv.append(f"--rules={rules}")
        self.process = ManagedProcess("firestore-emulator", argv, log_path=log_dir / "firestore.log")

    def start(self, timeout_s: float = 60.0) -> FirestoreEmulator:
        self.process.start()
        self.process.wait_ready(http_ready(f"http://{self.host}/"), timeout_s)
        return self

    def wipe(self, project: str) -> None:
        """Delete every document of `project` (the emulator's reset endpoint)."""
        url = f"http://{self.host}/emulator/v1/projects/{project}/databases/(default)/documents"
        request = urllib.request.Request(url, method="DELETE")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        self.process.stop()
