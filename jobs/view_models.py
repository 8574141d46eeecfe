"""The shapes of the two job views (`jobs/views.py`), as pydantic models: `UserView` and `OpsView`.

The views themselves are plain dicts, built without pydantic (a status check loads none: `config.py`
says why). These models describe them for `openapi.yaml` (`local/openapi.py`), and
`tests/test_views.py` holds the views to them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

from providers.base import Status

StatusName = Annotated[str, WithJsonSchema({"type": "string", "enum": [str(s) for s in Status]})]


class _View(BaseModel):
    # built when first used (the tests, openapi.yaml)
    model_config = ConfigDict(
        defer_build=True, alias_generator=to_camel, populate_by_name=True, extra="forbid"
    )


class Link(_View):
    url: str
    expires_at: datetime | None = None


class Output(_View):
    """The result: the provider's own links (`source: provider`, until `expiresAt`), or the copy in
    the project's bucket (`source: storage`, with download links in the status answer)."""

    source: str | None = None
    video_urls: list[str] | None = None
    gif_url: str | None = None
    thumbnail_url: str | None = None
    expires_at: datetime | None = None
    bucket: str | None = None
    video_path: str | None = None
    gif_path: str | None = None
    size_bytes: int | None = None
    gif_size_bytes: int | None = None
    content_type: str | None = None
    download: Link | None = None
    gif_download: Link | None = None


class ErrorBody(_View):
    code: str | None = None
    message: str | None = None


class UserView(_View):
    """What the owner reads of a job."""

    job_id: str
    owner_uid: str
    status: StatusName
    progress: float = Field(ge=0, le=100)
    estimated_ready_at: datetime | None = Field(description="live jobs only: when it should be ready")
    output: Output | None
    error: ErrorBody | None
    request: dict[str, Any] = Field(description="the options asked for (style, format, ...)")
    created_at: datetime | None
    updated_at: datetime | None
    ended_at: datetime | None


class AttemptView(_View):
    number: int
    provider: str
    status: str
    task_id: str | None
    error: ErrorBody | None


class OpsView(UserView):
    """What operators read of a job: the user view and the internals."""

    output: dict[str, Any] | None  # type: ignore[assignment]  # the whole record, checksums included
    provider: str | None
    provider_task_id: str | None
    attempts: list[AttemptView]
    selection: dict[str, Any]
    quality_score: float | None
    estimated_cost_usd: float | None
    actual_cost_usd: float | None
    deadline_at: datetime | None


USER_VIEW_KEYS = frozenset(field.alias or name for name, field in UserView.model_fields.items())
