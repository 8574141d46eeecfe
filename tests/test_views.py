"""The owner's view of a job and the operators' view: what each holds, where the owner's is stored,
and which one each caller of the HTTP functions gets."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobs.records import Attempt, AttemptStatus, Job, JobRequest
from jobs.store import JobStore
from jobs.view_models import USER_VIEW_KEYS, OpsView, UserView
from jobs.views import ops_view, user_view
from providers.base import Status
from tests.stack import OPS_SA
from tests.test_job_store import Clock, new_job, snap, submitted_job

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TASK_ID = "task-7f3c9d"
REASON = "free tier avoids the most expensive option (-10)"
# Fields of the job document that only the backend and operators read.
INTERNAL_KEYS = {
    "providerTaskId",
    "taskId",
    "attempts",
    "attemptCount",
    "selection",
    "candidates",
    "prompt",
    "qualityScore",
    "estimatedCostUsd",
    "actualCostUsd",
    "estimatedCredits",
    "actualCredits",
    "costUsd",
    "idempotencyKey",
    "requestFingerprint",
    "scriptSha256",
    "lastError",
    "providerOutput",
    "providerStatus",
    "finalize",
    "finalizing",
    "deadlineAt",
    "md5",
    "crc32c",
    "generation",
}


def full_job(**changes: Any) -> Job:
    """A job with every internal field filled in."""
    attempts = (
        Attempt("j1-a1", 1, "heygen", AttemptStatus.FAILED, "video-1", {"code": "x", "message": "y"}, 0.31),
        Attempt("j1-a2", 2, "runwayml", AttemptStatus.SUCCEEDED, TASK_ID, None, 0.77, T0),
    )
    job = Job(
        job_id="j1",
        owner_uid="alice",
        status=Status.COMPLETED,
        progress=100.0,
        candidates=("heygen", "runwayml"),
        attempts=attempts,
        request=JobRequest(style="friendly", format="gif", title="My CV", script_sha256="ab" * 32),
        prompt={"runwayPrompt": "a person talks", "qualityScore": 87},
        selection={"reasons": {"runwayml": [REASON]}, "scores": {"runwayml": 41.5}},
        idempotency_key="key-1",
        request_fingerprint="f" * 64,
        estimated_cost_usd=0.913,
        actual_cost_usd=1.081,
        provider_task_id=TASK_ID,
        provider_status="SUCCEEDED",
        last_error={"code": "render_failed", "message": "internal 5521"},
        output={
            "source": "storage",
            "bucket": "b",
            "videoPath": "jobs/j1/video.mp4",
            "gifPath": "jobs/j1/video.gif",
            "sizeBytes": 1234,
            "md5": "bWQ1",
            "crc32c": "Y3Jj",
            "generation": 99,
            "contentType": "video/mp4",
        },
        provider_output={"videoUrls": ["https://runway.example/out.mp4"], "source": "provider"},
        created_at=T0,
        deadline_at=T0 + timedelta(minutes=30),
        ended_at=T0 + timedelta(minutes=2),
        estimated_ready_at=T0 + timedelta(minutes=3),
    )
    return dataclasses.replace(job, **changes)


def keys_in(value: Any) -> set[str]:
    """Every mapping key at any depth."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_in(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_in(v)}
    return set()


def link(path: str) -> dict[str, Any]:
    return {"url": f"https://signed.example/{path}", "expiresAt": T0 + timedelta(hours=1)}


# -- the views (pure) -------------------------------------------------------------------------------


def test_the_user_view_holds_exactly_what_the_app_needs():
    view = user_view(full_job())

    assert (
        set(view)
        == USER_VIEW_KEYS
        == {
            "jobId",
            "ownerUid",
            "status",
            "progress",
            "estimatedReadyAt",
            "output",
            "error",
            "request",
            "createdAt",
            "updatedAt",
            "endedAt",
        }
    )


@pytest.mark.parametrize(
    "job",
    [
        full_job(),
        full_job(status=Status.PROCESSING, progress=40.0, output=None, ended_at=None),
        full_job(output={"source": "provider", "videoUrls": ["https://x/v.mp4"], "expiresAt": T0}),
    ],
    ids=["stored-output", "live", "provider-output"],
)
def test_both_views_have_the_shape_openapi_describes(job):
    UserView.model_validate(user_view(job, link))
    UserView.model_validate(user_view(job))
    OpsView.model_validate(ops_view(job, link))


def test_the_user_view_carries_no_internal_field_at_any_depth():
    view = user_view(full_job(), link)
    text = json.dumps(view, default=str)

    assert keys_in(view) & INTERNAL_KEYS == set()
    assert "provider" not in view  # which provider made it (a preferred one asked for is an option)
    for secret in (
        "runwayml",
        "heygen",
        TASK_ID,
        "video-1",
        REASON,
        "0.913",
        "1.081",
        "a person talks",
        "internal 5521",
        "bWQ1",
    ):
        assert secret not in text


def test_the_user_view_keeps_the_options_the_owner_chose():
    options = user_view(full_job())["request"]

    assert (options["style"], options["format"], options["title"]) == ("friendly", "gif", "My CV")
    assert "scriptSha256" not in options


def test_a_stored_output_shows_download_links_to_the_owner():
    output = user_view(full_job(), link)["output"]

    assert output["download"] == link("jobs/j1/video.mp4")
    assert output["gifDownload"] == link("jobs/j1/video.gif")
    assert (output["videoPath"], output["sizeBytes"]) == ("jobs/j1/video.mp4", 1234)


