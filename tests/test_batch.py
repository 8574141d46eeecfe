"""`runwayml_batch_status_check` end to end: hundreds of jobs, a few live at the simulators.

Most jobs are made directly through the store (queued, no attempt yet) for speed; a few go through
`generate_video`, so their tasks exist at the simulators. The store's clock is moved forward where a
test needs the records to look stale (`views.needs_refresh`) or stuck.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.cloud import firestore
from google.cloud.firestore_v1.vector import Vector

from benchmarks.counting import FirestoreCounter
from jobs import queries
from jobs.queries import STATUS_FIELDS, batch_get
from jobs.records import JobRequest, job_from_doc, job_to_doc
from jobs.store import JobStore, NewJob
from jobs.txn import utcnow
from jobs.views import ops_view
from tasks.batch import STUCK_UNCHECKED, status_view, summarize
from tests.stack import OPS_SA, TASKS_SA
from web.schemas import MAX_BATCH_IDS

FUNCTION = "runwayml_batch_status_check"
PLAIN_JOBS = 240


def plain_jobs(stack, count=PLAIN_JOBS):
    return new_jobs(stack.deps.store, count)


def new_jobs(store, count):
    new = [
        NewJob(owner_uid=f"user-{i % 7}", request=JobRequest(title=str(i)), candidates=("heygen",))
        for i in range(count)
    ]
    return [store.create_job(job)[0].job_id for job in new]


def live_job(stack, **body):
    answer = stack.generate(**body)
    assert answer.status_code == 202, answer.get_json()
    return answer.get_json()["jobId"]


def later(stack, seconds):
    """Move the store's clock (and so the batch's idea of now) forward."""
    stack.deps.store.clock = lambda: utcnow() + timedelta(seconds=seconds)


def post(stack, body, headers=None):
    headers = stack.service(OPS_SA, FUNCTION) if headers is None else headers
    return stack.client(FUNCTION).post("/", json=body, headers=headers)


def provider_gets(stack):
    return stack.heygen.count("GET", "/v3/videos/") + stack.runway.count("GET", "/v1/tasks/")


@pytest.fixture
def fleet(stack):
    """240 queued jobs, 5 HeyGen and 3 RunwayML jobs at the simulators, every render finished."""
    plain = plain_jobs(stack)
    heygen = [live_job(stack) for _ in range(5)]
    runway = [live_job(stack, provider="runwayml") for _ in range(3)]
    stack.clock.advance(3600)
    return stack, plain, heygen, runway


def by_id(answer):
    return {r["jobId"]: r for r in answer.get_json()["jobs"]}


def test_stale_live_jobs_are_refreshed_with_one_bulk_heygen_call(fleet):
    stack, plain, heygen, runway = fleet
    later(stack, 60)
    answer = post(stack, {"jobIds": plain + heygen + runway})
    assert answer.status_code == 200, answer.get_json()
    body, results = answer.get_json(), by_id(answer)
    assert all(results[j]["status"] == "completed" and results[j]["refreshed"] for j in heygen + runway)
    assert all(results[j]["status"] == "queued" and not results[j]["refreshed"] for j in plain)
    assert body["summary"]["byStatus"] == {"queued": PLAIN_JOBS, "completed": 8}
    # one bulk statuses call and one full read per finished video; RunwayML has no bulk call
    assert stack.heygen.count("GET", "/v3/videos/statuses") == 1
    assert body["providerCalls"] == provider_gets(stack) == 1 + 5 + 3
    assert body["firestoreReads"] >= PLAIN_JOBS + 8 + 8
    assert stack.deps.store.get_job(heygen[0]).status == "completed"


def test_fresh_records_are_reported_without_asking_the_providers(fleet):
    stack, _, heygen, runway = fleet
    answer = post(stack, {"jobIds": heygen + runway})
    assert {r["status"] for r in answer.get_json()["jobs"]} == {"queued"}
    assert answer.get_json()["providerCalls"] == provider_gets(stack) == 0


def test_unknown_ids_are_reported_as_not_found_in_request_order(stack):
    known = plain_jobs(stack, 3)
    ids = ["missing-1", known[0], "missing-2", *known[1:]]
    answer = post(stack, {"jobIds": ids})
    results = answer.get_json()["jobs"]
    assert [r["jobId"] for r in results] == ids
    assert [r["found"] for r in results] == [False, True, False, True, True]
    assert results[0]["error"]["code"] == "not_found"
    summary = answer.get_json()["summary"]
    assert (summary["total"], summary["found"], summary["notFound"]) == (5, 3, 2)


def test_the_filter_form_selects_by_status_and_age_up_to_the_limit(fleet):
    stack, *_ = fleet
    later(stack, 60)
    limited = post(stack, {"status": ["queued", "processing"], "limit": 50}).get_json()
    assert len(limited["jobs"]) == 50
    completed = post(stack, {"status": ["completed"]}).get_json()
    assert completed["jobs"] == []
    too_young = post(stack, {"status": ["queued"], "olderThanSeconds": 3600}).get_json()
    assert too_young["jobs"] == []
    old_enough = post(stack, {"status": ["queued"], "olderThanSeconds": 30, "limit": 1000}).get_json()
    assert len(old_enough["jobs"]) == PLAIN_JOBS + 8  # the live ones were queued when selected
    assert old_enough["summary"]["byStatus"] == {"queued": PLAIN_JOBS, "completed": 8}


def test_jobs_not_checked_for_long_or_past_their_deadline_are_stuck(stack):
    ids = plain_jobs(stack, 3)
    later(stack, STUCK_UNCHECKED.total_seconds() + 1)
    stuck = post(stack, {"jobIds": ids}).get_json()["summary"]["stuck"]
    assert stuck == [{"jobId": i, "reason": "not_checked"} for i in ids]
    later(stack, stack.settings.job_deadline_s + 1)
    stuck = post(stack, {"jobIds": ids}).get_json()["summary"]["stuck"]
    assert {s["reason"] for s in stuck} == {"past_deadline"}


def test_a_provider_outage_is_reported_per_job_and_fails_nothing_else(fleet):
    stack, plain, heygen, runway = fleet
    later(stack, 60)
    stack.heygen.faults.rates["http_5xx"] = 1.0
    answer = post(stack, {"jobIds": plain[:5] + heygen + runway})
    assert answer.status_code == 200
    results = by_id(answer)
    assert {results[j]["refreshError"] for j in heygen} == {"server_error"}  # HeyGen's own code
    assert {results[j]["status"] for j in heygen} == {"queued"}
    assert {results[j]["status"] for j in runway} == {"completed"}
    assert answer.get_json()["summary"]["refreshErrors"] == 5


def test_a_task_heygen_no_longer_knows_fails_over_to_runwayml(stack):
    job_id = live_job(stack)
    video_id = stack.deps.store.get_job(job_id).current_attempt.task_id
    del stack.heygen.videos[video_id]
    later(stack, 60)
    result = post(stack, {"jobIds": [job_id]}).get_json()["jobs"][0]
    assert (result["refreshed"], result["provider"]) == (True, "runwayml")
    assert sum(stack.runway.creates.values()) == 1


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (lambda s: {}, 401),
        (lambda s: s.user("alice"), 403),
        (lambda s: s.service(TASKS_SA, FUNCTION), 403),
        (lambda s: s.service(OPS_SA, "provider_health"), 401),  # a token for another function
    ],
)
def test_only_the_ops_account_may_call(stack, headers, status):
    answer = post(stack, {"jobIds": ["a"]}, headers=headers(stack))
    assert answer.status_code == status


BAD_BODIES = [
    {},
    {"jobIds": []},
    {"jobIds": ["x"] * (MAX_BATCH_IDS + 1)},
    {"jobIds": ["a/b"]},
    {"jobIds": ["a"], "status": ["queued"]},
    {"jobIds": ["a"], "limit": 5},
    {"status": []},
    {"status": ["lost"]},
    {"status": ["queued"], "limit": 0},
    {"status": ["queued"], "olderThanSeconds": -1},
    {"limit": 5},
    {"jobIds": ["a"], "extra": 1},
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_a_bad_body_is_a_400_and_nothing_is_read_or_written(fleet, body):
    stack, _, heygen, _ = fleet
    later(stack, 60)
    before = stack.deps.store.get_job(heygen[0])
    answer = post(stack, body)
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (400, "invalid_request")
    assert stack.deps.store.get_job(heygen[0]) == before
    assert provider_gets(stack) == 0


def test_not_json_is_415_and_a_get_is_405(stack):
    headers = stack.service(OPS_SA, FUNCTION)
    client = stack.client(FUNCTION)
    assert client.post("/", data="jobIds=a", headers=headers).status_code == 415
    assert client.get("/", headers=headers).status_code == 405


def test_the_summary_counts_statuses_errors_and_stuck_jobs():
    def row(job_id, status, refreshed=False, error=None, stuck=None):
        fields = {"status": status, "refreshed": refreshed, "refreshError": error, "stuck": stuck}
        return {"jobId": job_id, "found": True, **fields}

    results = [
        row("a", "queued"),
        row("b", "queued", refreshed=True),
        row("c", "failed", error="x"),
        row("d", "queued", stuck="p"),
        {"jobId": "e", "found": False},
    ]
    assert summarize(results) == {
        "total": 5,
        "found": 4,
        "notFound": 1,
        "byStatus": {"queued": 3, "failed": 1},
        "refreshed": 1,
        "refreshErrors": 1,
        "stuck": [{"jobId": "d", "reason": "p"}],
    }


def test_a_batch_shows_what_the_job_view_shows_from_the_projected_fields_alone(stack):
    # Given a job that failed over to RunwayML, with an error, stored in full
    job_id = live_job(stack)
    video_id = stack.deps.store.get_job(job_id).current_attempt.task_id
    del stack.heygen.videos[video_id]
    later(stack, 60)
    post(stack, {"jobIds": [job_id]})
    full = stack.deps.store.get_job(job_id)
    doc = job_to_doc(full) | {"error": {"code": "x_failed", "message": "it failed", "retryable": False}}
    # When only STATUS_FIELDS of its document are read
    projected = job_from_doc({k: v for k, v in doc.items() if k in STATUS_FIELDS}, job_id)
    # Then the batch answers with what the full job view shows
    view = ops_view(job_from_doc(doc))
    assert status_view(projected) == {
        k: view[k] for k in ("jobId", "status", "progress", "provider", "error")
    }
    assert status_view(projected)["provider"] == "runwayml"
    assert status_view(projected)["error"] == {"code": "x_failed", "message": "it failed"}


# -- the bulk read under the batch: the client's `get_all`, without its snapshots -----------------


EVERY_KIND = {
    "none": None,
    "yes": True,
    "count": 7,
    "ratio": 0.25,
    "at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    "text": "héllo",
    "raw": b"\x00\xff",
    "place": firestore.GeoPoint(48.85, 2.35),
    "embedding": Vector([1.0, 2.0]),
    "list": [1, "two", {"three": [3.0, None]}],
    "map": {"inner": {"deeper": "yes", "when": datetime(2026, 1, 1, tzinfo=UTC)}, "empty": {}},
}


def get_all_data(client, refs, field_paths=None):
    return {s.id: s.to_dict() for s in client.get_all(refs, field_paths=field_paths) if s.exists}


@pytest.mark.parametrize("field_paths", [None, ["at", "map.inner.deeper", "list", "missing"]])
def test_a_bulk_read_decodes_every_value_as_the_clients_get_all_does(firestore_client, field_paths):
    # Given documents holding every kind of value, one of them pointing at another
    refs = [firestore_client.collection("kinds").document(name) for name in ("a", "b", "absent")]
    refs[0].set(EVERY_KIND | {"ref": refs[1]})
    refs[1].set({"text": "only"})
    # When they are read in bulk, whole or projected
    found = {
        f.id: f.fields
        for f in batch_get(firestore_client, firestore_client._firestore_api, refs, field_paths)
    }
    # Then the data, and the type of every value, are what get_all's snapshots hold
    expected = get_all_data(firestore_client, refs, field_paths)
    assert found == expected
    assert set(found) == {"a", "b"}
    assert kinds(found) == kinds(expected)


def kinds(value):
    if isinstance(value, dict):
        return {key: kinds(item) for key, item in value.items()}
    if isinstance(value, list):
        return [kinds(item) for item in value]
    return type(value)


@pytest.fixture
def small_requests(firestore_client, settings, monkeypatch):
    """A store whose bulk reads ask for 3 documents a request, and a counter of its RPCs."""
    monkeypatch.setattr(queries, "GET_ALL_CHUNK", 3)
    store = JobStore(firestore_client, settings)
    return store, FirestoreCounter().attach(firestore_client)


def test_a_read_of_several_requests_reads_each_job_once_as_get_all_would(small_requests):
    # Given 10 jobs, read 3 a request
    store, counter = small_requests
    ids = new_jobs(store, 10)
    before = counter.snapshot()
    # When they and a missing id are read, projected to what a status summary needs
    found = store.get_jobs([*ids, "missing", ids[0]], STATUS_FIELDS)
    # Then 4 requests read the 11 distinct ids, and each job is what get_all's snapshots give
    cost = FirestoreCounter.delta(before, counter.snapshot())
    assert (cost["by_rpc"], cost["reads"]) == ({"batch_get_documents": 4}, 11)
    refs = [store.job_ref(i) for i in ids]
    expected = {i: job_from_doc(doc, i) for i, doc in get_all_data(store.client, refs, STATUS_FIELDS).items()}
    assert found == expected
    assert set(found) == set(ids)
