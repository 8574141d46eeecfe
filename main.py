"""Cloud Functions entry points: parse -> authorize -> call one service function -> respond.

Each function is deployed under its own name (see deploy.sh); all share the lazily built `deps.get()`.
The error shape and status codes are those of `web/http.py`; what each function needs from its
configuration is checked before it runs (`web/check.py`: 503 `misconfigured`, naming every variable).
"""

from __future__ import annotations

import gc

gc.disable()  # no cyclic collection while a cold instance loads its modules (web/http.py `_started`)

from typing import TYPE_CHECKING  # noqa: E402 - after the line above, as are the imports below

import functions_framework  # noqa: E402

import logs  # noqa: E402
from web.cors import Cors  # noqa: E402
from web.http import ApiError, endpoint, json_object, parse, raw_body, require_method, respond  # noqa: E402

if TYPE_CHECKING:
    import flask

    from web.auth import Caller

# Each function imports what it uses when it first runs (functions-framework loads this module for
# every deployed function, so a module-level import would be paid by all of them at cold start).

logs.configure()  # the entry module: once per process, before the first request


def _project() -> str | None:
    from web import deps

    return deps.get().settings.project_id


def _check(function: str) -> None:
    from web import check, deps

    check.require(function, deps.get().settings)


def _origins() -> tuple[str, ...]:
    from web import deps

    return deps.get().settings.cors_origins


def _user(request: flask.Request) -> Caller:
    from web import appcheck, deps
    from web.auth import bearer_token

    caller = deps.get().verifier.user(bearer_token(request.headers))
    return appcheck.require(deps.get().settings, request.headers, caller)


def _service(request: flask.Request, function: str, allowed: tuple[str, ...]) -> Caller:
    """A service account among `allowed`, with a token minted for this function's URL."""
    from web import deps
    from web.auth import bearer_token

    d = deps.get()
    caller = d.verifier.service_account(bearer_token(request.headers), d.settings.function_url(function))
    if not caller.is_service_account(allowed):
        raise ApiError(403, "forbidden", "this service account may not call this function")
    return caller


@functions_framework.http
@endpoint(_project, _check, Cors("POST", _origins))
def generate_video(request: flask.Request) -> flask.Response:
    from web import deps
    from web.schemas import GenerateRequest

    require_method(request, "POST")
    caller = _user(request)
    body = parse(GenerateRequest, json_object(request))
    from jobs.generate import generate  # the job machinery loads for a request that passed the edge

    key = request.headers.get("Idempotency-Key")
    result = generate(deps.get().intake, caller.uid, body.script, body.job_request(), key, caller.tier)
    return respond(result.body, result.status, result.headers)


@functions_framework.http
@endpoint(_project, _check, Cors("POST", _origins))
def cancel_video(request: flask.Request) -> flask.Response:
    from web import deps
    from web.schemas import CancelRequest

    require_method(request, "POST")
    caller = _user(request)
    from jobs import access as views  # the job machinery loads for a request that passed the edge
    from jobs import plans
    from jobs.views import user_view

    d = deps.get()
    plans.throttle(d.calls, d.settings, caller.uid, caller.tier)
    body = parse(CancelRequest, json_object(request))
    job = views.cancel(d.store, d.providers, caller.uid, body.job_id)
    return respond({"job": user_view(job)})


@functions_framework.http
@endpoint(_project, _check, Cors("GET", _origins))
def runwayml_status_check(request: flask.Request) -> flask.Response:
    from web import appcheck, deps
    from web.auth import bearer_token
    from web.query import StatusQuery

    require_method(request, "GET")
    d = deps.get()
    caller = d.verifier.any_caller(
        bearer_token(request.headers), d.settings.function_url("runwayml_status_check")
    )
    appcheck.require(d.settings, request.headers, caller)
    from jobs import access, plans  # the job machinery loads for a request that passed the edge
    from jobs.views import ops_view, user_view

    query = parse(StatusQuery, dict(request.args), "query")
    viewer = caller.viewer(d.settings.ops_service_accounts)
    plans.throttle(d.calls, d.settings, viewer.uid, caller.tier)
    job = access.status(  # the poller and the gate are built only for a job that needs a refresh
        d.store,
        viewer,
        query.job_id,
        query.task(),
        refresh=lambda provider, task_id: d.poller.refresh(provider, task_id),
        now=d.store.clock(),
        gate=lambda job_id: d.refresh_gate.take(job_id),
    )
    view = ops_view if viewer.operator else user_view
    return respond({"job": view(job, d.links(d.store.clock()))})


