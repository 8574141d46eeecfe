"""firestore.rules, enforced by Google's Firestore emulator: what the app may read; it writes nothing.

The app reads the owner's view of a job (`video_job_status/{jobId}`, `jobs/views.py`); the job
document itself (selection, provider task ids, costs) is server-only like every other collection.

The emulator runs with `--rules=firestore.rules` (its own instance, apart from the session one the
store tests use) and is spoken to over its REST API, as the Firebase SDK in the app would be.
`Authorization: Bearer owner` is the admin (server) identity and bypasses the rules; an unsigned
JWT (`alg: none`) whose `sub`/`user_id` is a uid is treated as that signed-in Firebase user; no
header is an anonymous caller.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from google.cloud import firestore

from config import load_settings
from jobs.records import JobRequest
from jobs.store import JobStore, NewJob
from jobs.view_models import USER_VIEW_KEYS
from local.firestore_emulator import FirestoreEmulator
from providers.base import Status

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "cvplus-rules-test"
ADMIN = "owner"
JOBS = "video_job_status"  # what the app reads of a job (the user view)
ALICE_JOB = f"{JOBS}/job-alice"
BOB_JOB = f"{JOBS}/job-bob"
# Every other kind of document; each carries ownerUid=alice, so no rule can let it through by owner.
PRIVATE_DOCS = [
    "enhanced_video_jobs/job-alice",
    "runwayml_jobs/task-1",
    "heygen_jobs/video-1",
    "video_webhook_events/evt-1",
    "video_quota/runwayml-2026-01-01T00",
    "video_health/runwayml",
    f"{ALICE_JOB}/attempts/attempt-1",
    "enhanced_video_jobs/job-alice/attempts/attempt-1",
    "users/alice",
]
SEED = {
    ALICE_JOB: {"ownerUid": "alice", "status": "processing", "progress": 40},
    BOB_JOB: {"ownerUid": "bob", "status": "completed", "progress": 100},
    **{path: {"ownerUid": "alice", "jobId": "job-alice"} for path in PRIVATE_DOCS},
}


def user_token(uid: str) -> str:
    """An unsigned Firebase ID token for `uid`, as the emulator accepts it."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {
        "sub": uid,
        "user_id": uid,
        "aud": PROJECT,
        "iss": f"https://securetoken.google.com/{PROJECT}",
        "iat": now,
        "auth_time": now,
        "exp": now + 3600,
        "firebase": {"sign_in_provider": "password", "identities": {}},
    }
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def encode(fields: dict[str, Any]) -> dict[str, Any]:
    """Plain values -> Firestore REST `fields`."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError(f"unsupported test value {value!r}")
        out[key] = {"integerValue": str(value)} if isinstance(value, int) else {"stringValue": value}
    return out


def owner_query(uid: str | None, *, field: str = "ownerUid", all_descendants: bool = False) -> dict:
    query: dict[str, Any] = {"from": [{"collectionId": JOBS, "allDescendants": all_descendants}]}
    if uid is not None:
        query["where"] = {
            "fieldFilter": {"field": {"fieldPath": field}, "op": "EQUAL", "value": {"stringValue": uid}}
        }
    return {"structuredQuery": query}


class RulesClient:
    """The emulator's REST API as one identity sees it: ADMIN, a uid, or None (anonymous)."""

    def __init__(self, host: str, session: requests.Session) -> None:
        self.documents = f"http://{host}/v1/projects/{PROJECT}/databases/(default)/documents"
        self.session = session

    def call(self, who: str | None, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {}
        if who == ADMIN:
            headers["Authorization"] = "Bearer owner"
        elif who is not None:
            headers["Authorization"] = f"Bearer {user_token(who)}"
        url = self.documents + (path if path.startswith(":") else f"/{path}")
        return self.session.request(method, url, headers=headers, timeout=10, **kwargs)

    def get(self, who: str | None, path: str) -> requests.Response:
        return self.call(who, "GET", path)

    def run_query(self, who: str | None, query: dict, parent: str = "") -> requests.Response:
        return self.call(who, "POST", f"{parent}:runQuery", json=query)

    def create(self, who: str | None, path: str, fields: dict[str, Any]) -> requests.Response:
        params = {"currentDocument.exists": "false"}
        return self.call(who, "PATCH", path, params=params, json={"fields": encode(fields)})

    def update(self, who: str | None, path: str, fields: dict[str, Any]) -> requests.Response:
        params = {"currentDocument.exists": "true", "updateMask.fieldPaths": list(fields)}
        return self.call(who, "PATCH", path, params=params, json={"fields": encode(fields)})

    def delete(self, who: str | None, path: str) -> requests.Response:
        return self.call(who, "DELETE", path)


@pytest.fixture(scope="module")
def rules_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirestoreEmulator]:
    logs = tmp_path_factory.mktemp("rules-emulator-logs")
    emulator = FirestoreEmulator(logs, rules=ROOT / "firestore.rules").start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def db(rules_emulator: FirestoreEmulator) -> Iterator[RulesClient]:
    """A client on freshly seeded data (seeded as admin, which the rules do not apply to)."""
    rules_emulator.wipe(PROJECT)
    with requests.Session() as session:
        client = RulesClient(rules_emulator.host, session)
        for path, fields in SEED.items():
            assert client.create(ADMIN, path, fields).status_code == 200
        yield client


