"""Building blocks of the local stack: simulator processes, the optional storage emulator, a
parallel start that reports every failure, and the state record tools read."""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local import stack_env as plan
from local.procs import ManagedProcess, StartupError, free_port, port_open
from local.stack_state import ROOT, StackState


@dataclass(frozen=True)
class SimSettings:
    speed: float
    faults: str
    seed: int
    concurrency: Mapping[str, int] = field(default_factory=dict)  # renders at once, by provider


def simulator(
    name: str, sim: SimSettings, logs: Path, environ: Mapping[str, str], webhook: tuple[str, str] | None
) -> tuple[ManagedProcess, int]:
    """`python -m local.<name>_sim` on a free port (not started); HeyGen's webhooks go to `webhook`."""
    port = free_port()
    argv = [sys.executable, "-m", f"local.{name}_sim", "--port", str(port)]
    argv += [f"--speed={sim.speed}", f"--seed={sim.seed}"]
    if sim.faults:
        argv.append(f"--faults={sim.faults}")
    if name in sim.concurrency:
        argv.append(f"--concurrency={sim.concurrency[name]}")
    if name == "heygen":
        argv.append(f"--api-key={plan.HEYGEN_SIM_KEY}")
        if webhook is not None:
            argv += [f"--webhook-url={webhook[0]}", f"--webhook-secret={webhook[1]}"]
    log_path = logs / f"{name}-sim.log"
    proc = ManagedProcess(f"{name}-sim", argv, log_path=log_path, env=plan.child_env(environ), cwd=ROOT)
    return proc, port


def storage_emulator(wanted: bool | None, function_names: list[str], logs: Path) -> Any:
    """The storage emulator (not started) when asked for, or by default when the finalize step
    exists and the emulator is installed; None otherwise."""
    if wanted is None:
        wanted = "finalize_video_task" in function_names
        required = False
    else:
        required = wanted
    if not wanted:
        return None
    try:
        from local.storage_emulator import StorageEmulator

        return StorageEmulator(logs)
    except (ImportError, StartupError) as exc:
        if required:
            raise StartupError(f"the storage emulator is not available: {exc}") from None
        return None


def start_process(proc: ManagedProcess, check: Callable[[], bool], timeout_s: float) -> None:
    proc.start()
    proc.wait_ready(check, timeout_s)


def port_starter(proc: ManagedProcess, port: int, timeout_s: float) -> Callable[[], None]:
    return lambda: start_process(proc, lambda: port_open(port), timeout_s)


def start_in_parallel(jobs: Mapping[str, Callable[[], Any]]) -> None:
    """Run every start at once and wait for all; `StartupError` naming each part that failed."""
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
    failed = [f"{name}: {future.exception()}" for name, future in futures.items() if future.exception()]
    if failed:
        raise StartupError("some parts did not start:\n" + "\n".join(failed))


def stop_in_parallel(stops: list[Callable[[], None]]) -> None:
    with ThreadPoolExecutor(max_workers=max(1, len(stops))) as pool:
        list(pool.map(lambda stop: stop(), stops))


def stack_state(
    ends: plan.Endpoints,
    settings: Any,
    *,
    modes: Mapping[str, str],
    functions: list[str],
    queue: str,
    log_dir: Path,
    sim: SimSettings,
) -> StackState:
    urls = {"runwayml": ends.runwayml_url or settings.runwayml_base_url}
    urls["heygen"] = ends.heygen_url or settings.heygen_base_url
    return StackState(
        pid=os.getpid(),
        project=plan.PROJECT,
        region=settings.region,
        functions_base_url=ends.functions_base_url,
        functions={name: f"{ends.functions_base_url}/{name}" for name in functions},
        firestore_host=ends.firestore_host,
        tasks_host=ends.tasks_host,
        queue=queue,
        token_key_file=ends.token_key_file,
        certs_url=ends.certs_url,
        service_accounts={role: plan.service_account(role) for role in ("tasks", "scheduler", "ops")},
        local_user=plan.LOCAL_USER,
        providers={name: {"mode": modes[name], "url": url} for name, url in urls.items()},
        log_dir=str(log_dir),
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        storage_url=ends.storage_url,
        storage_bucket=ends.storage_bucket,
        extra={"speed": sim.speed, "faults": sim.faults, "seed": sim.seed},
    )
