"""What a job looks like to its owner and to operators: two views, each described by a pydantic model
(`jobs/view_models.py`).

    user_view(job, links)   what the owner reads, and nothing else (`UserView`): the status answer
                            of `runwayml_status_check` and `cancel_video` for a user, and the
                            document `video_job_status/{jobId}` the app listens to (firestore.rules
                            let the owner read it; the store writes it in the same transaction as
                            every change of the job)
    ops_view(job, links)    the user view plus what only the backend and operators read (`OpsView`):
                            provider, task ids, attempts, selection, prompt score, costs, deadline,
                            the whole output record (the ops status check, the batch status check)

The user view holds ids, status, progress, the estimated finish time, the output links, a
`{code, message}` error, timestamps and the options the owner chose -- no selection scores,
provider task ids, costs, attempts, prompt or checksums. With `links` (storage configured) a stored
output carries time-limited download links; the stored document has the object paths only.
The views are plain dicts (built on every job write and status answer); `UserView` and `OpsView`
(`jobs/view_models.py`) describe their shape for `openapi.yaml` (`local/openapi.py`), and
`tests/test_views.py` holds the views to them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jobs.records import Job, JobRequest
from providers.base import is_terminal

Links = Callable[[str], Mapping[str, Any] | None]  # object path -> {"url", "expiresAt"} or None

_HIDDEN_OPTIONS = frozenset({"scriptSha256"})
_PROVIDER_OUTPUT = ("source", "videoUrls", "gifUrl", "thumbnailUrl", "expiresAt")
_STORED_OUTPUT = ("source", "bucket", "videoPath", "gifPath", "sizeBytes", "gifSizeBytes", "contentType")


def user_view(job: Job, links: Links | None = None) -> dict[str, Any]:
    """The owner's view of a job (see the module docstring); its shape is `UserView`."""
    return {
        "jobId": job.job_id,
        "ownerUid": job.owner_uid,
        "status": str(job.status),
        "progress": job.progress,
        "estimatedReadyAt": None if is_terminal(job.status) else job.estimated_ready_at,
        "output": _user_output(job, links),
        "error": _error(job.error),
        "request": _options(job.request),
        "createdAt": job.created_at,
        "updatedAt": job.updated_at,
        "endedAt": job.ended_at,
    }


def ops_view(job: Job, links: Links | None = None) -> dict[str, Any]:
    """The operators' view of a job: the user view and the internals; its shape is `OpsView`."""
    return {
        **user_view(job),  # no links here: the output is replaced below (a link may cost a signing call)
        "output": _with_links(job, dict(job.output), links) if job.output else None,
        "provider": job.provider,
        "providerTaskId": job.provider_task_id,
        "attempts": [
            {
                "number": a.number,
                "provider": a.provider,
                "status": str(a.status),
                "taskId": a.task_id,
                "error": _error(a.error),
            }
            for a in job.attempts
        ],
        "selection": dict(job.selection),
        "qualityScore": job.quality_score,
        "estimatedCostUsd": job.estimated_cost_usd,
        "actualCostUsd": job.actual_cost_usd,
        "deadlineAt": job.deadline_at,
    }


def _user_output(job: Job, links: Links | None) -> dict[str, Any] | None:
    if not job.output:
        return None
    shown = _STORED_OUTPUT if job.output_in_storage else _PROVIDER_OUTPUT
    return _with_links(job, {key: job.output[key] for key in shown if key in job.output}, links)


def _with_links(job: Job, output: dict[str, Any], links: Links | None) -> dict[str, Any]:
    if links is None or not job.output_in_storage:
        return output
    video, gif = job.stored_video_path, job.stored_gif_path
    return {**output, "download": links(video) if video else None, "gifDownload": links(gif) if gif else None}


def _options(request: JobRequest) -> dict[str, Any]:
    return {key: value for key, value in request.to_doc().items() if key not in _HIDDEN_OPTIONS}


def _error(error: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not error:
        return None
    return {"code": error.get("code"), "message": error.get("message")}
