"""Every setting, read once from the environment into a frozen object.

`load_settings(environ)` builds and validates a `Settings`; the entry points' collaborators build it
once from `os.environ` (`web/deps.py`). Settings that only some functions need (provider keys, the
polling URL, ...) are optional at load time and checked where they are used with
`Settings.require(field)`, which fails with a message naming the environment variable. Secrets are
`SecretStr`, so they never appear in a repr, a log line or an error.

The settings are validated with msgspec rather than pydantic: every function loads them before its
first answer, and pydantic's import and first schema cost about 180 ms of a cold start on a full
core (the status check's, in an A/B of fresh processes); the request bodies stay pydantic models
(`web/schemas.py`). Each variable is converted to its field's type on its own, so one error names
every bad variable.

The README's configuration table lists every variable; `ENV_VARS` below is the single source of
the names (a test keeps the two in sync).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct, field

from errors import AppError, msgspec_problem


class ConfigError(AppError):
    """A setting is missing or invalid; the message names the environment variable(s)."""

    default_code = "misconfigured"


# veo models cost more with sound: `MODEL+audio` prices a veo task sent with `audio: true`
DEFAULT_RUNWAYML_CREDITS_PER_SECOND = {
    "gen4.5": 12,
    "gen4_turbo": 5,
    "veo3.1": 20,
    "veo3.1+audio": 40,
    "veo3.1_fast": 10,
    "veo3.1_fast+audio": 15,
}
# hosts the providers serve finished videos from (RunwayML's CDN, HeyGen's file hosts)
DEFAULT_OUTPUT_HOSTS = ("dnznrvs05pmza.cloudfront.net", ".heygen.ai", ".heygen.com")
QUOTA_PATTERN = r"^ *[0-9]+ */ *[1-9][0-9]* *(, *[0-9]+ */ *[1-9][0-9]* *)*$"


class SecretStr:
    """A secret's value: `get_secret_value()` reads it; its repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretStr('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class TierLimits(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What one plan lets a user do (`TIER_LIMITS`; enforced by `jobs/admission.py`)."""

    jobs_per_minute: Annotated[int, Meta(ge=0)]
    jobs_per_hour: Annotated[int, Meta(ge=0)]
    jobs_per_day: Annotated[int, Meta(ge=0)]
    live_jobs: Annotated[int, Meta(ge=0)]  # jobs not yet ended, at once
    max_script_chars: Annotated[int, Meta(ge=1)]
    max_duration_s: Annotated[int, Meta(ge=1)]  # the longest clip (`durationS`) the plan may ask for
    qualities: tuple[Literal["standard", "premium"], ...]
    usd_per_day: Annotated[float, Meta(ge=0)]  # estimated at admission, corrected by each job's actual cost
    status_checks_per_minute: Annotated[int, Meta(ge=1)]  # status checks and cancels, per function instance


# The plans of a consumer app: a free user makes a few standard videos a day, one at a time.
DEFAULT_TIER_LIMITS = {
    "free": TierLimits(
        jobs_per_minute=1,
        jobs_per_hour=3,
        jobs_per_day=3,
        live_jobs=1,
        max_script_chars=1500,
        max_duration_s=5,
        qualities=("standard",),
        usd_per_day=10.0,
        status_checks_per_minute=60,
    ),
    "pro": TierLimits(
        jobs_per_minute=3,
        jobs_per_hour=20,
        jobs_per_day=40,
        live_jobs=2,
        max_script_chars=5000,
        max_duration_s=10,
        qualities=("standard", "premium"),
        usd_per_day=100.0,
        status_checks_per_minute=120,
    ),
}

# field name -> environment variable(s); the first name wins, later ones are accepted aliases.
ENV_VARS: dict[str, tuple[str, ...]] = {
    "project_id": ("GOOGLE_CLOUD_PROJECT", "GCP_PROJECT"),
    "region": ("FUNCTION_REGION",),
    "firebase_project_id": ("FIREBASE_PROJECT_ID",),
    "jobs_collection": ("JOBS_COLLECTION",),
    "runwayml_tasks_collection": ("RUNWAYML_TASKS_COLLECTION",),
    "heygen_tasks_collection": ("HEYGEN_TASKS_COLLECTION",),
    "support_collection_prefix": ("SUPPORT_COLLECTION_PREFIX",),
    "retention_days": ("RETENTION_DAYS",),
    "job_deadline_s": ("JOB_DEADLINE_SECONDS",),
    "runwayml_api_key": ("RUNWAYML_API_KEY", "RUNWAYML_API_SECRET"),
    "runwayml_base_url": ("RUNWAYML_BASE_URL",),
    "runwayml_api_version": ("RUNWAYML_API_VERSION",),
    "runwayml_credits_per_second": ("RUNWAYML_CREDITS_PER_SECOND",),
    "runwayml_usd_per_credit": ("RUNWAYML_USD_PER_CREDIT",),
    "runwayml_veo_audio": ("RUNWAYML_VEO_AUDIO",),
    "runwayml_webhook_secrets": ("RUNWAYML_WEBHOOK_SECRET",),
    "heygen_api_key": ("HEYGEN_API_KEY",),
    "heygen_base_url": ("HEYGEN_BASE_URL",),
    "heygen_avatar_id": ("HEYGEN_AVATAR_ID",),
    "heygen_voice_id": ("HEYGEN_VOICE_ID",),
    "heygen_avatar_type": ("HEYGEN_AVATAR_TYPE",),
    "heygen_usd_per_second": ("HEYGEN_USD_PER_SECOND",),
    "heygen_webhook_secrets": ("HEYGEN_WEBHOOK_SECRET",),
    "firebase_certs_url": ("FIREBASE_CERTS_URL",),
    "google_certs_url": ("GOOGLE_CERTS_URL",),
    "functions_base_url": ("FUNCTIONS_BASE_URL",),
    "tasks_queue": ("TASKS_QUEUE",),
    "tasks_location": ("TASKS_LOCATION",),
    "tasks_service_account": ("TASKS_SERVICE_ACCOUNT",),
    "tasks_emulator_host": ("CLOUD_TASKS_EMULATOR_HOST",),
    "ops_service_accounts": ("OPS_SERVICE_ACCOUNTS",),
    "storage_bucket": ("STORAGE_BUCKET",),
    "storage_emulator_host": ("STORAGE_EMULATOR_HOST",),
    "signed_url_ttl_s": ("SIGNED_URL_TTL_SECONDS",),
    "output_hosts": ("OUTPUT_HOSTS",),
    "cors_origins": ("CORS_ORIGINS",),
    "app_check": ("APP_CHECK",),
    "app_check_jwks_url": ("APP_CHECK_JWKS_URL",),
    "image_url_hosts": ("IMAGE_URL_HOSTS",),
    "finalize_max_bytes": ("FINALIZE_MAX_BYTES",),
    "finalize_timeout_s": ("FINALIZE_TIMEOUT_SECONDS",),
    "finalize_max_attempts": ("FINALIZE_MAX_ATTEMPTS",),
    "scheduler_service_account": ("SCHEDULER_SERVICE_ACCOUNT",),
    "http_connect_timeout_s": ("HTTP_CONNECT_TIMEOUT_SECONDS",),
    "http_read_timeout_s": ("HTTP_READ_TIMEOUT_SECONDS",),
    "http_max_attempts": ("HTTP_MAX_ATTEMPTS",),
    "retry_after_cap_s": ("RETRY_AFTER_CAP_SECONDS",),
    "webhook_tolerance_s": ("WEBHOOK_TOLERANCE_SECONDS",),
    "runwayml_quota": ("RUNWAYML_QUOTA",),
    "heygen_quota": ("HEYGEN_QUOTA",),
    "circuit_failure_threshold": ("CIRCUIT_FAILURE_THRESHOLD",),
    "circuit_cooldown_s": ("CIRCUIT_COOLDOWN_SECONDS",),
    "counter_shards": ("COUNTER_SHARDS",),
    "tier_limits": ("TIER_LIMITS",),
    "spend_cap_usd_per_day": ("SPEND_CAP_USD_PER_DAY",),
    "provider_spend_caps_usd_per_day": ("PROVIDER_SPEND_CAPS_USD_PER_DAY",),
    "local_token_key_file": ("LOCAL_TOKEN_KEY_FILE",),
    "prompt_writer": ("PROMPT_WRITER",),
    "gemini_model": ("GEMINI_MODEL",),
    "gemini_location": ("GEMINI_LOCATION",),
    "gemini_timeout_s": ("GEMINI_TIMEOUT_SECONDS",),
    "vertex_base_url": ("VERTEX_BASE_URL",),
}


class Settings(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The validated configuration of one process. Immutable."""

    project_id: Annotated[str, Meta(min_length=1)]
    region: str = "us-central1"
    firebase_project_id: str | None = None

    jobs_collection: str = "enhanced_video_jobs"
    # None: the provider's own default (`ProviderSpec.records_collection(settings)`)
    runwayml_tasks_collection: str | None = None
    heygen_tasks_collection: str | None = None
    support_collection_prefix: str = "video_"
    retention_days: Annotated[int, Meta(ge=1, le=3650)] = 30
    job_deadline_s: Annotated[int, Meta(ge=60, le=86400)] = 1800

    runwayml_api_key: SecretStr | None = None
    runwayml_base_url: str = "https://api.dev.runwayml.com"
    runwayml_api_version: str = "2024-11-06"
    runwayml_credits_per_second: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_RUNWAYML_CREDITS_PER_SECOND)
    )
    runwayml_usd_per_credit: Annotated[float, Meta(ge=0)] = 0.01
    runwayml_veo_audio: bool = True  # veo bodies carry `audio`, priced by the `MODEL+audio` rates
    runwayml_webhook_secrets: tuple[SecretStr, ...] = ()

    heygen_api_key: SecretStr | None = None
    heygen_base_url: str = "https://api.heygen.com"
    heygen_avatar_id: str | None = None
    heygen_voice_id: str | None = None
    # the price follows the avatar type (`providers/heygen/mapping.py` USD_PER_SECOND) unless overridden
    heygen_avatar_type: Literal["photo_avatar", "digital_twin", "studio_avatar"] = "digital_twin"
    heygen_usd_per_second: Annotated[float, Meta(ge=0)] | None = None
    heygen_webhook_secrets: tuple[SecretStr, ...] = ()

    firebase_certs_url: str = (
        "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com"
    )
    google_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"
    functions_base_url: str | None = None
    tasks_queue: str = "video-polling"
    tasks_location: str | None = None
    tasks_service_account: str | None = None
    tasks_emulator_host: str | None = None
    ops_service_accounts: tuple[str, ...] = ()
    storage_bucket: str | None = None
    storage_emulator_host: str | None = None  # http://127.0.0.1:PORT (local and tests only)
    signed_url_ttl_s: Annotated[int, Meta(ge=60, le=7 * 86400)] = 3600  # V4 signed URLs: at most 7 days
    # where finished videos may be downloaded from: exact hosts, or ".domain" for any subdomain
    output_hosts: tuple[str, ...] = DEFAULT_OUTPUT_HOSTS
    # web origins allowed to call the user-facing functions from a browser (exact, no wildcard)
    cors_origins: tuple[str, ...] = ()
    # Firebase App Check on the user-facing functions (web/appcheck.py): "enforce" or "off"
    app_check: Literal["off", "enforce"] = "off"
    app_check_jwks_url: str = "https://firebaseappcheck.googleapis.com/v1/jwks"
    # where input images may come from (same form); empty: any public https name (providers/urls.py)
    image_url_hosts: tuple[str, ...] = ()
    finalize_max_bytes: Annotated[int, Meta(ge=1024, le=2 * 1024**3)] = 256 * 1024 * 1024
    finalize_timeout_s: Annotated[float, Meta(gt=0, le=1800)] = 300.0
    finalize_max_attempts: Annotated[int, Meta(ge=1, le=20)] = 5
    scheduler_service_account: str | None = None

    http_connect_timeout_s: Annotated[float, Meta(gt=0, le=60)] = 5.0
    http_read_timeout_s: Annotated[float, Meta(gt=0, le=300)] = 30.0
    http_max_attempts: Annotated[int, Meta(ge=1, le=10)] = 3
    retry_after_cap_s: Annotated[float, Meta(ge=0, le=600)] = 30.0
    webhook_tolerance_s: Annotated[int, Meta(ge=1, le=3600)] = 300

    # the project's own request budget per provider: COUNT/SECONDS per fixed window (providers/quota.py);
    # None: the provider's own default (`ProviderSpec.quota(settings)`)
    runwayml_quota: Annotated[str, Meta(pattern=QUOTA_PATTERN)] | None = None
    heygen_quota: Annotated[str, Meta(pattern=QUOTA_PATTERN)] | None = None
    circuit_failure_threshold: Annotated[int, Meta(ge=1, le=1000)] = 5
    circuit_cooldown_s: Annotated[float, Meta(gt=0, le=86400)] = 60.0
    # each budget window is split over this many counter documents, so no one document is hot
    counter_shards: Annotated[int, Meta(ge=1, le=64)] = 8

    # per-user limits by plan (the `tier` custom claim; none: free); TIER_LIMITS overrides per plan
    tier_limits: dict[str, TierLimits] = field(default_factory=lambda: dict(DEFAULT_TIER_LIMITS))
    # the project's estimated spend per UTC day, in total and per provider: new creates stop there
    spend_cap_usd_per_day: Annotated[float, Meta(ge=0)] = 500.0
    provider_spend_caps_usd_per_day: dict[str, float] = field(default_factory=dict)

    # local stack only: the emulator sends no OIDC token, so tasks carry one signed with this key
    local_token_key_file: str | None = None

    # who writes the video prompt: the rules composer, or Gemini on Vertex AI checked against the same
    # rules (providers/prompts/gemini.py); VERTEX_BASE_URL points at a loopback simulator (local/tests only)
    prompt_writer: Literal["rules", "gemini"] = "rules"
    gemini_model: Annotated[str, Meta(min_length=1)] = "gemini-2.5-flash"
    gemini_location: Annotated[str, Meta(min_length=1)] = "global"
    gemini_timeout_s: Annotated[float, Meta(gt=0, le=30)] = 4.0
    vertex_base_url: str | None = None

    @property
    def queue_location(self) -> str:
        """Cloud Tasks location (defaults to the functions' region)."""
        return self.tasks_location if self.tasks_location is not None else self.region

    def function_url(self, name: str) -> str:
        """URL of a deployed (or locally served) function; also the OIDC audience of its tasks."""
        base = self.require("functions_base_url")
        return f"{base}/{name}"

    @property
    def firebase_project(self) -> str:
        """The project whose Firebase ID tokens are accepted (defaults to the GCP project)."""
        return self.firebase_project_id if self.firebase_project_id is not None else self.project_id

    def collection(self, name: str) -> str:
        """Name of a small supporting collection (health, quota, webhook events, ...)."""
        return f"{self.support_collection_prefix}{name}"

    def secret_values(self) -> list[str]:
        """The plain values of every secret setting (for the log redactor; never to be written)."""
        found: list[str] = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, SecretStr):
                    found.append(item.get_secret_value())
        return found

    def require(self, field: str) -> Any:
        """Return a setting that this code path cannot do without, or fail naming its variable."""
        value = getattr(self, field)
        if value is None or value == ():
            names = " (or ".join(ENV_VARS[field]) + ")" * (len(ENV_VARS[field]) - 1)
            raise ConfigError(f"{names} is not set; it is required for this function")
        return value


