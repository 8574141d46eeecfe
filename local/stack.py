"""The whole system on one machine: emulators, provider simulators, a token issuer, every function.

    python -m local.stack [--speed 20] [--fault-rate 0.1]      (or `make stack`; Ctrl-C stops it)

    with LocalStack(StackOptions(speed=100)) as stack:          (the demo, tests, benchmarks)
        stack.url("generate_video"), stack.user_headers("alice"), stack.service_headers("ops", fn)

Parts, all on 127.0.0.1 and free ports, each started in its own process group::

    functions           python -m local.serve: every main.py function at /<name> (functions-framework)
    Firestore emulator  Google's, loaded with firestore.rules
    Cloud Tasks         the emulator in .venv-tasks, with the queue deploy.sh would create
    RunwayML, HeyGen    python -m local.<provider>_sim --speed --faults --seed (or the real API when
                        its key is in the environment: see local/stack_env.py)
    Cloud Storage       the storage emulator, when finalize_video_task exists and it is installed
    token issuer        a thread of this process: serves the certificate, key file shared with tools
    sample web app      a thread of this process: samples/web/ on its own origin, which the
                        functions' CORS_ORIGINS allow; the API reference at /docs (local/stack_web.py)

Start waits until every part answers; any failure stops what already started. `stop()` (also on
exit, Ctrl-C or SIGTERM) ends every process group and removes the state file
(`local/stack_state.py`) that the operator CLI reads.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config import Settings, load_settings
from local import stack_env as plan
from local import stack_parts as parts
from local.firestore_emulator import FirestoreEmulator
from local.procs import ManagedProcess, StartupError, free_port, http_ready
from local.serve import function_names
from local.stack_state import ROOT, StackState, remove_state, write_state
from local.stack_web import SamplePage
from local.tasks_emulator import VENV_DIR, TasksEmulator, ensure_venv
from local.tokens import TokenIssuer

DEFAULT_WORK_DIR = ROOT / "build" / "local-stack"


@dataclass
class StackOptions:
    speed: float = 20.0  # simulated seconds per real second (a 30 s render takes 1.5 s)
    faults: str = ""  # simulator fault spec, e.g. "http_5xx=0.1" (see local.stack_env.fault_mix)
    seed: int = 0
    # the simulated accounts' renders at once, by provider (absent: the simulator's default)
    sim_concurrency: Mapping[str, int] = field(default_factory=dict)
    work_dir: Path = DEFAULT_WORK_DIR  # logs and the issuer's key file
    state_file: Path | None = None  # where to write the state file (None: nowhere)
    environ: Mapping[str, str] | None = None  # real provider keys are looked up here (None: os.environ)
    extra_env: Mapping[str, str] = field(default_factory=dict)  # more settings for the functions
    storage: bool | None = None  # None: when finalize_video_task exists and the emulator is installed
    startup_timeout_s: float = 90.0
    max_task_retries: int = 5


class LocalStack:
    """The running system; a context manager that always stops what it started."""

    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self.environ = dict(os.environ if self.options.environ is None else self.options.environ)
        self.function_names = function_names()
        self.modes = plan.provider_modes(self.environ)
        self.warnings = plan.real_money_warnings(self.modes)
        self.issuer: TokenIssuer | None = None
        self.page: SamplePage | None = None
        self.firestore: FirestoreEmulator | None = None
        self.tasks: TasksEmulator | None = None
        self.storage: Any = None
        self.simulators: dict[str, ManagedProcess] = {}
        self.functions: ManagedProcess | None = None
        self.endpoints: plan.Endpoints | None = None
        self.settings: Settings | None = None
        self.state: StackState | None = None
        self.started_pids: dict[str, int] = {}
        self.started_ports: dict[str, int] = {}
        self.startup_s: float | None = None

    # -- life cycle ---------------------------------------------------------------------------------

    def start(self) -> LocalStack:
        began = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - began
        return self

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self) -> None:
        logs = self.options.work_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        # a fresh key each run, named apart so stacks sharing a work dir never share a key
        key_file = self.options.work_dir / f"issuer-key-{secrets.token_hex(4)}.json"
        self.issuer = TokenIssuer(key_file=key_file)
        assert self.issuer.server is not None
        self.started_ports["token issuer"] = int(self.issuer.server.server_address[1])
        # bound now, like the issuer: a port bound after the free_port() picks below could be one of them
        self.page = SamplePage("", self.user_token)
        self.started_ports["sample web app"] = int(self.page.server.server_address[1])
        if not (ROOT / VENV_DIR / ".installed").is_file():
            print(
                f"installing the Cloud Tasks emulator into {VENV_DIR} (first run only) ...", file=sys.stderr
            )
        tasks_python = ensure_venv()
        functions_port = free_port()
        base_url = f"http://127.0.0.1:{functions_port}"
        self.firestore = FirestoreEmulator(logs, rules=ROOT / "firestore.rules")
        self.tasks = TasksEmulator(logs, python=tasks_python, max_retries=self.options.max_task_retries)
        self.storage = parts.storage_emulator(self.options.storage, self.function_names, logs)
        secret = self._webhook_secret()
        urls = self._make_simulators(logs, base_url, secret)
        self.endpoints = plan.Endpoints(
            functions_base_url=base_url,
            firestore_host=self.firestore.host,
            tasks_host=self.tasks.host,
            certs_url=str(self.issuer.certs_url),
            token_key_file=str(key_file),
            runwayml_url=urls.get("runwayml"),
            heygen_url=urls.get("heygen"),
            heygen_webhook_secret=secret,
            storage_url=self.storage.url if self.storage else None,
            storage_bucket=f"{plan.PROJECT}-videos" if self.storage else None,
        )
        self.page.functions_base_url = base_url
        extra = {"CORS_ORIGINS": self.page.origin, **self.options.extra_env}
        env = plan.functions_env(self.environ, self.endpoints, extra)
        self.settings = load_settings(env)
        argv = [sys.executable, "-m", "local.serve", f"--port={functions_port}"]
        self.functions = ManagedProcess("functions", argv, log_path=logs / "functions.log", env=env, cwd=ROOT)
        self.started_ports["functions"] = functions_port
        try:
            parts.start_in_parallel(self._start_jobs(base_url))
        finally:
            self.started_pids.update({n: p.pid for n, p in self._processes().items() if p.pid is not None})
        self._after_start()

    def _make_simulators(self, logs: Path, base_url: str, secret: str | None) -> dict[str, str]:
        """The simulator processes (not started yet); their base URLs by provider."""
        sim = self._sim_settings()
        webhook = (f"{base_url}/heygen_webhook", secret) if secret is not None else None
        urls = {}
        for name in plan.PROVIDERS:
            if self.modes[name] == plan.SIMULATOR:
                proc, port = parts.simulator(name, sim, logs, self.environ, webhook)
                self.simulators[name] = proc
                self.started_ports[f"{name} simulator"] = port
                urls[name] = f"http://127.0.0.1:{port}"
        return urls

    def _sim_settings(self) -> parts.SimSettings:
        opts = self.options
        return parts.SimSettings(opts.speed, opts.faults, opts.seed, dict(opts.sim_concurrency))

    def _start_jobs(self, base_url: str) -> dict[str, Callable[[], Any]]:
        timeout = self.options.startup_timeout_s
        firestore, tasks, functions = self.firestore, self.tasks, self.functions
        assert firestore is not None
        assert tasks is not None
        assert functions is not None
        first = f"{base_url}/{self.function_names[0]}"
        jobs: dict[str, Callable[[], Any]] = {
            "Firestore emulator": lambda: firestore.start(timeout),
            "Cloud Tasks emulator": lambda: tasks.start(timeout),
            "functions": lambda: parts.start_process(functions, http_ready(first), timeout),
        }
        self.started_ports["Firestore emulator"] = firestore.port
        self.started_ports["Cloud Tasks emulator"] = tasks.port
        if self.storage is not None:
            jobs["Storage emulator"] = lambda: self.storage.start(timeout)
            self.started_ports["Storage emulator"] = self.storage.port
        for name, proc in self.simulators.items():
            jobs[f"{name} simulator"] = parts.port_starter(
                proc, self.started_ports[f"{name} simulator"], timeout
            )
        return jobs

    def _after_start(self) -> None:
        settings, tasks, ends = self.settings, self.tasks, self.endpoints
        assert settings is not None
        assert tasks is not None
        assert ends is not None
        queue = tasks.create_queue(plan.PROJECT, settings.queue_location, settings.tasks_queue)
        if self.storage is not None and settings.storage_bucket:
            self.storage.create_bucket(plan.PROJECT, settings.storage_bucket)
        self.state = parts.stack_state(
            ends,
            settings,
            modes=self.modes,
            functions=self.function_names,
            queue=queue,
            log_dir=self.options.work_dir / "logs",
            sim=self._sim_settings(),
        )
        if self.options.state_file is not None:
            write_state(self.options.state_file, self.state)

    def stop(self) -> None:
        """Stop every part (in parallel), remove the state and key files; safe to call twice."""
        stops: list[Callable[[], None]] = [p.stop for p in self._processes().values()]
        if self.tasks is not None:
            stops.append(self.tasks.stop)
        parts.stop_in_parallel(stops)
        if self.page is not None:
            self.page.stop()
            self.page = None
        if self.issuer is not None:
            self.issuer.stop()
            if self.issuer.key_file is not None:
                Path(self.issuer.key_file).unlink(missing_ok=True)
            self.issuer = None
        if self.options.state_file is not None:
            remove_state(self.options.state_file, os.getpid())

    # -- parts --------------------------------------------------------------------------------------

    def _webhook_secret(self) -> str | None:
        wanted = "heygen_webhook" in self.function_names and self.modes["heygen"] == plan.SIMULATOR
        return "whsec_" + secrets.token_urlsafe(24) if wanted else None

    def _processes(self) -> dict[str, ManagedProcess]:
        procs: dict[str, ManagedProcess] = {}
        if self.firestore is not None:
            procs["Firestore emulator"] = self.firestore.process
        if self.tasks is not None and self.tasks.process is not None:
            procs["Cloud Tasks emulator"] = self.tasks.process
        if self.storage is not None:
            procs["Storage emulator"] = self.storage.process
        procs |= {f"{name} simulator": proc for name, proc in self.simulators.items()}
        if self.functions is not None:
            procs["functions"] = self.functions
        return procs

    def dead_parts(self) -> list[str]:
        """Parts whose process has exited (a running stack should have none)."""
        procs = self._processes().items()
        return [name for name, proc in procs if proc.proc is not None and not proc.alive()]

    def log_tail(self, part: str, lines: int = 15) -> str:
        proc = self._processes().get(part)
        return proc.tail(lines) if proc else ""

    # -- what callers use ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        assert self.endpoints is not None, "the stack is not started"
        return self.endpoints.functions_base_url

    def url(self, function: str) -> str:
        return f"{self.base_url}/{function}"

    def user_token(self, uid: str = plan.LOCAL_USER) -> str:
        assert self.issuer is not None, "the stack is not started"
        return self.issuer.user_token(uid, plan.PROJECT)

    def user_headers(self, uid: str = plan.LOCAL_USER) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.user_token(uid)}"}

    def service_headers(self, role: str, function: str) -> dict[str, str]:
        """Headers of a call by the local `role` account (tasks, scheduler, ops) to `function`."""
        assert self.issuer is not None, "the stack is not started"
        token = self.issuer.service_token(plan.service_account(role), self.url(function))
        return {"Authorization": f"Bearer {token}"}


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    from local.stack_cli import parse_options, print_summary, watch

    options = parse_options(argv)
    signal.signal(signal.SIGTERM, _raise_exit)
    stack: LocalStack | None = None
    began = time.monotonic()
    try:
        stack = LocalStack(options).start()
        print_summary(stack)
        return watch(stack)
    except (StartupError, plan.PlanError) as exc:
        print(f"local stack: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if stack is not None:
            stopping = time.monotonic()
            stack.stop()
            print(f"stopped in {time.monotonic() - stopping:.1f} s (ran {time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
