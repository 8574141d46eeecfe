"""Reading jobs straight from Firestore (operators may), through the job store's own queries.

Local stack: the Firestore emulator named in the state file, as the admin ("Bearer owner": rules do
not apply to server tools). A project: Application Default Credentials (`gcloud auth
application-default login`) with read access to Firestore.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from ops.client import EXIT_UNREACHABLE, OpsError
from ops.target import Target

EMULATOR_ENV = "FIRESTORE_EMULATOR_HOST"


@contextlib.contextmanager
def _emulator_env(host: str | None) -> Iterator[None]:
    """The Firestore client reads the emulator host from the environment when it is built."""
    previous = os.environ.get(EMULATOR_ENV)
    if host is None:
        os.environ.pop(EMULATOR_ENV, None)
    else:
        os.environ[EMULATOR_ENV] = host
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(EMULATOR_ENV, None)
        else:
            os.environ[EMULATOR_ENV] = previous


def job_store(target: Target) -> Any:
    """A `JobStore` on the target's Firestore."""
    from google.auth import exceptions as auth_exc
    from google.cloud import firestore

    from config import load_settings
    from jobs.store import JobStore

    settings = load_settings({"GOOGLE_CLOUD_PROJECT": target.project})
    host = target.state.firestore_host if target.state is not None else None
    try:
        with _emulator_env(host):
            client = firestore.Client(project=target.project)
    except auth_exc.DefaultCredentialsError:
        raise OpsError(
            "no Google credentials for Firestore; run `gcloud auth application-default login`",
            EXIT_UNREACHABLE,
        ) from None
    return JobStore(client, settings)


@contextlib.contextmanager
def _reading(target: Target) -> Iterator[Any]:
    """A `JobStore` for a few reads: Firestore's errors become `OpsError`, the client is closed."""
    from google.api_core import exceptions as gexc

    store = job_store(target)
    try:
        yield store
    except gexc.GoogleAPICallError as exc:
        raise OpsError(f"Firestore refused the read: {exc.message}", EXIT_UNREACHABLE) from None
    except gexc.RetryError:
        raise OpsError("Firestore did not answer", EXIT_UNREACHABLE) from None
    finally:
        store.client.close()


def read_job(target: Target, job_id: str) -> Any:
    """One job record (`jobs.records.Job`) as stored, or None when there is no such job."""
    with _reading(target) as store:
        return store.get_job(job_id)


def list_jobs(target: Target, *, owner: str | None, status: str | None, limit: int) -> list[Any]:
    """Jobs of one owner (newest first), or of some statuses (least recently updated first)."""
    from providers.base import Status

    wanted = Status(status) if status else None
    with _reading(target) as store:
        if owner is not None:
            return store.jobs_for_owner(owner, status=wanted, limit=limit)
        return store.jobs_by_status([wanted] if wanted else list(Status), limit=limit)


def provider_checks(target: Target, attempts: list[dict[str, Any]]) -> tuple[int, int]:
    """(provider status reads applied, of which Cloud Tasks polls) over a job view's attempts.

    Reads come from polls, status checks and webhooks alike; the task record counts them all
    (`pollCount`) and numbers the scheduled polls (`lastPollNumber`).
    """
    reads = polls = 0
    with _reading(target) as store:
        for attempt in attempts:
            if attempt.get("taskId"):
                task = store.get_task(attempt["provider"], attempt["taskId"])
                if task is not None:
                    reads, polls = reads + task.poll_count, polls + task.last_poll_number
    return reads, polls