# A setting's own rule beyond its type: each returns the value to keep or raises ValueError.


def _exact_origins(value: tuple[str, ...]) -> tuple[str, ...]:
    for origin in value:
        if not re.fullmatch(r"https?://[a-z0-9.-]+(:[0-9]{1,5})?", origin):
            raise ValueError(
                f"{origin!r} is not an exact origin like https://app.example.com (no path, no *)"
            )
    return value


def _lower_hosts(value: tuple[str, ...]) -> tuple[str, ...]:
    hosts = tuple(h.strip().lower() for h in value if h.strip())
    if any("/" in h or "*" in h for h in hosts):
        raise ValueError("give host names (or .domain for subdomains), not URLs or wildcards")
    return hosts


def _emulator_url(value: str) -> str:
    value = value if value.startswith(("http://", "https://")) else f"http://{value}"
    return value.rstrip("/")


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value.rstrip("/")


def _non_negative(value: dict[str, float]) -> dict[str, float]:
    if any(cap < 0 for cap in value.values()):
        raise ValueError("spend caps must be 0 or more")
    return value


_RULES: dict[str, Callable[[Any], Any]] = {
    "cors_origins": _exact_origins,
    "output_hosts": _lower_hosts,
    "image_url_hosts": _lower_hosts,
    "storage_emulator_host": _emulator_url,
    "runwayml_base_url": _url,
    "heygen_base_url": _url,
    "app_check_jwks_url": _url,
    "functions_base_url": _url,
    "vertex_base_url": _url,
    "provider_spend_caps_usd_per_day": _non_negative,
}


