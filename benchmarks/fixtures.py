"""Seeded data for the benchmarks: finished jobs made by the store's own code, then cloned in bulk.

One job goes through the real life cycle in the store (create, attempt, submission, a SUCCEEDED
snapshot), so its documents have exactly the production shape; `clone_finished` copies that pair of
documents under new ids with batched writes (hundreds a second instead of four transactions each).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from google.cloud import firestore

from config import Settings, load_settings
from jobs.records import JobRequest
from jobs.store import JobStore, NewJob
from providers.base import CreateResult, ProviderSnapshot, Status

WRITE_BATCH = 400
OWNER = "alice"


def store_for(project: str, **env: str) -> JobStore:
    settings = load_settings({"GOOGLE_CLOUD_PROJECT": project, **env})
    return JobStore(firestore.Client(project=project), settings)


def finished_job(
    store: JobStore,
    owner: str = OWNER,
    provider: str = "runwayml",
    *,
    output_url: str | None = None,
    video_format: str = "mp4",
) -> str:
    """A job whose provider task completed and its task record, written by the store's own
    transactions; its id. The job is completed, or finalizing when the store's settings name a bucket."""
    request = JobRequest(provider=provider, title=uuid.uuid4().hex, format=video_format)
    job, _ = store.create_job(NewJob(owner_uid=owner, request=request, candidates=(provider,)))
    attempt = store.begin_attempt(job.job_id, provider)
    assert attempt is not None
    task_id = str(uuid.uuid4())
    store.record_submission(job.job_id, attempt.attempt_id, CreateResult(task_id, "gen4.5", 60, 0.6))
    done = ProviderSnapshot(
        task_id=task_id,
        status=Status.COMPLETED,
        provider_status="SUCCEEDED",
        progress=100.0,
        output_urls=(output_url or f"https://dnznrvs05pmza.cloudfront.net/{task_id}.mp4",),
        cost_credits=60,
        cost_usd=0.6,
    )
    store.apply_snapshot(provider, task_id, done, 1)
    return job.job_id


def clone_finished(
    store: JobStore, template_id: str, count: int, *, ended_at: datetime | None = None
) -> list[str]:
    """`count` copies of a finished job (with its task record) under new ids; their job ids."""
    client, settings = store.client, store.settings
    job_doc = client.collection(settings.jobs_collection).document(template_id).get().to_dict()
    attempt = job_doc["attempts"][-1]
    provider, task_id = attempt["provider"], attempt["taskId"]
    task_doc = client.collection(store.task_collection(provider)).document(task_id).get().to_dict()
    ids, batch, pending = [], client.batch(), 0
    for _ in range(count):
        job_id, new_task = uuid.uuid4().hex, str(uuid.uuid4())
        job, task = _renamed(job_doc, task_doc, job_id, new_task, ended_at)
        batch.set(client.collection(settings.jobs_collection).document(job_id), job)
        batch.set(client.collection(store.task_collection(provider)).document(new_task), task)
        ids.append(job_id)
        pending += 2
        if pending >= WRITE_BATCH:
            batch.commit()
            batch, pending = client.batch(), 0
    if pending:
        batch.commit()
    return ids


def _renamed(
    job_doc: dict[str, Any], task_doc: dict[str, Any], job_id: str, task_id: str, ended_at: datetime | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    attempts = [dict(a) for a in job_doc["attempts"]]
    attempts[-1]["taskId"] = task_id
    job = {**job_doc, "jobId": job_id, "attempts": attempts, "providerTaskId": task_id}
    task = {**task_doc, "taskId": task_id, "jobId": job_id}
    if ended_at is not None:
        job.update(endedAt=ended_at, updatedAt=ended_at, expireAt=ended_at + timedelta(days=30))
        task.update(updatedAt=ended_at, expireAt=ended_at + timedelta(days=30))
    return job, task


def settings_for(project: str) -> Settings:
    return load_settings({"GOOGLE_CLOUD_PROJECT": project})