def test_a_provider_output_shows_its_links_and_when_they_expire():
    expires = T0 + timedelta(days=1)
    output = {"source": "provider", "videoUrls": ["https://x/v.mp4"], "gifUrl": None, "expiresAt": expires}

    shown = user_view(full_job(output=output))["output"]

    assert shown == output


def test_the_error_is_a_code_and_a_message_only():
    job = full_job(
        status=Status.FAILED, error={"code": "provider_timeout", "message": "too slow", "cause": "x"}
    )

    assert user_view(job)["error"] == {"code": "provider_timeout", "message": "too slow"}


def test_a_live_job_shows_its_estimated_finish_and_an_ended_one_does_not():
    live = full_job(status=Status.PROCESSING, progress=40.0, output=None, ended_at=None)

    assert user_view(live)["estimatedReadyAt"] == T0 + timedelta(minutes=3)
    assert user_view(full_job())["estimatedReadyAt"] is None


def test_the_ops_view_adds_the_internals():
    view = ops_view(full_job(), link)

    assert set(view) > USER_VIEW_KEYS
    assert (view["provider"], view["providerTaskId"], view["actualCostUsd"]) == ("runwayml", TASK_ID, 1.081)
    assert [a["taskId"] for a in view["attempts"]] == ["video-1", TASK_ID]
    assert view["selection"]["reasons"]["runwayml"] == [REASON]
    assert view["output"]["md5"] == "bWQ1"
    assert view["output"]["download"] == link("jobs/j1/video.mp4")


def test_the_ops_view_signs_each_link_once():
    signed = []

    def counting(path):
        signed.append(path)
        return link(path)

    ops_view(full_job(), counting)

    assert sorted(signed) == ["jobs/j1/video.gif", "jobs/j1/video.mp4"]


# -- the stored user view ---------------------------------------------------------------------------


@pytest.fixture
def store(firestore_client, settings) -> JobStore:
    return JobStore(firestore_client, settings, Clock(T0))


def stored_view(store: JobStore, job_id: str) -> dict[str, Any]:
    snap_ = store.user_view_ref(job_id).get()
    assert snap_.exists
    return snap_.to_dict()


def same_as_job(store: JobStore, job_id: str) -> None:
    """The stored user view is the user view of the stored job, stamped like it."""
    job_doc = store.job_ref(job_id).get().to_dict()
    view = stored_view(store, job_id)
    expected = user_view(store.get_job(job_id))
    assert {k: v for k, v in view.items() if k not in ("updatedAt", "expireAt")} == {
        k: v for k, v in expected.items() if k != "updatedAt"
    }
    assert (view["updatedAt"], view["expireAt"]) == (job_doc["updatedAt"], job_doc["expireAt"])
    assert set(view) == USER_VIEW_KEYS | {"expireAt"}


def test_the_user_view_is_stored_with_the_new_job(store):
    job, _ = store.create_job(new_job())

    same_as_job(store, job.job_id)
    assert stored_view(store, job.job_id)["estimatedReadyAt"] is not None


def test_every_change_of_the_job_rewrites_its_user_view(store):
    job_id, _ = submitted_job(store)
    same_as_job(store, job_id)

    store.apply_snapshot("runwayml", "task-1", snap(Status.PROCESSING, 40), 1)
    same_as_job(store, job_id)
    assert (stored_view(store, job_id)["status"], stored_view(store, job_id)["progress"]) == (
        "processing",
        40,
    )

    store.finish_job(job_id, Status.CANCELLED, {"code": "cancelled", "message": "cancelled"})
    same_as_job(store, job_id)
    assert stored_view(store, job_id)["error"] == {"code": "cancelled", "message": "cancelled"}


def test_the_retention_purge_removes_the_user_view_with_its_job(store):
    job_id, _ = submitted_job(store)
    store.apply_snapshot("runwayml", "task-1", snap(Status.COMPLETED), 1)

    assert store.purge_jobs(T0 + timedelta(days=1)) == (1, 1)

    assert not store.job_ref(job_id).get().exists
    assert not store.user_view_ref(job_id).get().exists


# -- which caller gets which view -------------------------------------------------------------------


def status(stack, headers, job_id):
    return stack.client("runwayml_status_check").get("/", query_string={"jobId": job_id}, headers=headers)


def submit(stack, **body) -> str:
    answer = stack.generate(**body)
    assert answer.status_code == 202, answer.get_json()
    return answer.get_json()["jobId"]


def test_the_owner_gets_the_user_view_from_the_status_check(stack):
    job_id = submit(stack, provider="runwayml")

    job = status(stack, stack.user("alice"), job_id).get_json()["job"]

    assert set(job) == USER_VIEW_KEYS
    UserView.model_validate(job)  # what openapi.yaml promises
    assert job["estimatedReadyAt"] is not None


def test_an_operator_gets_the_ops_view_from_the_status_check(stack):
    job_id = submit(stack, provider="runwayml")
    task_id = stack.deps.store.get_job(job_id).current_attempt.task_id

    job = status(stack, stack.service(OPS_SA, "runwayml_status_check"), job_id).get_json()["job"]

    OpsView.model_validate(job)
    assert (job["providerTaskId"], job["attempts"][0]["taskId"]) == (task_id, task_id)


def test_the_owner_gets_the_user_view_when_cancelling(stack):
    job_id = submit(stack, provider="runwayml")

    answer = stack.client("cancel_video").post("/", json={"jobId": job_id}, headers=stack.user("alice"))

    job = answer.get_json()["job"]
    assert (set(job), job["status"]) == (USER_VIEW_KEYS, "cancelled")
    UserView.model_validate(job)
