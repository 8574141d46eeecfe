"""An in-process stack for function tests: the real Firestore emulator, both provider simulators on
loopback (on one manual clock), a loopback token issuer, and the functions served through
functions-framework's own app. Polls go to an `InMemoryQueue` that tests deliver by hand (the
Cloud Tasks emulator path has its own tests).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import functions_framework
import pytest

from config import Settings, load_settings
from jobs.records import job_to_doc
from local.heygen_sim import HeyGenSim
from local.runwayml_sim import RunwayMLSim
from local.simcore import FaultPlan, ManualClock
from local.stack_env import UNLIMITED_PLANS
from local.tokens import TokenIssuer
from tasks.memory import InMemoryQueue
from tests.conftest import ROOT, TEST_PROJECT
from web import deps

RUNWAY_KEY = "key_" + "ab" * 64
HEYGEN_KEY = "sim-heygen-key"
TASKS_SA = "tasks@cvplus-test.iam.gserviceaccount.com"
OPS_SA = "ops@cvplus-test.iam.gserviceaccount.com"
SCHEDULER_SA = "scheduler@cvplus-test.iam.gserviceaccount.com"
BUCKET = "cvplus-test-videos"
FUNCTIONS_BASE = "http://127.0.0.1:9999"
SCRIPT = (
    "I am a senior software engineer with 8 years in fintech. I led a team of six that launched a "
    "payments platform used by 2 million customers and cut checkout latency by 40%. I work with "
    "Python, Kubernetes and AWS, and I love mentoring junior developers in our London office."
)


def environment(runway: RunwayMLSim, heygen: HeyGenSim, issuer: TokenIssuer, **extra: str) -> dict[str, str]:
    return {
        "GOOGLE_CLOUD_PROJECT": TEST_PROJECT,
        "RUNWAYML_API_KEY": RUNWAY_KEY,
        "RUNWAYML_BASE_URL": runway.base_url,
        "HEYGEN_API_KEY": HEYGEN_KEY,
        "HEYGEN_BASE_URL": heygen.base_url,
        "HEYGEN_AVATAR_ID": "avatar-cv-1",
        "FIREBASE_CERTS_URL": issuer.certs_url,
        "GOOGLE_CERTS_URL": issuer.certs_url,
        "FUNCTIONS_BASE_URL": FUNCTIONS_BASE,
        "TASKS_SERVICE_ACCOUNT": TASKS_SA,
        "OPS_SERVICE_ACCOUNTS": OPS_SA,
        "SCHEDULER_SERVICE_ACCOUNT": SCHEDULER_SA,
        "HTTP_READ_TIMEOUT_SECONDS": "2",
        "HTTP_MAX_ATTEMPTS": "2",
        **UNLIMITED_PLANS,  # tests of the plans set their own
        **extra,
    }


@dataclass
class Stack:
    settings: Settings
    deps: deps.Deps
    queue: InMemoryQueue
    runway: RunwayMLSim
    heygen: HeyGenSim
    clock: ManualClock
    issuer: TokenIssuer
    apps: dict[str, Any] = field(default_factory=dict)
    storage: Any = None  # storage.VideoStorage when made with storage=True

    def client(self, function: str) -> Any:
        if function not in self.apps:
            app = functions_framework.create_app(target=function, source=str(ROOT / "main.py"))
            self.apps[function] = app.test_client()
        return self.apps[function]

    def user(self, uid: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.user_token(uid, TEST_PROJECT)}"}

    def service(self, email: str, function: str) -> dict[str, str]:
        token = self.issuer.service_token(email, f"{FUNCTIONS_BASE}/{function}")
        return {"Authorization": f"Bearer {token}"}

    def generate(self, uid: str = "alice", key: str | None = None, **body: Any) -> Any:
        headers = self.user(uid) | ({"Idempotency-Key": key} if key else {})
        return self.client("generate_video").post("/", json={"script": SCRIPT, **body}, headers=headers)

    def deliver_polls(self, *, advance_s: float = 0.0) -> list[Any]:
        """Move the simulators' clock, then deliver every queued poll as Cloud Tasks would."""
        self.clock.advance(advance_s)
        answers = []
        for task in self.queue.take():
            headers = self.service(TASKS_SA, task.function)
            answers.append(self.client(task.function).post("/", json=task.payload, headers=headers))
        return answers

    def run_until_terminal(self, job_id: str, *, step_s: float = 30.0, max_rounds: int = 80) -> dict:
        for _ in range(max_rounds):
            job = self.deps.store.get_job(job_id)
            if job.status.value in ("completed", "failed", "cancelled", "timed_out"):
                return job_to_doc(job)
            if not self.queue.tasks:
                raise AssertionError(f"job {job_id} is {job.status} with no poll scheduled")
            self.deliver_polls(advance_s=step_s)
        raise AssertionError(f"job {job_id} did not end in {max_rounds} rounds")


@pytest.fixture(scope="session")
def token_issuer() -> Iterator[TokenIssuer]:
    issuer = TokenIssuer()
    yield issuer
    issuer.stop()


def make_stack(firestore_client, issuer, *, runway_faults=None, heygen_faults=None, heygen=None, **env):
    clock = ManualClock()
    runway = RunwayMLSim(clock=clock, faults=runway_faults or FaultPlan(), api_key=RUNWAY_KEY).start()
    heygen_sim = HeyGenSim(clock=clock, faults=heygen_faults or FaultPlan(), **(heygen or {})).start()
    settings = load_settings(environment(runway, heygen_sim, issuer, **env))
    queue = InMemoryQueue()
    built = deps.build(settings, queue=queue)
    deps.use(built)
    return Stack(settings, built, queue, runway, heygen_sim, clock, issuer)


@pytest.fixture(scope="session")
def storage_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The Cloud Storage emulator, started once per run by the first test that asks for storage."""
    from local.storage_emulator import StorageEmulator

    emulator = StorageEmulator(tmp_path_factory.mktemp("storage-logs")).start()
    yield emulator
    emulator.stop()


def storage_environment(emulator: Any) -> dict[str, str]:
    """Settings of a stack that keeps finished videos in the emulator (simulator outputs allowed)."""
    emulator.create_bucket(TEST_PROJECT, BUCKET)
    emulator.wipe()
    return {"STORAGE_BUCKET": BUCKET, "STORAGE_EMULATOR_HOST": emulator.url, "OUTPUT_HOSTS": "127.0.0.1"}


@pytest.fixture
def stack_factory(firestore_client, token_issuer, request):
    made: list[Stack] = []

    def factory(*, storage: bool = False, **options: Any) -> Stack:
        if storage:
            options = {**storage_environment(request.getfixturevalue("storage_emulator")), **options}
        made.append(make_stack(firestore_client, token_issuer, **options))
        if storage:
            from tasks.storage import storage_for

            made[-1].storage = storage_for(made[-1].settings)
        return made[-1]

    yield factory
    deps.use(None)
    for stack in made:
        stack.runway.stop()
        stack.heygen.stop()


@pytest.fixture
def stack(stack_factory) -> Stack:
    return stack_factory()