def query_names(client: RulesClient, who: str | None, query: dict, parent: str = "") -> list[str]:
    """Names of the documents a query returns (asserting it was allowed)."""
    response = client.run_query(who, query, parent)
    assert response.status_code == 200, response.text
    return [
        row["document"]["name"].rsplit("/documents/", 1)[1] for row in response.json() if "document" in row
    ]


def assert_denied(response: requests.Response) -> None:
    assert response.status_code == 403, f"{response.status_code}: {response.text[:300]}"
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"


# --- reading jobs --------------------------------------------------------------------------------


def test_owner_reads_own_job(db: RulesClient) -> None:
    response = db.get("alice", ALICE_JOB)

    assert response.status_code == 200, response.text
    assert response.json()["fields"]["ownerUid"] == {"stringValue": "alice"}


@pytest.mark.parametrize(
    ("who", "path"),
    [
        pytest.param("bob", ALICE_JOB, id="another-user"),
        pytest.param("alice", BOB_JOB, id="owner-field-names-someone-else"),
        pytest.param(None, ALICE_JOB, id="anonymous"),
        pytest.param("alice", f"{JOBS}/no-such-job", id="missing-job-does-not-leak-existence"),
    ],
)
def test_reading_a_job_that_is_not_yours_is_denied(db: RulesClient, who: str | None, path: str) -> None:
    assert_denied(db.get(who, path))


def test_list_constrained_to_own_uid_returns_only_own_jobs(db: RulesClient) -> None:
    names = query_names(db, "alice", owner_query("alice"))

    assert names == [ALICE_JOB]


@pytest.mark.parametrize(
    ("who", "query"),
    [
        pytest.param("alice", owner_query(None), id="unconstrained"),
        pytest.param("alice", owner_query("bob"), id="constrained-to-another-uid"),
        pytest.param("alice", owner_query("processing", field="status"), id="constrained-on-another-field"),
        pytest.param(None, owner_query("alice"), id="anonymous"),
        pytest.param("alice", owner_query("alice", all_descendants=True), id="collection-group"),
    ],
)
def test_list_not_constrained_to_own_uid_is_denied(db: RulesClient, who: str | None, query: dict) -> None:
    assert_denied(db.run_query(who, query))


def test_listing_the_jobs_collection_without_a_query_is_denied(db: RulesClient) -> None:
    assert_denied(db.get("alice", JOBS))


# --- everything else is unreadable -----------------------------------------------------------------