class _Invalid(Exception):
    """A value that fails its field's type or rule; `where` is the place inside it (`free.live_jobs`)."""

    def __init__(self, message: str, where: str = "") -> None:
        self.message, self.where = message, where


def _convert(value: Any, kind: Any) -> Any:
    """`value` as `kind` (strings become numbers and booleans), or `_Invalid` saying where and why."""
    try:
        return msgspec.convert(value, kind, strict=False, dec_hook=_secret)
    except msgspec.ValidationError as exc:
        message, where = msgspec_problem(exc)
        raise _Invalid(message, ".".join(where)) from None


def _secret(kind: type, value: Any) -> Any:
    if kind is SecretStr and isinstance(value, str):
        return SecretStr(value)
    raise NotImplementedError


def _tier_limits(value: Any) -> dict[str, TierLimits]:
    """`{"free": {"jobsPerDay": 5}, "team": {...}}`: each plan's fields over its default (a new plan's
    over free's); the free plan always exists, since callers without a tier are on it."""
    if not isinstance(value, Mapping):
        raise _Invalid("must be an object of plans")
    merged = {name: msgspec.structs.asdict(limits) for name, limits in DEFAULT_TIER_LIMITS.items()}
    for name, fields in value.items():
        if not isinstance(fields, Mapping):
            raise _Invalid(f"plan {name!r} must be an object of limits")
        base = merged.get(name, merged["free"])
        merged[name] = {**base, **{_snake(k): v for k, v in fields.items()}}
    plans = {}
    for name, fields in merged.items():
        try:
            plans[name] = _convert(fields, TierLimits)
        except _Invalid as exc:
            raise _Invalid(exc.message, ".".join(filter(None, (name, exc.where)))) from None
    return plans


