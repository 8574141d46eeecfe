"""What the local stack configures (pure): identities, provider choice, fault mixes, the functions' env.

The functions read the same settings as when deployed (`config.py`); only the values point at
loopback: the Firestore and Cloud Tasks emulators, the provider simulators, and the token issuer's
certificates. A provider whose real key is in the caller's environment is used for real instead of
its simulator (`provider_modes`), and every real provider is announced by `real_money_warnings`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from config import DEFAULT_TIER_LIMITS, ENV_VARS

PROJECT = "demo-cvplus"  # the "demo-" prefix: a project id that can never be a real one
REGION = "us-central1"
LOCAL_USER = "local-user"
RUNWAYML_SIM_KEY = "key_" + "10ca1" * 8  # the simulator wants key_ + hex, like the real API
HEYGEN_SIM_KEY = "sim-heygen-key"
HEYGEN_SIM_AVATAR = "avatar-cv-local"
PROVIDERS = ("heygen", "runwayml")
SIMULATOR, REAL = "simulator", "real"
# Request faults a user can watch the system survive; task faults (stuck, moderation) would end
# a demo job in a time-out or a rejection instead of a fallback, so --fault-rate leaves them out.
FAULT_SHARES = {"http_5xx": 0.4, "http_429": 0.3, "reset": 0.15, "malformed": 0.15}
# Settings that lift every per-user limit and the spend caps out of the way, for runs that make many
# jobs from a few users (the demo's --jobs, the chaos run, benchmarks, most tests); `make stack`
# keeps the real defaults.
_UNLIMITED = {"jobsPerMinute": 10**6, "jobsPerHour": 10**6, "jobsPerDay": 10**6, "liveJobs": 10**6}
_UNLIMITED |= {"maxScriptChars": 20_000, "maxDurationS": 10, "qualities": ["standard", "premium"]}
_UNLIMITED |= {"usdPerDay": 10**9, "statusChecksPerMinute": 10**6}
UNLIMITED_PLANS = {
    "TIER_LIMITS": json.dumps({tier: _UNLIMITED for tier in DEFAULT_TIER_LIMITS}),
    "SPEND_CAP_USD_PER_DAY": str(10**9),
}


def service_account(role: str, project: str = PROJECT) -> str:
    """The local stand-in of a deployed account (`deploy.sh` names them cvplus-video-<role>)."""
    return f"cvplus-video-{role}@{project}.iam.gserviceaccount.com"


class PlanError(ValueError):
    """The caller's environment asks for something the local stack cannot do."""


def provider_modes(environ: Mapping[str, str]) -> dict[str, str]:
    """`real` for each provider whose API key is in `environ`, else `simulator`."""
    runway_key = environ.get("RUNWAYML_API_KEY") or environ.get("RUNWAYML_API_SECRET")
    modes = {"runwayml": REAL if runway_key else SIMULATOR, "heygen": SIMULATOR}
    if environ.get("HEYGEN_API_KEY"):
        if not environ.get("HEYGEN_AVATAR_ID"):
            raise PlanError("HEYGEN_API_KEY is set but HEYGEN_AVATAR_ID is not; the real HeyGen needs both")
        modes["heygen"] = REAL
    return modes


def real_money_warnings(modes: Mapping[str, str]) -> list[str]:
    return [
        f"{name}: the REAL API is used (its key is in your environment); every video costs real money"
        for name in PROVIDERS
        if modes.get(name) == REAL
    ]


def fault_mix(rate: float) -> str:
    """A simulator fault spec spreading `rate` (0-1) over the request faults of `FAULT_SHARES`."""
    if not 0 <= rate <= 1:
        raise PlanError(f"a fault rate is between 0 and 1, not {rate}")
    if rate == 0:
        return ""
    return ",".join(f"{kind}={rate * share:.4f}" for kind, share in FAULT_SHARES.items())


@dataclass(frozen=True)
class Endpoints:
    """Where each part of the local stack listens."""

    functions_base_url: str
    firestore_host: str
    tasks_host: str
    certs_url: str
    token_key_file: str
    runwayml_url: str | None  # None: the real API
    heygen_url: str | None
    heygen_webhook_secret: str | None = None
    storage_url: str | None = None
    storage_bucket: str | None = None


def _without_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment minus every project setting, so none leaks in by accident."""
    names = {name for aliases in ENV_VARS.values() for name in aliases}
    names |= {"FIRESTORE_EMULATOR_HOST"}
    return {key: value for key, value in environ.items() if key not in names}


def _provider_env(environ: Mapping[str, str], ends: Endpoints) -> dict[str, str]:
    env: dict[str, str] = {}
    if ends.runwayml_url is None:
        for name in ("RUNWAYML_API_KEY", "RUNWAYML_API_SECRET", "RUNWAYML_BASE_URL"):
            if environ.get(name):
                env[name] = environ[name]
    else:
        env |= {"RUNWAYML_API_KEY": RUNWAYML_SIM_KEY, "RUNWAYML_BASE_URL": ends.runwayml_url}
    if ends.heygen_url is None:
        for name in ("HEYGEN_API_KEY", "HEYGEN_AVATAR_ID", "HEYGEN_VOICE_ID", "HEYGEN_BASE_URL"):
            if environ.get(name):
                env[name] = environ[name]
    else:
        env |= {"HEYGEN_API_KEY": HEYGEN_SIM_KEY, "HEYGEN_BASE_URL": ends.heygen_url}
        env["HEYGEN_AVATAR_ID"] = HEYGEN_SIM_AVATAR
    if ends.heygen_webhook_secret is not None:
        env["HEYGEN_WEBHOOK_SECRET"] = ends.heygen_webhook_secret
    return env


def functions_env(
    environ: Mapping[str, str], ends: Endpoints, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of the functions process: `environ` (PATH, ...) with the stack's settings."""
    env = _without_settings(environ)
    env |= {
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "FUNCTION_REGION": REGION,
        "FIRESTORE_EMULATOR_HOST": ends.firestore_host,
        "CLOUD_TASKS_EMULATOR_HOST": ends.tasks_host,
        "FUNCTIONS_BASE_URL": ends.functions_base_url,
        "FIREBASE_CERTS_URL": ends.certs_url,
        "GOOGLE_CERTS_URL": ends.certs_url,
        "LOCAL_TOKEN_KEY_FILE": ends.token_key_file,
        "TASKS_SERVICE_ACCOUNT": service_account("tasks"),
        "SCHEDULER_SERVICE_ACCOUNT": service_account("scheduler"),
        "OPS_SERVICE_ACCOUNTS": service_account("ops"),
        "PYTHONUNBUFFERED": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    if ends.storage_url is not None and ends.storage_bucket is not None:
        env |= {"STORAGE_EMULATOR_HOST": ends.storage_url, "STORAGE_BUCKET": ends.storage_bucket}
        env["OUTPUT_HOSTS"] = "127.0.0.1"  # the simulators serve the finished videos
    env |= _provider_env(environ, ends)
    return env | dict(extra or {})


def child_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of a simulator: the caller's, unbuffered, never through a proxy."""
    env = _without_settings(environ)
    env |= {"PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    return env
