"""The webhook functions end to end: signed deliveries are hints, the provider's answer is the truth.

Jobs are made through `generate_video` against the simulators; deliveries are signed with the same
helpers the senders use. "Nothing written" means: the job document is unchanged, no event record
exists and the provider was not asked.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import time
from datetime import timedelta

import functions_framework
import pytest
import werkzeug.serving

from jobs.records import job_to_doc
from jobs.store import JobStore
from jobs.txn import utcnow
from providers.signatures import sign_heygen, sign_standard
from tests.conftest import ROOT
from web import deps

HEYGEN_SECRET = "whsec_heygen-test-secret"
RUNWAY_SECRET = "whsec_" + base64.b64encode(b"runwayml-test-signing-key-32byte").decode()
VIDEO_GETS = ("GET", "/v3/videos/")
TASK_GETS = ("GET", "/v1/tasks/")


@pytest.fixture
def hooked(stack_factory):
    return stack_factory(HEYGEN_WEBHOOK_SECRET=HEYGEN_SECRET, RUNWAYML_WEBHOOK_SECRET=RUNWAY_SECRET)


# -- helpers ----------------------------------------------------------------------------------------


def made_job(stack, **body):
    answer = stack.generate(**body)
    assert answer.status_code == 202, answer.get_json()
    job = stack.deps.store.get_job(answer.get_json()["jobId"])
    return job.job_id, job.current_attempt.task_id


def render_done(stack, video_id):
    video = stack.heygen.videos[video_id]
    stack.clock.t = video.created_at + video.queue_s + video.render_s + 1


def render_started(stack, video_id):
    video = stack.heygen.videos[video_id]
    stack.clock.t = video.created_at + video.queue_s + 1


def heygen_body(video_id, event_type="avatar_video.success", **data):
    return json.dumps({"event_type": event_type, "event_data": {"video_id": video_id, **data}}).encode()


def post_heygen(stack, body, *, event_id="evt-1", secret=HEYGEN_SECRET, timestamp=None, headers=None, **kw):
    if headers is None:
        stamp = int(time.time()) if timestamp is None else timestamp
        headers = sign_heygen(body, secret, timestamp=stamp, event_id=event_id)
    kw.setdefault("content_type", "application/json")
    return stack.client("heygen_webhook").post("/", data=body, headers=headers, **kw)


def runway_body(task_id, event_type="task.updated"):
    return json.dumps({"type": event_type, "data": {"id": task_id, "status": "SUCCEEDED"}}).encode()


def post_runway(stack, body, *, msg_id="msg-1", secret=RUNWAY_SECRET, timestamp=None, headers=None):
    if headers is None:
        stamp = int(time.time()) if timestamp is None else timestamp
        headers = sign_standard(body, secret, msg_id=msg_id, timestamp=stamp)
    client = stack.client("runwayml_webhook")
    return client.post("/", data=body, headers=headers, content_type="application/json")


def event_records(stack):
    collection = stack.settings.collection("webhook_events")
    return list(stack.deps.store.client.collection(collection).stream())


def job_doc(stack, job_id):
    return job_to_doc(stack.deps.store.get_job(job_id))


def run_together(*calls):
    """Start every call at once in its own thread; return their results in order."""
    results, barrier = [None] * len(calls), threading.Barrier(len(calls))

    def worker(i):
        barrier.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


# -- HeyGen: the hint is confirmed at HeyGen --------------------------------------------------------


def test_a_signed_success_completes_the_job_with_what_heygen_reports(hooked):
    job_id, video_id = made_job(hooked)
    render_done(hooked, video_id)
    answer = post_heygen(hooked, heygen_body(video_id, url="https://elsewhere.example/fake.mp4"))
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == {"jobId": job_id, "status": "completed", "outcome": "apply"}
    job = job_doc(hooked, job_id)
    assert job["status"] == "completed"
    assert job["output"]["videoUrls"] == [f"{hooked.heygen.base_url}/media/{video_id}.mp4"]
    assert hooked.heygen.count(*VIDEO_GETS) == 1


def test_a_payload_that_lies_does_not_complete_a_render_heygen_still_has_running(hooked):
    job_id, video_id = made_job(hooked)
    render_started(hooked, video_id)
    answer = post_heygen(hooked, heygen_body(video_id))
    assert answer.status_code == 200
    job = job_doc(hooked, job_id)
    assert (job["status"], job.get("output")) == ("processing", None)


def test_a_fail_event_for_a_render_that_succeeded_completes_the_job(hooked):
    job_id, video_id = made_job(hooked)
    render_done(hooked, video_id)
    post_heygen(hooked, heygen_body(video_id, "avatar_video.fail", msg="made up"))
    assert job_doc(hooked, job_id)["status"] == "completed"


def test_a_replayed_event_is_applied_once(hooked):
    _, video_id = made_job(hooked)
    render_done(hooked, video_id)
    body = heygen_body(video_id)
    first = post_heygen(hooked, body, event_id="evt-42")
    again = post_heygen(hooked, body, event_id="evt-42")
    resigned = post_heygen(hooked, body, event_id="evt-42", timestamp=int(time.time()) - 60)
    assert first.get_json()["status"] == "completed"
    assert again.get_json() == resigned.get_json() == {"duplicate": True}
    assert hooked.heygen.count(*VIDEO_GETS) == 1
    assert len(event_records(hooked)) == 1


def test_a_replay_of_the_same_signed_body_is_a_duplicate_whatever_its_headers(hooked):
    _, video_id = made_job(hooked)
    render_done(hooked, video_id)
    body = heygen_body(video_id)
    first = post_heygen(hooked, body, event_id="evt-1")
    new_id = post_heygen(hooked, body, event_id="evt-made-up")  # the unsigned headers are the replayer's
    bare = post_heygen(hooked, body, headers=sign_heygen(body, HEYGEN_SECRET))  # no timestamp, no id
    assert first.get_json()["status"] == "completed"
    assert new_id.get_json() == bare.get_json() == {"duplicate": True}
    assert hooked.heygen.count(*VIDEO_GETS) == 1
    assert len(event_records(hooked)) == 1


def test_concurrent_copies_of_one_event_ask_heygen_once(hooked):
    job_id, video_id = made_job(hooked)
    render_done(hooked, video_id)
    body = heygen_body(video_id)
    answers = run_together(*[lambda: post_heygen(hooked, body, event_id="evt-7")] * 4)
    bodies = [a.get_json() for a in answers]
    assert all(a.status_code == 200 for a in answers)
    assert bodies.count({"duplicate": True}) == 3
    assert hooked.heygen.count(*VIDEO_GETS) == 1
    assert job_doc(hooked, job_id)["status"] == "completed"


def test_a_failed_confirmation_forgets_the_event_so_the_senders_retry_is_processed(hooked):
    job_id, video_id = made_job(hooked)
    render_done(hooked, video_id)
    before = job_doc(hooked, job_id)
    body = heygen_body(video_id)
    hooked.heygen.faults.rates["http_5xx"] = 1.0
    refused = post_heygen(hooked, body, event_id="evt-9")
    assert (refused.status_code, refused.get_json()["error"]["code"]) == (503, "provider_unavailable")
    assert event_records(hooked) == []
    assert job_doc(hooked, job_id) == before
    hooked.heygen.faults.rates.clear()
    retried = post_heygen(hooked, body, event_id="evt-9")
    assert retried.get_json()["status"] == "completed"
    assert len(event_records(hooked)) == 1


def minutes_later(stack, minutes: float) -> None:
    """Serve the next requests with the store's clock `minutes` ahead (the sender's later retry)."""
    store = JobStore(
        stack.deps.store.client, stack.settings, clock=lambda: utcnow() + timedelta(minutes=minutes)
    )
    deps.use(dataclasses.replace(stack.deps, store=store))


def test_an_event_for_a_task_not_recorded_yet_is_retried_by_the_sender(hooked):
    body = heygen_body("not-yet")
    first = post_heygen(hooked, body, event_id="evt-early")
    assert (first.status_code, first.get_json()["error"]["code"]) == (503, "task_not_recorded_yet")
    assert first.headers["Retry-After"] == "5"
    again = post_heygen(hooked, body, event_id="evt-early")  # the sender's retry seconds later
    assert again.status_code == 503
    assert hooked.heygen.count(*VIDEO_GETS) == 0


def test_a_webhook_arriving_before_the_task_record_completes_the_job_on_the_retry(hooked):
    job_id, video_id = made_job(hooked)
    render_done(hooked, video_id)
    task = hooked.deps.store.task_ref("heygen", video_id)
    saved = task.get().to_dict()
    task.delete()  # as if the create had answered but its record were not written yet
    early = post_heygen(hooked, heygen_body(video_id), event_id="evt-race")
    assert early.status_code == 503
    task.set(saved)
    retried = post_heygen(hooked, heygen_body(video_id), event_id="evt-race")
    assert retried.get_json()["status"] == "completed"
    assert job_doc(hooked, job_id)["status"] == "completed"


def test_an_event_for_an_unknown_video_is_acknowledged_and_ignored_after_the_early_window(hooked):
    assert post_heygen(hooked, heygen_body("nosuchvideo"), event_id="evt-old").status_code == 503
    minutes_later(hooked, 2)
    answer = post_heygen(hooked, heygen_body("nosuchvideo"), event_id="evt-old")
    assert (answer.status_code, answer.get_json()) == (200, {"ignored": "unknown task"})
    assert hooked.heygen.count(*VIDEO_GETS) == 0


def test_an_event_type_we_do_not_use_is_acknowledged_and_ignored(hooked):
    job_id, video_id = made_job(hooked)
    before = job_doc(hooked, job_id)
    answer = post_heygen(hooked, heygen_body(video_id, "avatar_video_gif.success"))
    assert answer.get_json() == {"ignored": "event type"}
    assert (job_doc(hooked, job_id), event_records(hooked)) == (before, [])


def test_either_of_two_configured_secrets_is_accepted(stack_factory):
    stack = stack_factory(HEYGEN_WEBHOOK_SECRET=f"whsec_old, {HEYGEN_SECRET}")
    job_id, video_id = made_job(stack)
    render_done(stack, video_id)
    assert post_heygen(stack, heygen_body(video_id), secret="whsec_old").status_code == 200
    assert job_doc(stack, job_id)["status"] == "completed"


def _heygen_refusals():
    big = heygen_body("VIDEO", padding="x" * 70_000)
    return {
        "forged signature": (lambda v: {"secret": "whsec_someone-else"}, 401, "bad_signature"),
        "tampered body": (
            lambda v: {"headers": sign_heygen(heygen_body("other"), HEYGEN_SECRET, event_id="e")},
            401,
            "bad_signature",
        ),
        "stale timestamp": (lambda v: {"timestamp": int(time.time()) - 3600}, 401, "stale_timestamp"),
        "missing headers": (lambda v: {"headers": {}}, 401, "missing_signature"),
        "wrong content type": (lambda v: {"content_type": "text/plain"}, 415, "unsupported_media_type"),
        "oversized body": (lambda v: {"body": big.replace(b"VIDEO", v.encode())}, 413, "body_too_large"),
        "not json": (lambda v: {"body": b"not json"}, 400, "malformed_payload"),
        "no video id": (lambda v: {"body": heygen_body("")}, 400, "malformed_payload"),
        "not an id": (lambda v: {"body": heygen_body("a/b")}, 400, "malformed_payload"),
    }


@pytest.mark.parametrize("case", list(_heygen_refusals()))
def test_a_bad_delivery_is_refused_and_writes_nothing(hooked, case):
    options, status, code = _heygen_refusals()[case]
    job_id, video_id = made_job(hooked)
    render_done(hooked, video_id)
    before = job_doc(hooked, job_id)
    extra = options(video_id)
    body = extra.pop("body", heygen_body(video_id))
    answer = post_heygen(hooked, body, **extra)
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (status, code)
    assert job_doc(hooked, job_id) == before
    assert event_records(hooked) == []
    assert hooked.heygen.count(*VIDEO_GETS) == 0


@pytest.mark.parametrize("function", ["heygen_webhook", "runwayml_webhook"])
@pytest.mark.parametrize("method", ["GET", "OPTIONS"])
def test_registration_pings_are_answered_at_once_even_before_a_secret_is_set(stack, function, method):
    answer = stack.client(function).open("/", method=method)
    assert (answer.status_code, answer.get_json()) == (200, {"ok": True})


def test_without_a_secret_every_delivery_is_refused_with_503(stack):
    heygen = post_heygen(stack, heygen_body("v1"))
    runway = post_runway(stack, runway_body("t1"))
    for answer in (heygen, runway):
        assert (answer.status_code, answer.get_json()["error"]["code"]) == (503, "webhook_not_configured")
        assert "_WEBHOOK_SECRET" in answer.get_json()["error"]["message"]
    assert event_records(stack) == []


def test_other_methods_are_405(hooked):
    assert hooked.client("heygen_webhook").put("/").status_code == 405


# -- HeyGen: the simulator's own delivery, over real HTTP ---------------------------------------------


@pytest.fixture
def served_webhook():
    """`heygen_webhook` on a real loopback server, so the simulator's dispatcher can POST to it."""
    app = functions_framework.create_app(target="heygen_webhook", source=str(ROOT / "main.py"))
    server = werkzeug.serving.make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.port}/"
    server.shutdown()
    thread.join(timeout=5)