@functions_framework.http
@endpoint(_project, _check)
def runwayml_polling_task(request: flask.Request) -> flask.Response:
    from web import deps
    from web.schemas import PollPayload

    require_method(request, "POST")
    d = deps.get()
    _service(request, "runwayml_polling_task", (d.settings.require("tasks_service_account"),))
    payload = parse(PollPayload, json_object(request))
    result = d.poller.poll(
        provider=payload.provider, task_id=payload.task_id, poll_number=payload.poll_number
    )
    return respond({"outcome": result.outcome, "jobId": result.job_id, "status": result.status})


def _webhook_body(request: flask.Request) -> bytes:
    """The raw bytes a signature covers: JSON only, size-limited, read before any parsing."""
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    return raw_body(request)


def _webhook(request: flask.Request, provider: str) -> flask.Response:
    """A webhook: registration pings answered at once; POSTs verified, then confirmed at the provider."""
    from web import deps, webhooks

    if request.method in ("GET", "OPTIONS"):  # providers ping the URL when it is registered
        return respond({"ok": True})
    require_method(request, "POST", "GET", "OPTIONS")
    d = deps.get()
    webhooks.require_secrets(d, provider)
    return respond(webhooks.receive(d, provider, _webhook_body(request), dict(request.headers)))


@functions_framework.http
@endpoint(_project, _check)
def heygen_webhook(request: flask.Request) -> flask.Response:
    return _webhook(request, "heygen")


@functions_framework.http
@endpoint(_project, _check)
def runwayml_webhook(request: flask.Request) -> flask.Response:
    return _webhook(request, "runwayml")


@functions_framework.http
@endpoint(_project, _check)
def runwayml_batch_status_check(request: flask.Request) -> flask.Response:
    from tasks import batch
    from web import deps
    from web.schemas import BatchStatusRequest

    require_method(request, "POST")
    d = deps.get()
    _service(request, "runwayml_batch_status_check", d.settings.ops_service_accounts)
    body = parse(BatchStatusRequest, json_object(request))
    return respond(batch.check_jobs(d.poller, body.selection()))


@functions_framework.http
@endpoint(_project, _check)
def provider_health(request: flask.Request) -> flask.Response:
    from tasks import monitoring
    from web import deps
    from web.schemas import HealthQuery

    require_method(request, "GET")
    d = deps.get()
    _service(request, "provider_health", d.settings.ops_service_accounts)
    query = parse(HealthQuery, dict(request.args), "query")
    return respond(monitoring.provider_health(d.store, d.providers, d.health, d.quota, query.window_hours))


@functions_framework.http
@endpoint(_project, _check)
def finalize_video_task(request: flask.Request) -> flask.Response:
    from tasks.finalize import Finalizer
    from tasks.storage import storage_for
    from web import deps
    from web.schemas import FinalizePayload

    require_method(request, "POST")
    d = deps.get()
    _service(request, "finalize_video_task", (d.settings.require("tasks_service_account"),))
    payload = parse(FinalizePayload, json_object(request))
    storage = storage_for(d.settings)
    if storage is None:
        raise ApiError(503, "storage_not_configured", "STORAGE_BUCKET is not set; nothing can be stored")
    result = Finalizer(d.store, storage, d.settings, d.queue).finalize(payload.job_id, payload.attempt_id)
    if result.retry:  # 5xx: Cloud Tasks delivers again after its backoff
        error = result.error or {"code": "finalize_failed", "message": "the try failed"}
        raise ApiError(503, error["code"], error["message"], headers={"Retry-After": "30"})
    return respond({"outcome": result.outcome, "jobId": result.job_id, "error": result.error})


@functions_framework.http
@endpoint(_project, _check)
def runwayml_cleanup_task(request: flask.Request) -> flask.Response:
    from web import deps
    from web.schemas import CleanupRequest

    require_method(request, "POST")
    d = deps.get()
    _service(request, "runwayml_cleanup_task", (d.settings.require("scheduler_service_account"),))
    body = parse(CleanupRequest, json_object(request))
    report = deps.cleanup_for(d).run(dry_run=body.dry_run)
    if report["errors"]:  # 5xx so the Scheduler job shows the failure; the counts go along
        failed = ", ".join(e["step"] for e in report["errors"])
        raise ApiError(503, "cleanup_incomplete", f"cleanup steps failed: {failed}", report=report)
    return respond(report)