# the words a boolean setting may be given as (true/false and 1/0 convert as they are)
_BOOLEANS = {"yes": True, "y": True, "on": True, "t": True, "no": False, "n": False, "off": False, "f": False}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", lambda m: "_" + m[1].lower(), name)


def _parse(field: str, raw: str) -> Any:
    if field.endswith(("_secrets", "_accounts", "_hosts", "_origins")):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if field in ("runwayml_credits_per_second", "tier_limits"):
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{ENV_VARS[field][0]} is not valid JSON: {exc.msg}") from None
    if field == "provider_spend_caps_usd_per_day":  # runwayml=200,heygen=300
        pairs = [part.partition("=") for part in raw.split(",") if part.strip()]
        if any(not sep or not name.strip() for name, sep, _ in pairs):
            raise ConfigError("PROVIDER_SPEND_CAPS_USD_PER_DAY must be PROVIDER=USD pairs, comma-separated")
        return {name.strip(): value.strip() for name, _, value in pairs}
    return raw


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build `Settings` from an environment mapping; raise `ConfigError` naming every bad variable."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for spec in msgspec.structs.fields(Settings):
        names = ENV_VARS[spec.name]
        name = next((n for n in names if (environ.get(n) or "").strip() != ""), None)
        if name is None:
            if spec.required:
                problems.append(f"{names[0]} is not set; it is required")
            continue
        try:
            raw = _parse(spec.name, environ[name].strip())
            if spec.type is bool and isinstance(raw, str):
                raw = _BOOLEANS.get(raw.lower(), raw)
            value = _tier_limits(raw) if spec.name == "tier_limits" else _convert(raw, spec.type)
            values[spec.name] = _RULES.get(spec.name, _same)(value)
        except ConfigError as exc:
            problems.append(exc.message)
        except _Invalid as exc:
            problems.append(f"{name} is invalid{f' at {exc.where}' if exc.where else ''}: {exc.message}")
        except ValueError as exc:
            problems.append(f"{name} is invalid: {exc}")
    if problems:
        raise ConfigError("; ".join(problems), problems=problems) from None
    return Settings(**values)


def _same(value: Any) -> Any:
    return value
