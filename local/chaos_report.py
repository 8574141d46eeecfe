"""What a chaos run found, and the table it prints (pure)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from local.chaos_checks import Books, Violation, by_invariant


@dataclass
class ChaosResult:
    seed: int
    jobs: int
    speed: float
    submissions: dict[str, int] = field(default_factory=dict)  # answer status (or "lost") -> count
    cancels_in_create: dict[str, int] = field(default_factory=dict)  # "<provider> <cancel answer>" -> count
    kills: list[float] = field(default_factory=list)  # seconds each restart of the function host took
    callers_gone: int = 0  # provider answers that found the function host gone (killed mid-request)
    cleanup: dict[str, Any] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    deliveries: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    books: dict[str, int] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    transitions: int = 0
    ended_by_cleanup: dict[str, int] = field(default_factory=dict)  # timed-out jobs by what they waited on
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase of the run
    wall_s: float = 0.0
    log_dir: str = ""
    responses: list[bytes] = field(default_factory=list, repr=False)  # every body the app side got

    def record(
        self, books: Books, violations: list[Violation], faults: Mapping[str, int], proxy: Mapping[str, int]
    ) -> None:
        self.violations = violations
        self.faults = dict(sorted(faults.items()))
        self.deliveries = dict(sorted(proxy.items()))
        self.outcomes = dict(Counter(str(doc.get("status")) for doc in books.jobs.values()).most_common())
        self.ended_by_cleanup = timed_out_causes(books)
        attempts = [a for doc in books.jobs.values() for a in doc.get("attempts") or ()]
        self.books = {
            "jobs": len(books.jobs),
            "attempts": len(attempts),
            "attemptsUnknown": sum(a.get("status") == "unknown" for a in attempts),
            "taskRecords": len(books.tasks),
            "runwaymlTasks": len(books.runway_seeds),
            "heygenVideos": len(books.heygen_callbacks),
            "stranded": len(books.stranded),
            "seenByListener": books.witnessed.get("listener", 0),
            "seenBySampler": books.witnessed.get("sampler", 0),
        }

    @property
    def violation_counts(self) -> dict[str, int]:
        return by_invariant(self.violations)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "jobs": self.jobs,
            "speed": self.speed,
            "submissions": self.submissions,
            "cancelsInCreate": self.cancels_in_create,
            "kills": self.kills,
            "providerAnswersLostWithTheHost": self.callers_gone,
            "cleanup": {k: v for k, v in self.cleanup.items() if k in ("status", "deadline", "crashWindows")},
            "faults": self.faults,
            "deliveries": self.deliveries,
            "outcomes": self.outcomes,
            "books": self.books,
            "violations": self.violation_counts,
            "violationDetails": [f"{v.invariant}: {v.detail}" for v in self.violations[:50]],
            "transitions": self.transitions,
            "timedOutWaitingOn": self.ended_by_cleanup,
            "phases": self.phases,
            "wallSeconds": self.wall_s,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


def timed_out_causes(books: Books) -> dict[str, int]:
    """What each timed-out job was waiting on, from the last state the listener saw before the end.

    `submitting`: a create whose record was never written (the host died around it); `active`: a
    provider task that never finished (a stuck task); `no attempt`: nothing was ever tried.
    """
    causes: Counter[str] = Counter()
    for job_id, doc in books.jobs.items():
        if doc.get("status") != "timed_out":
            continue
        logs = [
            books.states.get(f"{w}:{books.jobs_collection}/{job_id}", []) for w in ("listener", "sampler")
        ]
        seen = [s for s in max(logs, key=len) if s[0] != "timed_out"]
        attempts = seen[-1][2] if seen else ()
        causes[attempts[-1][1] if attempts else "no attempt"] += 1
    return dict(causes.most_common())


def _kills(result: ChaosResult) -> str:
    restarts = ", ".join(f"{s:g} s" for s in result.kills) or "-"
    lost = result.callers_gone
    return f"{len(result.kills)} (restarted in {restarts}; provider answers lost with the host {lost})"


def _witnesses(books: Mapping[str, int]) -> str:
    total = books.get("jobs", 0) + books.get("taskRecords", 0)
    listener, sampler = books.get("seenByListener", 0), books.get("seenBySampler", 0)
    return f"of {total} documents the listeners saw {listener} and the sampler {sampler} while running"


def _pairs(values: Mapping[str, Any]) -> str:
    return "  ".join(f"{k} {v}" for k, v in values.items()) or "-"


def render(result: ChaosResult) -> str:
    """The table `python -m local.chaos` prints."""
    proxy = result.deliveries
    copies = {k: proxy.get(k, 0) for k in ("deliveries", "duplicates", "lateCopies", "hostDown", "gaveUp")}
    cleanup = {
        k: result.cleanup.get(k) for k in ("status", "deadline", "crashWindows") if k in result.cleanup
    }
    rows = [
        ("jobs", f"{result.jobs} submitted at {result.speed:g}x simulator speed in {result.wall_s:g} s"),
        ("phases (s)", _pairs(result.phases)),
        ("submit answers", _pairs(result.submissions)),
        ("cancels in create", _pairs(result.cancels_in_create)),
        ("faults injected", _pairs(result.faults)),
        ("task deliveries", _pairs(copies)),
        ("host kills", _kills(result)),
        ("final cleanup", _pairs(cleanup)),
        ("outcomes", _pairs(result.outcomes)),
        ("timed out, had", _pairs(result.ended_by_cleanup)),
        ("books", _pairs({k: v for k, v in result.books.items() if not k.startswith("seenBy")})),
        ("witnesses", _witnesses(result.books)),
        ("distinct states", str(result.transitions)),
        ("violations", _pairs(result.violation_counts) + f"  (total {len(result.violations)})"),
        (
            "reproduce",
            f"python -m local.chaos --jobs {result.jobs} --seed {result.seed} --speed {result.speed:g} "
            f"--kills {len(result.kills)}",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    lines += [f"  ! {v.invariant}: {v.detail}" for v in result.violations[:20]]
    return "\n".join(lines)
