"""The demo's closing summary (pure): one job in detail, or a table for several."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops import render
from providers.prompts import PromptResult


@dataclass
class Outcome:
    job: dict[str, Any]  # the last job view from runwayml_status_check
    seconds: float  # from submission to the end (or to the timeout)
    timed_out: bool = False
    reads: int = 0  # provider status reads applied (polls, status checks, webhooks)
    polls: int = 0  # of which Cloud Tasks polls
    file: Path | None = None
    size: int = 0
    problem: str | None = None  # why no file

    @property
    def ok(self) -> bool:
        return self.job.get("status") == "completed" and self.file is not None


def _where(path: Path | None) -> str:
    if path is None:
        return "-"
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def _attempts(job: dict[str, Any]) -> str:
    parts = []
    for attempt in job.get("attempts") or []:
        error = attempt.get("error") or {}
        why = f" ({error.get('code')})" if error else ""
        parts.append(f"#{attempt.get('number')} {attempt.get('provider')} {attempt.get('status')}{why}")
    return ", ".join(parts) or "-"


def _cost(job: dict[str, Any]) -> str:
    return (
        f"estimated {render.usd(job.get('estimatedCostUsd'))}, actual {render.usd(job.get('actualCostUsd'))}"
    )


def detail(outcome: Outcome) -> str:
    job = outcome.job
    status = job.get("status")
    if outcome.timed_out:
        status = f"{status} (still running when the demo stopped waiting)"
    lines = [
        ("job", job.get("jobId")),
        ("status", status),
        ("provider", job.get("provider") or "-"),
    ]
    for index, reason in enumerate(render.selection_reasons(job.get("selection"), job.get("provider"))):
        lines.append(("why" if index == 0 else "", reason))
    lines += [
        ("attempts", _attempts(job)),
        ("polls", f"{outcome.reads} provider status reads, {outcome.polls} of them Cloud Tasks polls"),
        ("time", f"{outcome.seconds:.1f} s from submission"),
        ("cost", _cost(job)),
    ]
    if job.get("error"):
        lines.append(("error", f"{job['error'].get('code')}: {job['error'].get('message')}"))
    video = f"{_where(outcome.file)} ({outcome.size / 1024:.0f} KiB)" if outcome.file else outcome.problem
    lines.append(("video", video or "-"))
    width = max(len(label) for label, _ in lines)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in lines)


def summary_table(outcomes: list[Outcome]) -> str:
    header = ("job", "status", "provider", "attempts", "reads/polls", "time", "est.", "actual", "video")
    rows = [
        [
            o.job.get("jobId", "")[:12],
            o.job.get("status"),
            o.job.get("provider") or "-",
            _attempts(o.job),
            f"{o.reads}/{o.polls}",
            f"{o.seconds:.1f} s",
            render.usd(o.job.get("estimatedCostUsd")),
            render.usd(o.job.get("actualCostUsd")),
            _where(o.file) if o.file else (o.problem or "-"),
        ]
        for o in outcomes
    ]
    return render.table(header, rows)


def prompt_lines(prompt: PromptResult) -> str:
    """The prompt the script makes (as the service builds it with the rules writer) and its score."""
    lines = [
        ("prompt", prompt.runway_prompt),
        ("with image", prompt.runway_image_prompt),
        ("score", f"{prompt.quality_score}/100 ({prompt.style}, {prompt.camera_motion})"),
    ]
    lines += [("", reason) for reason in prompt.score_reasons]
    width = max(len(label) for label, _ in lines)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in lines)


def report(
    outcomes: list[Outcome], *, total_s: float, stop_s: float, prompt: PromptResult | None = None
) -> str:
    body = detail(outcomes[0]) if len(outcomes) == 1 else summary_table(outcomes)
    if prompt is not None:
        body = f"{prompt_lines(prompt)}\n\n{body}"
    done = sum(1 for o in outcomes if o.ok)
    verdict = f"{done}/{len(outcomes)} video(s) made" if done else "no video was made"
    return f"\n{body}\n\n{verdict}; the whole demo took {total_s:.1f} s (stack stopped in {stop_s:.1f} s)"
