"""The provider protocol, its request and snapshot types, and the error tree.

Every provider package (`runwayml/`, `heygen/`) turns its wire format into these types with small
pure functions; nothing above `providers/` sees a provider's JSON or an HTTP library.

Statuses (one enum for jobs and provider tasks; providers never report `timed_out`)::

    queued --> processing --> completed | failed | cancelled | timed_out
       \\__________________________/^   (terminal states are final)

Error tree (the decision lives on the error)::

    ProviderError                  retry fallback  typical cause
    |-- ProviderUnavailable        yes   yes       5xx, connection reset, read timeout on a GET
    |   |-- ConnectFailed          yes   yes       never reached the provider (refused, no connect)
    |   `-- MalformedResponse      yes   yes       body that is not the documented JSON
    |-- RateLimited                yes   yes       429; `retry_after` in seconds when given
    |-- InsufficientCredits        no    yes       402, wallet or credits exhausted
    |-- OutcomeUnknown             no    yes       a create that may have reached the provider
    |-- RequestInProgress          yes   no        409: same idempotency key still running
    |-- InvalidRequest             no    no        400 / local validation: fix the input
    |-- ContentRejected            no    no        moderation (input or output)
    |-- AuthenticationFailed       no    no        401/403: a configuration bug, alert
    `-- NotFound                   no    no        404: unknown task, avatar, voice

`retryable` means "the same call may be repeated on the same provider"; `fallback_allowed` means
"another provider could do this job". `OutcomeUnknown` is never retried on the same provider
(RunwayML has no idempotency keys, so a repeat could be charged twice); the job may fall back.
Messages never carry keys, tokens or request bodies.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from errors import AppError


class Status(enum.StrEnum):
    """Status of a job or of one provider task, in the project's own vocabulary."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


TERMINAL_STATUSES = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT})
ACTIVE_STATUSES = frozenset({Status.QUEUED, Status.PROCESSING})


def is_reserved_id(value: str) -> bool:
    """Firestore reserves document ids of the form `__...__`: never a job, task or event id here."""
    return len(value) >= 4 and value.startswith("__") and value.endswith("__")


def is_terminal(status: Status | str) -> bool:
    """True for the final statuses; unknown strings are not terminal."""
    return status in TERMINAL_STATUSES


# ---------------------------------------------------------------------------------------------------
# Errors


class ProviderError(AppError):
    """Base of every provider failure; subclasses fix `retryable` and `fallback_allowed`."""

    default_code = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        code: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, retry_after=retry_after)
        self.provider = provider
        self.http_status = http_status

    def to_dict(self) -> dict[str, object]:
        """A JSON-safe description for job records and logs (no secrets by construction)."""
        return {
            "type": type(self).__name__,
            "code": self.code,
            "message": self.message,
            "provider": self.provider,
            "httpStatus": self.http_status,
            "retryable": self.retryable,
            "fallbackAllowed": self.fallback_allowed,
        }


class ProviderUnavailable(ProviderError):
    retryable = True
    fallback_allowed = True
    default_code = "provider_unavailable"


class ConnectFailed(ProviderUnavailable):
    """The request provably never reached the provider, so even a create may be repeated."""

    default_code = "connect_failed"


class MalformedResponse(ProviderUnavailable):
    default_code = "malformed_response"


class RateLimited(ProviderError):
    retryable = True
    fallback_allowed = True
    default_code = "rate_limited"


class InsufficientCredits(ProviderError):
    fallback_allowed = True
    default_code = "insufficient_credits"


class OutcomeUnknown(ProviderError):
    fallback_allowed = True
    default_code = "outcome_unknown"


class RequestInProgress(ProviderError):
    retryable = True
    default_code = "request_in_progress"


class InvalidRequest(ProviderError):
    default_code = "invalid_request"


class ContentRejected(ProviderError):
    default_code = "content_rejected"


class AuthenticationFailed(ProviderError):
    default_code = "authentication_failed"


class NotFound(ProviderError):
    default_code = "not_found"


# ---------------------------------------------------------------------------------------------------
# Requests and results