@pytest.mark.parametrize("path", PRIVATE_DOCS)
@pytest.mark.parametrize("who", ["alice", None])
def test_provider_records_and_support_collections_are_unreadable(
    db: RulesClient, who: str | None, path: str
) -> None:
    collection_parent, _, collection = path.rpartition("/")[0].rpartition("/")
    query = {
        "structuredQuery": {
            "from": [{"collectionId": collection}],
            "where": {
                "fieldFilter": {
                    "field": {"fieldPath": "ownerUid"},
                    "op": "EQUAL",
                    "value": {"stringValue": "alice"},
                }
            },
        }
    }

    assert_denied(db.get(who, path))
    assert_denied(db.run_query(who, query, parent=collection_parent))


# --- no client writes anywhere -------------------------------------------------------------------

ALL_DOCS = [ALICE_JOB, BOB_JOB, *PRIVATE_DOCS]


@pytest.mark.parametrize("path", ALL_DOCS)
@pytest.mark.parametrize("who", ["alice", "bob", None])
def test_every_client_write_is_denied(db: RulesClient, who: str | None, path: str) -> None:
    new_path = f"{path}-new"

    assert_denied(db.create(who, new_path, {"ownerUid": who or "nobody", "status": "queued"}))
    assert_denied(db.update(who, path, {"status": "completed", "progress": 100}))
    assert_denied(db.delete(who, path))

    assert db.get(ADMIN, new_path).status_code == 404
    stored = db.get(ADMIN, path).json()["fields"]
    assert stored == encode(SEED[path])


@pytest.mark.parametrize(
    ("who", "path", "fields"),
    [
        pytest.param("bob", ALICE_JOB, {"ownerUid": "bob"}, id="take-over-someone-elses-job"),
        pytest.param("alice", ALICE_JOB, {"ownerUid": "alice", "status": "completed"}, id="owner-edits-own"),
        pytest.param("bob", f"{JOBS}/job-forged", {"ownerUid": "alice"}, id="create-in-someone-elses-name"),
    ],
)
def test_writing_the_owner_field_is_denied(
    db: RulesClient, who: str, path: str, fields: dict[str, Any]
) -> None:
    response = db.update(who, path, fields) if path in SEED else db.create(who, path, fields)

    assert_denied(response)
    assert db.get("alice", ALICE_JOB).json()["fields"]["ownerUid"] == {"stringValue": "alice"}


# --- the server is not affected ------------------------------------------------------------------


def test_server_reads_lists_and_writes_everything(db: RulesClient) -> None:
    for path in ALL_DOCS:
        assert db.get(ADMIN, path).status_code == 200, path
    assert sorted(query_names(db, ADMIN, owner_query(None))) == sorted([ALICE_JOB, BOB_JOB])

    assert db.update(ADMIN, ALICE_JOB, {"status": "completed"}).status_code == 200
    assert db.create(ADMIN, "runwayml_jobs/task-2", {"jobId": "job-alice"}).status_code == 200
    assert db.delete(ADMIN, BOB_JOB).status_code == 200
    assert db.get(ADMIN, BOB_JOB).status_code == 404


# --- what the store writes ------------------------------------------------------------------------


def test_the_owner_reads_the_user_view_the_store_writes_and_not_the_job(
    db: RulesClient, rules_emulator: FirestoreEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", rules_emulator.host)  # the admin client of this one
    client = firestore.Client(project=PROJECT)
    store = JobStore(client, load_settings({"GOOGLE_CLOUD_PROJECT": PROJECT}))
    new = NewJob(owner_uid="carol", request=JobRequest(), candidates=("heygen",), selection={"scores": {}})
    job, _ = store.create_job(new)
    store.finish_job(job.job_id, Status.CANCELLED, {"code": "cancelled", "message": "cancelled"})

    view = db.get("carol", f"{JOBS}/{job.job_id}")
    assert view.status_code == 200, view.text
    assert set(view.json()["fields"]) == USER_VIEW_KEYS | {"expireAt"}
    assert view.json()["fields"]["status"] == {"stringValue": "cancelled"}
    assert query_names(db, "carol", owner_query("carol")) == [f"{JOBS}/{job.job_id}"]
    assert_denied(db.get("carol", f"enhanced_video_jobs/{job.job_id}"))
    assert_denied(db.get("alice", f"{JOBS}/{job.job_id}"))
    client.close()
