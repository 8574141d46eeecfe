"""The moving parts of a chaos run (`local/chaos.py`): its settings, the parts it starts, the app side.

`Run` starts the simulators (in this process), the delivery proxy and the local stack (with the
storage emulator, so finished videos are downloaded by the finalize step and meet the download
faults); plays the app (submits with Idempotency-Keys, retries lost answers, cancels and watches
some jobs, and cancels some while their first provider create is in flight: the simulator's
`on_create` hook sends `cancel_video` and holds the create's answer until the cancel is answered,
at most `CANCEL_HOLD_S`, less than the functions' read timeout); kills and restarts the function
host; keeps two witnesses of every job's and task's states (the listeners and a sampler); watches
for stranded jobs (`_watch_stranded`); and reads the books at the end.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import math
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from jobs.rules import job_id_for
from local import chaos_checks as checks
from local import stack_env as plan
from local.chaos_report import ChaosResult
from local.chaos_sims import SimPlan, start_simulators
from local.delivery_proxy import DeliveryProxy, ProxyPlan
from local.procs import http_ready
from local.simcore import SAMPLE_MP4
from local.stack import LocalStack, StackOptions
from local.stack_state import ROOT
from providers import registry

DEFAULT_FAULTS = {
    "http_5xx": 0.10,
    "http_429": 0.05,
    "read_timeout": 0.03,
    "reset": 0.01,
    "malformed": 0.02,
    "stuck": 0.02,
    "moderation": 0.02,
    "stale_read": 0.05,  # of status reads that have an older answer to give
    "answer_lost": 0.03,  # of creates that were processed
    "truncated_download": 0.05,  # of output downloads
    "trickle_download": 0.03,
}
WORK_DIR = ROOT / "build" / "chaos-stack"
SAMPLE_S = 2.0
STRANDED_ROUND_S = 1.5  # how often the stranded-job watcher looks
CANCEL_HOLD_S = 0.7  # the longest a create's answer waits for a cancel sent during it (< read timeout 1 s)
RUNWAYML_KEY = "key_" + "c4a05" * 8
HEYGEN_KEY = "chaos-heygen-key"
WEBHOOK_SECRET = "whsec_chaos-heygen-webhook-secret"  # noqa: S105 - a simulator's, on loopback
SCRIPT = (
    "I am a senior data engineer with {years} years in logistics. I led a team of {team} that cut "
    "delivery delays by {cut}% and built pipelines in Python, Kafka and AWS. Reference {ref}."
)


@dataclass(frozen=True)
class ChaosConfig:
    jobs: int = 300
    seed: int = 7
    speed: float = 100.0
    faults: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FAULTS))
    p_duplicate: float = 0.15
    p_late: float = 0.15
    kills: int = 2
    clients: int = 4
    deadline_s: int = 60  # JOB_DEADLINE_SECONDS (the settings allow no less)
    p_cancel: float = 0.03
    p_cancel_in_create: float = 0.04  # cancelled while the first provider create is in flight
    stranded_grace_s: float = 6.0  # nothing scheduled and the job unchanged this long: stranded
    finalize_timeout_s: int = 2  # FINALIZE_TIMEOUT_SECONDS: shorter than a trickling download
    p_watch: float = 0.2
    max_wait_s: float = 240.0  # bound on waiting for the deadlines after the last submission
    runwayml_key: str = RUNWAYML_KEY
    heygen_key: str = HEYGEN_KEY
    webhook_secret: str = WEBHOOK_SECRET
    work_dir: Path = WORK_DIR
    extra_env: dict[str, str] = field(default_factory=dict)  # more settings for the functions


@contextlib.contextmanager
def _emulator_env(host: str) -> Iterator[None]:
    """FIRESTORE_EMULATOR_HOST for the clients made inside (the client reads it when it is built)."""
    previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = previous


class Run:
    """One chaos run: the parts it started, the app-side driver, and what it saw."""

    def __init__(self, config: ChaosConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.result = ChaosResult(seed=config.seed, jobs=config.jobs, speed=config.speed)
        self.job_for_seed: dict[int, str] = {}
        self.accepted: set[str] = set()
        self.owners: dict[str, str] = {}
        self.answered = 0
        self.lock = threading.Lock()
        self.runway = self.heygen = self.proxy = self.stack = self.client = None
        self.log = checks.TransitionLog()  # what the Firestore listeners saw
        self.samples = checks.TransitionLog()  # what reading every document each SAMPLE_S saw
        self.sampling = threading.Event()
        self.cancel_in_create: set[str] = set()  # jobs to cancel when their first create arrives
        self.suspects: dict[str, tuple[tuple[Any, str], float]] = {}  # job -> ((updatedAt, why), since)
        self.stranded: dict[str, str] = {}  # job id -> how it was stranded
        self.host_back_at = 0.0  # when the function host last came back (inf while it is down)

    # -- parts --------------------------------------------------------------------------------------

    def start(self) -> None:
        c = self.config
        sims = SimPlan(c.speed, c.faults, c.seed, c.runwayml_key, c.heygen_key)
        self.runway, self.heygen = start_simulators(sims)
        self.runway.on_create = self.heygen.on_create = self._create_seen
        self.proxy = DeliveryProxy(ProxyPlan(c.p_duplicate, c.p_late, seed=c.seed)).start()
        environ = dict(os.environ) | {
            "RUNWAYML_API_KEY": c.runwayml_key,
            "RUNWAYML_BASE_URL": self.runway.base_url,
            "HEYGEN_API_KEY": c.heygen_key,
            "HEYGEN_BASE_URL": self.heygen.base_url,
            "HEYGEN_AVATAR_ID": plan.HEYGEN_SIM_AVATAR,
        }
        extra = {
            "FUNCTIONS_BASE_URL": self.proxy.base_url,
            "JOB_DEADLINE_SECONDS": str(c.deadline_s),
            "HEYGEN_WEBHOOK_SECRET": c.webhook_secret,
            "HTTP_READ_TIMEOUT_SECONDS": "1",
            "HTTP_MAX_ATTEMPTS": "2",
            "RUNWAYML_QUOTA": "100000/60",
            "HEYGEN_QUOTA": "100000/60",
            **plan.UNLIMITED_PLANS,
            "FINALIZE_TIMEOUT_SECONDS": str(c.finalize_timeout_s),
        } | c.extra_env
        options = StackOptions(work_dir=c.work_dir, environ=environ, extra_env=extra, storage=True)
        self.stack = LocalStack(options).start()
        self.proxy.target = self.stack.base_url
        self.heygen.hook(self.stack.url("heygen_webhook"), c.webhook_secret)
        from google.cloud import firestore

        with _emulator_env(self.stack.firestore.host):
            self.client = firestore.Client(project=plan.PROJECT)
        self.log.listen(self.client, self.collections())
        threading.Thread(target=self._sample, name="chaos-sampler", daemon=True).start()
        threading.Thread(target=self._watch_stranded, name="chaos-stranded", daemon=True).start()

    def collections(self) -> tuple[str, ...]:
        s = self.stack.settings
        return s.jobs_collection, *(spec.records_collection(s) for spec in registry.specs())

    def _sample(self) -> None:
        """Read every job and task document every SAMPLE_S until the run stops (a second witness)."""
        while not self.sampling.wait(SAMPLE_S):
            with contextlib.suppress(Exception):  # the emulator may be busy; the next round reads again
                for name in self.collections():
                    for snap in self.client.collection(name).stream():
                        self.samples.record(f"{name}/{snap.id}", snap.to_dict() or {})

    def _watch_stranded(self) -> None:
        """Every STRANDED_ROUND_S: a job waiting only on a scheduled poll or finalize that is not there.

        "Scheduled" is what the Cloud Tasks emulator still lists in the queue (future polls
        included) plus what the delivery proxy is forwarding (a task being dispatched has left the
        listing). A job stays a suspect while its document (`updatedAt`) and its reason stay the
        same; after `stranded_grace_s` of that it is stranded (counted once, under `lost`). No verdict
        while the function host is down or within the grace after it came back: the deliveries held
        for it are forwarded then, and the retried polls re-enqueue what the kill interrupted.
        """
        while not self.sampling.wait(STRANDED_ROUND_S):
            with contextlib.suppress(Exception):  # a busy emulator: the next round looks again
                self._stranded_round()

    def _stranded_round(self) -> None:
        finished = {"runwayml": self.runway.finished(), "heygen": self.heygen.finished()}
        scheduled = self.scheduled_jobs()
        jobs = self.jobs()
        now = time.monotonic()
        if now < self.host_back_at + self.config.stranded_grace_s:
            self.suspects.clear()  # redeliveries held for a down host are resumed once it is back
            return
        for job_id, doc in jobs.items():
            why = checks.stranded_reason(doc, finished)
            if why is None or job_id in scheduled:
                self.suspects.pop(job_id, None)
                continue
            mark = (doc.get("updatedAt"), why)
            seen = self.suspects.get(job_id)
            if seen is None or seen[0] != mark:
                self.suspects[job_id] = (mark, now)
            elif now - seen[1] >= self.config.stranded_grace_s and job_id not in self.stranded:
                waited = f"{doc.get('status')}, nothing scheduled for {now - seen[1]:.0f} s"
                with self.lock:
                    self.stranded[job_id] = f"{why}; {waited}"

    def scheduled_jobs(self) -> set[str]:
        """Job ids with a poll or finalize task in the queue or being delivered now."""
        bodies = [task.http_request.body for task in self.stack.tasks.list_tasks(self.stack.state.queue)]
        found = set()
        for body in [*bodies, *self.proxy.in_flight()]:
            with contextlib.suppress(ValueError, AttributeError):
                found.add(str(json.loads(body).get("jobId")))
        return found

    def stop(self) -> None:
        self.sampling.set()
        self.log.stop()
        for part in (self.proxy, self.stack, self.runway, self.heygen):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.stop()
        if self.client is not None:
            self.client.close()

    def kill_functions(self) -> None:
        """SIGKILL the function host's process group, then start it again on the same port."""
        proc = self.stack.functions
        self.host_back_at = math.inf  # no stranded verdicts while the host is down
        os.killpg(proc.pid, signal.SIGKILL)
        proc.proc.wait(timeout=10)
        proc.proc = None
        began = time.monotonic()
        proc.start()
        proc.wait_ready(http_ready(self.stack.url("generate_video")), 60)
        self.host_back_at = time.monotonic()
        self.result.kills.append(round(time.monotonic() - began, 1))

    # -- the app side -------------------------------------------------------------------------------

    def headers(self, function: str, uid: str | None = None, role: str | None = None) -> dict[str, str]:
        if uid is not None:
            return self.stack.user_headers(uid)
        url = f"{self.proxy.base_url}/{function}"  # the audience the functions expect
        token = self.stack.issuer.service_token(plan.service_account(role or "ops"), url)
        return {"Authorization": f"Bearer {token}"}

    def call(self, method: str, function: str, *, tries: int = 8, **kwargs: Any) -> requests.Response | None:
        """One call, repeated (bounded, with backoff) while the answer is lost or a 5xx of ours."""
        pause = 0.5
        for _ in range(tries):
            try:
                answer = requests.request(method, self.stack.url(function), timeout=(2, 60), **kwargs)
            except requests.RequestException:
                answer = None
            if answer is not None:
                self.result.responses.append(answer.content)
                if answer.status_code < 500 or answer.status_code == 503:
                    return answer
            time.sleep(pause)
            pause = min(pause * 2, 4.0)
        return None

    def submit(self, i: int) -> None:
        c = self.config
        rng = random.Random(c.seed * 1_000_003 + i)
        uid, key, seed = f"user-{i % 7}", f"chaos-{c.seed}-{i}", c.seed * 100_000 + i
        script = SCRIPT.format(years=3 + i % 20, team=2 + i % 9, cut=10 + i % 60, ref=f"{c.seed}-{i}")
        body = {
            "script": script,
            "seed": seed,
            "style": rng.choice(["professional", "friendly", "energetic"]),
        }
        body |= rng.choice(
            [{}, {"provider": "heygen"}, {"provider": "runwayml"}, {"kind": "clip", "quality": "premium"}]
        )
        job_id = job_id_for(uid, key)
        in_create = random.Random(f"{c.seed}-{i}-cancel-in-create").random() < c.p_cancel_in_create
        with self.lock:
            self.job_for_seed[seed], self.owners[job_id] = job_id, uid
            if in_create:
                self.cancel_in_create.add(job_id)
        answer = self.call(
            "POST", "generate_video", json=body, headers={**self.headers("", uid), "Idempotency-Key": key}
        )
        outcome = "lost" if answer is None else str(answer.status_code)
        with self.lock:
            self.result.submissions[outcome] = self.result.submissions.get(outcome, 0) + 1
            self.answered += 1
            if answer is not None and answer.status_code in (200, 202):
                self.accepted.add(job_id)
        if answer is not None and answer.status_code == 202 and rng.random() < c.p_cancel:
            time.sleep(rng.uniform(0.0, 1.0))
            self.call("POST", "cancel_video", json={"jobId": job_id}, headers=self.headers("", uid))

    def _create_seen(self, provider: str, ref: Any) -> None:
        """A simulator made a create (its answer not sent yet): cancel the job now when drawn."""
        with self.lock:
            job_id = self.job_for_seed.get(ref) if provider == "runwayml" else ref
            if job_id not in self.cancel_in_create:
                return
            self.cancel_in_create.discard(job_id)
            uid = self.owners[job_id]
        answered: list[int] = []

        def cancel() -> None:
            answer = self.call(
                "POST", "cancel_video", tries=1, json={"jobId": job_id}, headers=self.headers("", uid)
            )
            answered.append(0 if answer is None else answer.status_code)

        sender = threading.Thread(target=cancel, name="chaos-cancel-in-create", daemon=True)
        sender.start()
        sender.join(CANCEL_HOLD_S)
        outcome = f"{provider} {answered[0]}" if answered else f"{provider} still in flight"
        with self.lock:
            self.result.cancels_in_create[outcome] = self.result.cancels_in_create.get(outcome, 0) + 1

    def watch(self, job_id: str) -> None:
        self.call(
            "GET",
            "runwayml_status_check",
            tries=2,
            params={"jobId": job_id},
            headers=self.headers("", self.owners[job_id]),
        )

    def submit_all(self) -> None:
        """Submit every job from `clients` threads; kill the function host at even marks meanwhile."""
        c = self.config
        marks = [round(c.jobs * (k + 1) / (c.kills + 1)) for k in range(c.kills)]
        killer = threading.Thread(target=self._kill_at, args=(marks,), name="chaos-killer", daemon=True)
        killer.start()
        with concurrent.futures.ThreadPoolExecutor(max_workers=c.clients) as pool:
            list(pool.map(self.submit, range(c.jobs)))
        killer.join(timeout=120)

    def _kill_at(self, marks: list[int]) -> None:
        """Kill when `mark` submissions have been answered: the other clients are mid-request."""
        for mark in marks:
            ends = time.monotonic() + 300
            while self.answered < mark and time.monotonic() < ends:
                time.sleep(0.02)
            self.kill_functions()

    # -- the end --------------------------------------------------------------------------------------

    def jobs(self) -> dict[str, dict[str, Any]]:
        return {
            s.id: s.to_dict() for s in self.client.collection(self.stack.settings.jobs_collection).stream()
        }

    def settle(self) -> None:
        """Wait until every job ended or every deadline passed (bounded), watching a few meanwhile."""
        ends = time.monotonic() + self.config.max_wait_s
        while time.monotonic() < ends:
            jobs = self.jobs()
            live = [j for j, d in jobs.items() if d.get("status") not in checks.TERMINAL]
            if not live:
                return
            latest = max(jobs[j]["deadlineAt"].timestamp() for j in live)
            if time.time() > latest + 2:
                return
            for job_id in self.rng.sample(live, min(3, len(live))):
                if self.rng.random() < self.config.p_watch * 5 and job_id in self.owners:
                    self.watch(job_id)
            time.sleep(1.0)

    def cleanup(self) -> dict[str, Any]:
        answer = self.call(
            "POST",
            "runwayml_cleanup_task",
            json={},
            headers=self.headers("runwayml_cleanup_task", role="scheduler"),
        )
        return (
            {}
            if answer is None
            else {"status": answer.status_code, **(answer.json() if answer.content else {})}
        )

    def books(self) -> checks.Books:
        """The final documents and the providers' books; the final state closes both witnesses' logs."""
        self.sampling.set()
        self.log.stop()
        jobs_name = self.stack.settings.jobs_collection
        finals = {
            name: {s.id: s.to_dict() or {} for s in self.client.collection(name).stream()}
            for name in self.collections()
        }
        witnessed = {"listener": len(self.log.states), "sampler": len(self.samples.states)}
        for witness in (self.log, self.samples):
            for name, docs in finals.items():
                for doc_id, doc in docs.items():
                    witness.record(f"{name}/{doc_id}", doc)
        tasks = {
            (spec.name, doc_id): doc
            for spec in registry.specs()
            for doc_id, doc in finals[spec.records_collection(self.stack.settings)].items()
        }
        return checks.Books(
            jobs=finals[jobs_name],
            tasks=tasks,
            runway_seeds=dict(self.runway.seeds),
            job_for_seed=dict(self.job_for_seed),
            heygen_callbacks=self.heygen.callbacks(),
            heygen_by_key=dict(self.heygen.videos_by_key),
            accepted=set(self.accepted),
            states={
                f"{w}:{k}": v
                for w, log in (("listener", self.log), ("sampler", self.samples))
                for k, v in log.states.items()
            },
            jobs_collection=jobs_name,
            witnessed=witnessed,
            stranded=dict(self.stranded),
            output_bytes=SAMPLE_MP4.stat().st_size,
        )
