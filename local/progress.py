"""Live progress of demo jobs: one line redrawn in place on a terminal, plain lines otherwise."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, TextIO

BAR_WIDTH = 28
TERMINAL = ("completed", "failed", "cancelled", "timed_out")


def bar(percent: float, width: int = BAR_WIDTH) -> str:
    filled = round(max(0.0, min(percent, 100.0)) / 100 * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _progress(job: Mapping[str, Any]) -> float:
    return float(job.get("progress") or 0.0)


def status_line(jobs: Mapping[str, Mapping[str, Any]], elapsed_s: float) -> str:
    """The one-line view: a bar, percent, status and provider (or counts, for several jobs)."""
    if not jobs:
        return f"{bar(0)}   0%  submitting  {elapsed_s:5.1f} s"
    if len(jobs) == 1:
        job = next(iter(jobs.values()))
        provider = job.get("provider") or "-"
        percent = _progress(job)
        return (
            f"{bar(percent)} {percent:3.0f}%  {job.get('status', '?'):<10}  {provider:<8}  {elapsed_s:5.1f} s"
        )
    percent = sum(_progress(j) for j in jobs.values()) / len(jobs)
    by_status = Counter(str(j.get("status", "?")) for j in jobs.values())
    by_provider = Counter(str(j.get("provider") or "-") for j in jobs.values())
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
    providers = ", ".join(f"{p} {n}" for p, n in sorted(by_provider.items()))
    return f"{bar(percent)} {percent:3.0f}%  {statuses}  ({providers})  {elapsed_s:5.1f} s"


def change_line(job: Mapping[str, Any]) -> str:
    return f"{job.get('jobId')}: {job.get('status')} {_progress(job):.0f}% {job.get('provider') or '-'}"


class ProgressDisplay:
    """Redraws `status_line` in place on a TTY; prints one line per job change elsewhere."""

    def __init__(self, stream: TextIO, *, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self._seen: dict[str, str] = {}
        self._drawn = False

    def update(self, jobs: Mapping[str, Mapping[str, Any]], elapsed_s: float) -> None:
        if self.tty:
            self.stream.write("\r" + status_line(jobs, elapsed_s) + "\x1b[K")
            self._drawn = True
        else:
            for job_id, job in jobs.items():
                line = change_line(job)
                if self._seen.get(job_id) != line:
                    self._seen[job_id] = line
                    self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