def test_the_simulators_signed_deliveries_complete_the_job_once(stack_factory, served_webhook):
    options = {"webhook_url": served_webhook, "webhook_secret": HEYGEN_SECRET, "webhook_copies": 2}
    stack = stack_factory(heygen=options, HEYGEN_WEBHOOK_SECRET=HEYGEN_SECRET)
    job_id, video_id = made_job(stack)
    render_done(stack, video_id)
    deadline = time.monotonic() + 15
    while len(stack.heygen.deliveries) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stack.heygen.deliveries == [("avatar_video.success", video_id, 200)] * 2
    assert job_doc(stack, job_id)["status"] == "completed"
    assert stack.heygen.count(*VIDEO_GETS) == 1


# -- RunwayML: Standard Webhooks ----------------------------------------------------------------------


def runway_done(stack, task_id):
    task = stack.runway.tasks[task_id]
    stack.clock.t = task.start + task.render_s + 1


def test_a_signed_runwayml_event_completes_the_job_with_what_runway_reports(hooked):
    job_id, task_id = made_job(hooked, provider="runwayml")
    runway_done(hooked, task_id)
    answer = post_runway(hooked, runway_body(task_id))
    assert answer.get_json() == {"jobId": job_id, "status": "completed", "outcome": "apply"}
    output = job_doc(hooked, job_id)["output"]
    assert output["videoUrls"] == [f"{hooked.runway.base_url}/outputs/{task_id}.mp4"]
    assert hooked.runway.count(*TASK_GETS) == 1


