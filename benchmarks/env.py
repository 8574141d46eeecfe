"""The run's shared pieces: options, the Firestore emulator and the token issuer, started once on demand.

    ctx = Context(quick=False)         what every benchmark's `run(ctx)` gets
    ctx.firestore()                    the emulator (FIRESTORE_EMULATOR_HOST is set for this process)
    ctx.issuer()                       the loopback token issuer (local/tokens.py)
    ctx.function_env(...)              the environment a functions-framework subprocess needs
    ctx.close()                        stops what was started
    with simulators() as providers:    both provider simulators, no account limits; `providers` are
                                       the settings that point the functions at them

A test passes an emulator it already runs (`firestore=`), so the smoke test starts no second one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT
from local.firestore_emulator import FirestoreEmulator
from local.stack_env import UNLIMITED_PLANS
from local.tokens import TokenIssuer

PROJECT = "cvplus-bench"
RUNWAY_KEY = "key_" + "cd" * 64
TASKS_SA = "tasks@cvplus-bench.iam.gserviceaccount.com"
OPS_SA = "ops@cvplus-bench.iam.gserviceaccount.com"
CLOSED_URL = "http://127.0.0.1:9"  # providers are configured but never reached where this is used
SCRIPT = "I am a nurse with twelve years on a surgical ward; I train new nurses and lead night shifts."


@dataclass
class Context:
    quick: bool = False
    seed: int = 20_251_124
    docs_dir: Path = ROOT / "docs"
    plots: bool = True
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cvplus-bench-")))
    emulator: FirestoreEmulator | None = None  # given by a test, or started by `firestore()`
    _owned: list[Any] = field(default_factory=list)
    _issuer: TokenIssuer | None = None

    def firestore(self) -> FirestoreEmulator:
        if self.emulator is None:
            self.emulator = FirestoreEmulator(self.work_dir / "logs").start()
            self._owned.append(self.emulator)
        os.environ["FIRESTORE_EMULATOR_HOST"] = self.emulator.host
        return self.emulator

    def wipe(self) -> None:
        self.firestore().wipe(PROJECT)

    def issuer(self) -> TokenIssuer:
        if self._issuer is None:
            self._issuer = TokenIssuer()
            self._owned.append(self._issuer)
        return self._issuer

    def function_env(self, functions_base: str, **extra: str) -> dict[str, str]:
        """Settings for a function process: the emulator, the issuer, no reachable provider."""
        issuer = self.issuer()
        assert issuer.certs_url is not None
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("RUNWAYML_", "HEYGEN_", "GOOGLE_", "FIREBASE_", "CLOUD_TASKS"))
        }
        env.update(
            {
                "GOOGLE_CLOUD_PROJECT": PROJECT,
                "FIRESTORE_EMULATOR_HOST": self.firestore().host,
                "FIREBASE_CERTS_URL": issuer.certs_url,
                "GOOGLE_CERTS_URL": issuer.certs_url,
                "FUNCTIONS_BASE_URL": functions_base,
                "TASKS_SERVICE_ACCOUNT": TASKS_SA,
                "OPS_SERVICE_ACCOUNTS": OPS_SA,
                "RUNWAYML_API_KEY": RUNWAY_KEY,
                "RUNWAYML_BASE_URL": CLOSED_URL,
                "PYTHONPATH": str(ROOT),
                **UNLIMITED_PLANS,  # one user calls thousands of times: the plans are not measured here
                **extra,
            }
        )
        return env

    def log_to_file(self) -> Path:
        """Send the project's JSON logs (in this process) to a file instead of the terminal."""
        import logs

        logs.configure()
        path = self.work_dir / "functions-in-process.log"
        stream = open(path, "a")  # noqa: SIM115 - the handler keeps it until the process exits
        for handler in logging.getLogger("cvplus").handlers:
            if type(handler) is logging.StreamHandler:  # not the handlers of a test runner
                handler.setStream(stream)
        return path

    def close(self) -> None:
        for thing in reversed(self._owned):
            thing.stop()
        self._owned.clear()


@contextlib.contextmanager
def simulators() -> Iterator[dict[str, str]]:
    """Both provider simulators in this process, with no account limits of their own, and the
    settings that point the functions at them, the project's request budgets raised out of the way."""
    from local.heygen_sim import HeyGenSim
    from local.runwayml_sim import RunwayMLSim

    with contextlib.ExitStack() as started:
        runway = RunwayMLSim(api_key=RUNWAY_KEY, concurrency=10**6, daily_limit=10**6).start()
        started.callback(runway.stop)
        heygen = HeyGenSim(max_concurrent=10**6).start()
        started.callback(heygen.stop)
        yield {
            "RUNWAYML_BASE_URL": runway.base_url,
            "HEYGEN_BASE_URL": heygen.base_url,
            "HEYGEN_API_KEY": "sim-heygen-key",
            "HEYGEN_AVATAR_ID": "avatar-bench",
            "RUNWAYML_QUOTA": "1000000/60",
            "HEYGEN_QUOTA": "1000000/60",
        }