@dataclass(frozen=True)
class VideoRequest:
    """One generation, in provider-neutral terms (built from the app's request and the prompt).

    `attempt_id` is unique per (job, attempt) and is the idempotency key where a provider takes one.
    `resolution` is "720p" or "1080p"; with `aspect_ratio` "16:9" the latter is the seed's 1920x1080.
    """

    job_id: str
    attempt_id: str
    prompt_text: str
    script: str = ""
    title: str = ""
    style: str = "professional"
    quality: str = "standard"
    duration_s: int = 5
    aspect_ratio: str = "16:9"
    resolution: str = "720p"
    output_format: str = "mp4"
    image_url: str | None = None
    seed: int | None = None
    camera_motion: str | None = None
    camera_intensity: float = 0.5
    model: str | None = None


@dataclass(frozen=True)
class Capabilities:
    """What a provider can make; its validation reads it (`problem`), and so does the selection engine.

    `max_prompt_units` is the provider's one prompt limit, in the provider's own unit (RunwayML:
    UTF-16 code units of the prompt; HeyGen: characters of the script); `providers/prompts` fits to it.
    Whether a provider sends webhooks is its spec's `webhook` (`providers/spec.py`).
    """

    models: tuple[str, ...]
    min_duration_s: int
    max_duration_s: int
    aspect_ratios: tuple[str, ...]
    resolutions: tuple[str, ...]
    formats: tuple[str, ...]
    max_prompt_units: int
    supports_image_input: bool
    supports_cancel: bool
    idempotent_create: bool

    def problem(self, request: VideoRequest) -> str | None:
        """The first shape this provider does not make (input image, ratio, resolution, format)."""
        if request.image_url and not self.supports_image_input:
            return "image_url: this provider takes no input image; leave image_url out"
        for name, allowed in (
            ("aspect_ratio", self.aspect_ratios),
            ("resolution", self.resolutions),
            ("output_format", self.formats),
        ):
            if (value := getattr(request, name)) not in allowed:
                return f"{name}: {value!r} is not supported; use one of {', '.join(allowed)}"
        return None


@dataclass(frozen=True)
class CostEstimate:
    credits: float | None
    usd: float


@dataclass(frozen=True)
class CreateResult:
    task_id: str
    model: str
    estimated_credits: float | None = None
    estimated_usd: float | None = None


@dataclass(frozen=True)
class ProviderSnapshot:
    """What a provider says about one task at one moment, already in the project's terms.

    `progress` is 0-100. `fallback_allowed` matters only for `failed`: whether another provider
    could succeed where this one failed (an outage yes, a moderation rejection no).
    """

    task_id: str
    status: Status
    provider_status: str
    progress: float = 0.0
    output_urls: tuple[str, ...] = ()
    gif_url: str | None = None
    thumbnail_url: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    fallback_allowed: bool = False
    cost_credits: float | None = None
    cost_usd: float | None = None


@dataclass(frozen=True)
class ModelLimits:
    max_concurrent: int | None = None
    max_daily: int | None = None
    used_today: int | None = None


@dataclass(frozen=True)
class ProviderHealth:
    provider: str
    reachable: bool
    latency_ms: float | None = None
    credit_balance: float | None = None
    balance_usd: float | None = None
    limits: Mapping[str, ModelLimits] = field(default_factory=dict)
    error: str | None = None


@runtime_checkable
class Provider(Protocol):
    """The one interface both providers implement."""

    name: str
    capabilities: Capabilities

    def validate(self, request: VideoRequest) -> None:
        """Raise `InvalidRequest` naming the field when the provider cannot take the request."""

    def create(self, request: VideoRequest) -> CreateResult: ...

    def get(self, task_id: str) -> ProviderSnapshot: ...

    def get_many(self, task_ids: Iterable[str]) -> dict[str, ProviderSnapshot]:
        """Snapshots for many tasks (bulk calls where the API has them); missing ids are omitted."""

    def cancel(self, task_id: str) -> None: ...

    def health(self) -> ProviderHealth: ...

    def estimate_cost(self, request: VideoRequest) -> CostEstimate: ...