def test_a_runwayml_event_that_lies_leaves_a_running_task_processing(hooked):
    job_id, task_id = made_job(hooked, provider="runwayml")
    hooked.clock.t = hooked.runway.tasks[task_id].start + 1
    assert post_runway(hooked, runway_body(task_id)).status_code == 200
    assert job_doc(hooked, job_id)["status"] == "processing"


def test_a_replayed_runwayml_event_is_applied_once(hooked):
    _, task_id = made_job(hooked, provider="runwayml")
    runway_done(hooked, task_id)
    body = runway_body(task_id)
    assert post_runway(hooked, body, msg_id="msg-5").get_json()["status"] == "completed"
    assert post_runway(hooked, body, msg_id="msg-5").get_json() == {"duplicate": True}
    assert hooked.runway.count(*TASK_GETS) == 1


def test_an_event_for_an_unknown_runwayml_task_is_ignored_after_the_early_window(hooked):
    assert post_runway(hooked, runway_body("no-such-task"), msg_id="msg-old").status_code == 503
    minutes_later(hooked, 2)
    answer = post_runway(
        hooked, runway_body("no-such-task"), msg_id="msg-old", timestamp=int(time.time()) + 120
    )
    assert answer.get_json() == {"ignored": "unknown task"}
    assert hooked.runway.count(*TASK_GETS) == 0


