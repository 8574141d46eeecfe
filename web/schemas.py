"""The request bodies and queries of the HTTP functions, validated with pydantic (the status check's
query is the exception: `web/query.py`, with the id and provider rules these models share).

Field names are camelCase on the wire (`durationS`, `aspectRatio`); unknown fields are refused, so a
typo is a 400 naming it rather than a silently ignored option. `openapi.yaml` describes the same
shapes for callers.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from jobs.records import JobRequest
from providers import registry
from providers.urls import image_url_problem
from web.query import ID_PATTERN, reserved_id, unregistered

if TYPE_CHECKING:
    from tasks.batch import Selection

MAX_SCRIPT_CHARS = 20_000
MAX_BATCH_IDS = 1000
RESOLUTIONS = {"1280x720": ("720p", "16:9"), "720x1280": ("720p", "9:16")}
RESOLUTIONS |= {"1920x1080": ("1080p", "16:9"), "1080x1920": ("1080p", "9:16")}


def _not_reserved(value: str) -> str:
    if problem := reserved_id(value):
        raise ValueError(problem)
    return value


Identifier = Annotated[str, StringConstraints(pattern=ID_PATTERN), AfterValidator(_not_reserved)]


def _registered(name: str) -> str:
    if problem := unregistered(name):
        raise ValueError(problem)
    return name


class _RegisteredNames:
    """The JSON schema of a provider's name: the registered names, listed when a schema is made (the
    registry imports the provider packages at its first use, which a request that names no provider
    never pays for)."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        return {"type": "string", "enum": list(registry.names())}


# A registered provider's name (`providers/registry.py`).
ProviderName = Annotated[str, AfterValidator(_registered), _RegisteredNames()]


class Body(BaseModel):
    # each model's validator is built when first used: a function pays only for the ones it parses
    model_config = ConfigDict(
        defer_build=True,
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        str_strip_whitespace=True,
    )


class GenerateRequest(Body):
    """What the app sends to `generate_video`."""

    script: str = Field(min_length=1, max_length=MAX_SCRIPT_CHARS)
    style: Literal["professional", "friendly", "energetic"] = "professional"
    quality: Literal["standard", "premium"] = "standard"
    kind: Literal["avatar", "clip"] = "avatar"
    duration_s: int = Field(default=5, ge=4, le=10)
    aspect_ratio: Literal["16:9", "9:16"] = "16:9"
    resolution: Literal["720p", "1080p", "1280x720", "720x1280", "1920x1080", "1080x1920"] = "720p"
    format: Literal["mp4", "gif"] = "mp4"
    provider: ProviderName | None = None
    image_url: str | None = Field(default=None, max_length=2048)
    camera_motion: Literal["pan", "zoom", "tilt", "static"] | None = None
    camera_intensity: float = Field(default=0.5, ge=0, le=1)
    seed: int | None = Field(default=None, ge=0, le=4_294_967_295)
    title: str | None = Field(default=None, max_length=120)

    @field_validator("script")
    @classmethod
    def _has_words(cls, value: str) -> str:
        if not re.search(r"\w", value):
            raise ValueError("must contain words")
        return value

    @field_validator("image_url")
    @classmethod
    def _public_https_name(cls, value: str | None) -> str | None:
        """The one image URL check (`providers/urls.py`); IMAGE_URL_HOSTS is applied by the provider."""
        if value is not None and (problem := image_url_problem(value)):
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _resolution(self) -> GenerateRequest:
        if self.resolution in ("720p", "1080p"):
            return self
        if self.resolution not in RESOLUTIONS:
            raise ValueError("resolution must be 720p, 1080p, 1280x720, 720x1280, 1920x1080 or 1080x1920")
        size, ratio = RESOLUTIONS[self.resolution]
        if "aspect_ratio" in self.model_fields_set and ratio != self.aspect_ratio:
            raise ValueError(f"resolution {self.resolution} does not match aspectRatio {self.aspect_ratio}")
        object.__setattr__(self, "resolution", size)
        object.__setattr__(self, "aspect_ratio", ratio)
        return self

    def job_request(self) -> JobRequest:
        """The options kept on the job; the script is kept as the built prompt and a digest."""
        digest = hashlib.sha256(self.script.encode()).hexdigest()
        return JobRequest(**self.model_dump(exclude={"script"}), script_sha256=digest)


class CancelRequest(Body):
    job_id: Identifier


class PollPayload(Body):
    job_id: Identifier
    provider: ProviderName
    task_id: Identifier
    poll_number: int = Field(ge=1, le=10_000)


JobStatusName = Literal["queued", "processing", "completed", "failed", "cancelled", "timed_out"]
MAX_OLDER_THAN_S = 30 * 86400


class BatchStatusRequest(Body):
    """Either `jobIds` (at most MAX_BATCH_IDS) or a filter: `status`, `olderThanSeconds`, `limit`."""

    job_ids: list[Identifier] | None = Field(default=None, min_length=1, max_length=MAX_BATCH_IDS)
    status: list[JobStatusName] | None = Field(default=None, min_length=1, max_length=6)
    older_than_seconds: int | None = Field(default=None, ge=0, le=MAX_OLDER_THAN_S)
    limit: int | None = Field(default=None, ge=1, le=MAX_BATCH_IDS)

    @model_validator(mode="after")
    def _one_form(self) -> BatchStatusRequest:
        filtering = self.status is not None or self.older_than_seconds is not None or self.limit is not None
        if self.job_ids is not None and filtering:
            raise ValueError("give jobIds or a filter, not both")
        if self.job_ids is None and self.status is None:
            raise ValueError("give jobIds, or a filter: status (with optional olderThanSeconds, limit)")
        return self

    def selection(self) -> Selection:
        from tasks import batch

        limit = self.limit if self.limit is not None else batch.DEFAULT_LIMIT
        return batch.Selection(self.job_ids, self.status or (), self.older_than_seconds, limit)


class CleanupRequest(Body):
    dry_run: bool = False


class FinalizePayload(Body):
    job_id: Identifier
    attempt_id: Identifier


class HealthQuery(Body):
    window_hours: int = Field(default=24, ge=1, le=720)
