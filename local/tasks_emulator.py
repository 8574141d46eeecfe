"""The Cloud Tasks emulator (PyPI `gcloud-tasks-emulator` 0.6.2) as a managed child process.

Google ships no Cloud Tasks emulator. This one speaks the real gRPC API, but pins `protobuf<5`,
so it lives in its own virtualenv, `<repo>/.venv-tasks`, made by `ensure_venv` from
`requirements-tasks-emulator.txt` with the interpreter running this code. The official client in
the main environment reaches it through an insecure gRPC channel (`tasks.queue.emulator_client`).

How it dispatches (read from its source, `gcloud_tasks_emulator/server.py`, and pinned by tests):

- HTTP targets are called at exactly the task's `http_request.url`, with the task's method, headers
  and body, plus `X-CloudTasks-QueueName` (the FULL queue path; production sends the short id),
  `X-CloudTasks-TaskName` (short id), `X-CloudTasks-TaskRetryCount`, `-TaskExecutionCount` and
  `-TaskETA`. `--target-host`/`--target-port` only apply to App Engine tasks.
- Each queue has one thread that walks its tasks every 0.1 s and dispatches those whose
  `schedule_time` has passed: never early, usually within ~0.1 s, but ONE AT A TIME per queue, and
  synchronously with no timeout, so a slow or hanging target delays (or blocks) the whole queue.
  `dispatch_deadline` and queue rate limits are ignored.
- A non-2xx answer or a refused connection puts the task back at the end of the queue and it is
  retried on the next pass, without backoff, until `--max-retries` (total attempts = retries + 1;
  the emulator's own default is forever, so this harness passes 5). Succeeded tasks are dropped.
- Gaps: duplicate task names are accepted (no ALREADY_EXISTS), no OIDC header is sent (the token
  fields are stored and listed), no get_task/delete_task, and it listens on all interfaces ([::])
  whatever host is asked for.

`TasksEmulator.stop` kills the whole process group (`ManagedProcess`), and an `atexit` hook does
the same if a run is interrupted, so no emulator outlives the code that started it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from local.procs import ManagedProcess, StartupError, free_port, port_open

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = "requirements-tasks-emulator.txt"
VENV_DIR = ".venv-tasks"
DEFAULT_MAX_RETRIES = 5


def _python_in(venv: Path) -> Path:
    return venv / "bin" / "python"


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        raise StartupError(f"{what} failed (exit {result.returncode}):\n{tail}")


def ensure_venv(root: Path = ROOT) -> Path:
    """The emulator venv's python, creating the venv and installing the pin when missing.

    Idempotent: a marker file holds the hash of the requirements file, so the install runs again
    only when the pin changes. A lock makes concurrent callers wait for one install.
    """
    requirements = root / REQUIREMENTS
    if not requirements.is_file():
        raise StartupError(f"{requirements} is missing; it pins the Cloud Tasks emulator")
    venv = root / VENV_DIR
    venv.mkdir(exist_ok=True)
    wanted = hashlib.sha256(requirements.read_bytes()).hexdigest()
    marker = venv / ".installed"
    with open(venv / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text().strip() == wanted and _python_in(venv).exists():
            return _python_in(venv)
        if not _python_in(venv).exists():
            _run([sys.executable, "-m", "venv", str(venv)], f"creating {venv}")
        pip = [str(_python_in(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        _run([*pip, "-r", str(requirements)], f"installing {REQUIREMENTS} into {venv}")
        marker.write_text(wanted + "\n")
    return _python_in(venv)


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONWARNINGS"] = "ignore::FutureWarning"  # google-api-core's Python-version notices
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"  # task targets are on loopback
    return env


class TasksEmulator:
    """One emulator on a free loopback port; `host` is the CLOUD_TASKS_EMULATOR_HOST value."""

    def __init__(
        self,
        log_dir: Path,
        *,
        port: int | None = None,
        python: Path | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        quiet: bool = True,
    ) -> None:
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._python = python
        self._max_retries = max_retries
        self._quiet = quiet
        self._log_path = log_dir / "cloud-tasks.log"
        self.process: ManagedProcess | None = None
        self._client: Any = None

    def start(self, timeout_s: float = 60.0) -> TasksEmulator:
        python = self._python or ensure_venv()
        argv = [str(python), "-m", "gcloud_tasks_emulator", "start", f"--port={self.port}"]
        argv.append(f"--max-retries={self._max_retries}")
        if self._quiet:  # otherwise it logs every pending task ten times a second
            argv.append("--quiet")
        self.process = ManagedProcess("cloud-tasks-emulator", argv, log_path=self._log_path, env=_child_env())
        self.process.start()
        self.process.wait_ready(lambda: port_open(self.port), timeout_s)
        return self

    @property
    def client(self) -> Any:
        """A `CloudTasksClient` connected to this emulator (cached)."""
        if self._client is None:
            from tasks.queue import emulator_client

            self._client = emulator_client(self.host)
        return self._client

    def create_queue(self, project: str, location: str, name: str) -> str:
        """Create (or find) a queue; returns its full path."""
        parent = f"projects/{project}/locations/{location}"
        queue = self.client.create_queue(parent=parent, queue={"name": f"{parent}/queues/{name}"})
        return str(queue.name)

    def list_tasks(self, queue_path: str) -> list[Any]:
        """Tasks still waiting in a queue (dispatched successes are gone)."""
        return list(self.client.list_tasks(parent=queue_path))

    def log_tail(self, lines: int = 20) -> str:
        return self.process.tail(lines) if self.process else "(not started)"

    def stop(self) -> None:
        if self._client is not None:
            self._client.transport.close()
            self._client = None
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> TasksEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