RUNWAY_REFUSALS = {
    "forged signature": ({"secret": "whsec_" + base64.b64encode(b"x" * 32).decode()}, 401, "bad_signature"),
    "stale timestamp": ({"timestamp": int(time.time()) - 3600}, 401, "stale_timestamp"),
    "missing headers": ({"headers": {}}, 401, "missing_signature"),
    "no task id": ({"body": b'{"type": "task.updated", "data": {}}'}, 400, "malformed_payload"),
    "data not an object": ({"body": b'{"type": "task.updated", "data": "x"}'}, 400, "malformed_payload"),
    "not json": ({"body": b"[1, 2"}, 400, "malformed_payload"),
}


@pytest.mark.parametrize("case", list(RUNWAY_REFUSALS))
def test_a_bad_runwayml_delivery_is_refused_and_writes_nothing(hooked, case):
    options, status, code = RUNWAY_REFUSALS[case]
    job_id, task_id = made_job(hooked, provider="runwayml")
    runway_done(hooked, task_id)
    before = job_doc(hooked, job_id)
    extra = dict(options)
    answer = post_runway(hooked, extra.pop("body", runway_body(task_id)), **extra)
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (status, code)
    assert (job_doc(hooked, job_id), event_records(hooked)) == (before, [])
    assert hooked.runway.count(*TASK_GETS) == 0


def test_a_tampered_runwayml_body_is_refused(hooked):
    headers = sign_standard(runway_body("a"), RUNWAY_SECRET, msg_id="m", timestamp=int(time.time()))
    answer = post_runway(hooked, runway_body("b"), headers=headers)
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (401, "bad_signature")


# -- a webhook and a poll at the same moment ----------------------------------------------------------


@pytest.mark.parametrize("round_", range(3))
def test_a_webhook_and_a_poll_for_the_same_task_leave_one_consistent_end(hooked, round_):
    job_id, video_id = made_job(hooked)
    render_done(hooked, video_id)
    webhook, polls = run_together(
        lambda: post_heygen(hooked, heygen_body(video_id), event_id=f"evt-{round_}"),
        lambda: hooked.deliver_polls(),
    )
    assert webhook.status_code == 200, webhook.get_json()
    assert [p.status_code for p in polls] == [200]
    job = hooked.deps.store.get_job(job_id)
    task = hooked.deps.store.get_task("heygen", video_id)
    assert (str(job.status), str(task.status), job.progress) == ("completed", "completed", 100.0)
    assert [str(a.status) for a in job.attempts] == ["succeeded"]
    assert job.output["videoUrls"] == [f"{hooked.heygen.base_url}/media/{video_id}.mp4"]
    assert hooked.queue.tasks == []
