"""The chaos run's books: a transition log from Firestore listeners, and the final accounting (pure).

`TransitionLog` keeps, per document, every distinct state a witness saw, in the order it saw them.
A chaos run has two witnesses, each with its own log (merging them would interleave two clocks):
the Firestore listeners (`on_snapshot` on the jobs and both provider-task collections) and a
sampler that reads every document every few seconds; both logs end with the final state. Either
log is a subsequence of what happened (a listener coalesces changes that follow each other
closely; a sampler sees one state per round): a backward move it shows is real, and one that both
miss would have to be undone again before either looked.

`account(...)` checks, in the spirit of Jepsen's queue checks, and names each violation::

    lost           a job is not terminal after its deadline plus one cleanup run, or an accepted
                   job is not in Firestore at all, or a job was stranded during the run: the
                   provider had finished its task, the job was not terminal, and nothing was
                   scheduled to look at it (no poll or finalize task in the Cloud Tasks queue nor
                   being delivered by the proxy) for `STRANDED_GRACE_S` while its document did not
                   change (`stranded_reason` decides from one document; the driver watches)
    double_charge  more than one provider create for one attempt (a job tries each provider at
                   most once): RunwayML tasks per job (matched by the create's seed), HeyGen videos
                   per job (callback id) and per Idempotency-Key
    backward       a job or task record moved back (status rank or progress) or changed after a
                   terminal status; an attempt reopened or changed after it closed
    counts         jobs, attempts, task records and the providers' tasks disagree; a stored video
                   is not the size of the provider's file (a truncated download kept)
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TERMINAL = {"completed", "failed", "cancelled", "timed_out"}
RANK = {"queued": 0, "processing": 1} | dict.fromkeys(TERMINAL, 2)
ATTEMPT_RANK = {"submitting": 0, "active": 1} | dict.fromkeys(
    ("succeeded", "failed", "cancelled", "unknown"), 2
)
INVARIANTS = ("lost", "double_charge", "backward", "counts")
CLOSED = ("succeeded", "failed", "cancelled")  # attempts whose provider task may have ended
State = tuple[str, float, tuple[tuple[str, str], ...]]  # status, progress, ((attempt id, status), ...)


@dataclass(frozen=True)
class Violation:
    invariant: str
    detail: str


class TransitionLog:
    """Distinct states of every job and task document, in the order the listeners saw them."""

    def __init__(self) -> None:
        self.states: dict[str, list[State]] = defaultdict(list)
        self.events = 0
        self._lock = threading.Lock()
        self._watches: list[Any] = []

    def listen(self, client: Any, collections: Iterable[str]) -> None:
        for name in collections:
            self._watches.append(client.collection(name).on_snapshot(self._on_snapshot(name)))

    def stop(self) -> None:
        for watch in self._watches:
            watch.unsubscribe()
        self._watches.clear()

    def _on_snapshot(self, collection: str) -> Any:
        def callback(docs: Any, changes: Any, read_time: Any) -> None:
            for change in changes:
                if change.type.name != "REMOVED":
                    self.record(f"{collection}/{change.document.id}", change.document.to_dict() or {})

        return callback

    def record(self, key: str, doc: Mapping[str, Any]) -> None:
        attempts = tuple((str(a.get("attemptId")), str(a.get("status"))) for a in doc.get("attempts") or ())
        state = (str(doc.get("status")), float(doc.get("progress") or 0.0), attempts)
        with self._lock:
            self.events += 1
            if not self.states[key] or self.states[key][-1] != state:
                self.states[key].append(state)


def backward_moves(states: Mapping[str, list[State]]) -> list[Violation]:
    """Every step of the log that goes back, or changes what was final."""
    found = []
    for key, seen in states.items():
        for (s1, p1, a1), (s2, p2, a2) in itertools.pairwise(seen):
            if s1 in TERMINAL and (s2, p2) != (s1, p1):
                found.append(Violation("backward", f"{key}: {s1} {p1} -> {s2} {p2} after terminal"))
            elif RANK.get(s2, -1) < RANK.get(s1, -1) or p2 < p1:
                found.append(Violation("backward", f"{key}: {s1} {p1} -> {s2} {p2}"))
            found.extend(_attempt_moves(key, dict(a1), dict(a2)))
    return found


def _attempt_moves(key: str, before: Mapping[str, str], after: Mapping[str, str]) -> list[Violation]:
    found = []
    for attempt_id, old in before.items():
        new = after.get(attempt_id)
        if new is None:
            found.append(Violation("backward", f"{key}: attempt {attempt_id} disappeared"))
        elif ATTEMPT_RANK.get(new, -1) < ATTEMPT_RANK.get(old, -1) or (old != new and ATTEMPT_RANK[old] == 2):
            found.append(Violation("backward", f"{key}: attempt {attempt_id} {old} -> {new}"))
    return found


@dataclass
class Books:
    """Everything the accounting reads at the end of a run."""

    jobs: dict[str, dict[str, Any]]  # job id -> final document
    tasks: dict[tuple[str, str], dict[str, Any]]  # (provider, task id) -> final task record
    runway_seeds: dict[str, int | None]  # RunwayML task id -> its create's seed
    job_for_seed: dict[int, str]  # the seed each job was given -> job id
    heygen_callbacks: dict[str, str | None]  # HeyGen video id -> callback id (= job id)
    heygen_by_key: Mapping[str, int]  # Idempotency-Key -> videos made
    accepted: set[str] = field(default_factory=set)  # job ids answered 200/202 (or 503 with a job)
    states: Mapping[str, list[State]] = field(default_factory=dict)  # "<collection>/<id>" -> states
    jobs_collection: str = "enhanced_video_jobs"
    witnessed: dict[str, int] = field(default_factory=dict)  # witness -> documents it saw during the run
    stranded: dict[str, str] = field(default_factory=dict)  # job id -> how it was stranded (driver)
    output_bytes: int | None = None  # the size of the file the providers serve (None: not checked)


def stranded_reason(doc: Mapping[str, Any], finished: Mapping[str, Mapping[str, str]]) -> str | None:
    """Why this job waits on a provider task that has ended (`finished`: provider -> task id ->
    status), or None. A job in its crash window (last attempt `submitting`: the cleanup's case) or
    one whose task the provider still runs waits for a reason; a job that is `finalizing`, or whose
    last attempt names a task the provider has ended, waits only for a poll or a finalize task.
    """
    if doc.get("status") in TERMINAL:
        return None
    attempts = doc.get("attempts") or []
    last = attempts[-1] if attempts else {}
    provider, task_id, status = str(last.get("provider")), last.get("taskId"), last.get("status")
    if doc.get("finalizing"):
        return f"finalizing ({provider} task {task_id} ended)"
    ended = finished.get(provider, {}).get(str(task_id)) if task_id else None
    if ended is not None and status in ("active", *CLOSED):
        return f"attempt {status}, {provider} task {task_id} is {ended}"
    return None


def account(books: Books) -> list[Violation]:
    """Every violation of the run's invariants (see the module docstring); empty when all hold."""
    return [
        *_lost(books),
        *_double_charges(books),
        *backward_moves(books.states),
        *_counts(books),
    ]


def _lost(books: Books) -> list[Violation]:
    found = [
        Violation("lost", f"job {j} was accepted but is not stored") for j in books.accepted - set(books.jobs)
    ]
    found += [Violation("lost", f"job {j} was stranded: {why}") for j, why in sorted(books.stranded.items())]
    for job_id, doc in books.jobs.items():
        if doc.get("status") not in TERMINAL:
            found.append(Violation("lost", f"job {job_id} is still {doc.get('status')}"))
        elif any(a.get("status") in ("submitting", "active") for a in doc.get("attempts") or ()):
            found.append(Violation("lost", f"job {job_id} is {doc['status']} with an attempt still open"))
    return found


def provider_creates(books: Books) -> dict[tuple[str, str], list[str]]:
    """(job id, provider) -> the provider task ids made for it, as the providers count them."""
    made: dict[tuple[str, str], list[str]] = defaultdict(list)
    for task_id, seed in books.runway_seeds.items():
        made[(books.job_for_seed.get(seed, f"unknown-seed-{seed}"), "runwayml")].append(task_id)
    for video_id, job_id in books.heygen_callbacks.items():
        made[(str(job_id), "heygen")].append(video_id)
    return made


def _double_charges(books: Books) -> list[Violation]:
    found = [
        Violation("double_charge", f"{provider} made {len(ids)} tasks for job {job_id}: {ids}")
        for (job_id, provider), ids in provider_creates(books).items()
        if len(ids) > 1
    ]
    found += [
        Violation("double_charge", f"HeyGen made {n} videos for Idempotency-Key {key}")
        for key, n in books.heygen_by_key.items()
        if n > 1
    ]
    return found


def _counts(books: Books) -> list[Violation]:
    found: list[Violation] = []
    made = provider_creates(books)
    referenced: Counter[tuple[str, str]] = Counter()
    for job_id, doc in books.jobs.items():
        attempts = doc.get("attempts") or []
        providers = [a.get("provider") for a in attempts]
        if len(providers) != len(set(providers)):
            found.append(Violation("counts", f"job {job_id} tried one provider twice: {providers}"))
        for attempt in attempts:
            found += _attempt_counts(books, job_id, attempt, made)
            if attempt.get("taskId"):
                referenced[(attempt["provider"], attempt["taskId"])] += 1
    for (job_id, provider), ids in made.items():
        tried = job_id in books.jobs and provider in [
            a.get("provider") for a in books.jobs[job_id].get("attempts") or []
        ]
        if not tried:
            found.append(
                Violation("counts", f"{provider} task(s) {ids} for job {job_id}, which has no such attempt")
            )
    for key in books.tasks:
        if referenced[key] != 1:
            found.append(Violation("counts", f"task record {key} is named by {referenced[key]} attempts"))
    return found + _stored_sizes(books)


def _stored_sizes(books: Books) -> list[Violation]:
    """Every stored video has the size of the provider's file (a truncated download is not kept)."""
    found = []
    for job_id, doc in books.jobs.items():
        output = doc.get("output") or {}
        if books.output_bytes is None or output.get("source") != "storage":
            continue
        size = output.get("sizeBytes")
        if size != books.output_bytes:
            detail = f"job {job_id} stored {size} bytes of a {books.output_bytes}-byte video"
            found.append(Violation("counts", detail))
    return found


def _attempt_counts(
    books: Books, job_id: str, attempt: Mapping[str, Any], made: Mapping[tuple[str, str], list[str]]
) -> list[Violation]:
    provider, task_id, status = attempt.get("provider"), attempt.get("taskId"), attempt.get("status")
    at_provider = made.get((job_id, str(provider)), [])
    if task_id is None:
        return []
    record = books.tasks.get((str(provider), task_id))
    problems = []
    if record is None:
        problems.append(f"attempt {attempt.get('attemptId')} names task {task_id} with no record")
    elif (record.get("jobId"), record.get("attemptId")) != (job_id, attempt.get("attemptId")):
        problems.append(f"task record {task_id} belongs to {record.get('jobId')}/{record.get('attemptId')}")
    if task_id not in at_provider:
        problems.append(f"attempt {attempt.get('attemptId')} names task {task_id} that {provider} never made")
    if status == "unknown" and task_id is not None:
        problems.append(f"attempt {attempt.get('attemptId')} is unknown but has a task id")
    return [Violation("counts", f"job {job_id}: {p}") for p in problems]


def by_invariant(violations: Iterable[Violation]) -> dict[str, int]:
    counts = dict.fromkeys(INVARIANTS, 0)
    for violation in violations:
        counts[violation.invariant] = counts.get(violation.invariant, 0) + 1
    return counts
