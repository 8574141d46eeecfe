"""What every benchmark shares: the section it returns, statistics, tables, and interleaved timing.

Section      title, goal, verdict (met / not met / n/a), markdown body, headline numbers
percentile   nearest-rank percentile of a list (no numpy needed)
table        a markdown table from a header and rows
interleave   run baseline and candidate in alternating rounds (ABAB), so drift hits both alike
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MET, NOT_MET, NOT_RUN, REPORTED = "met", "not met", "not run", "reported"


class MissingCode(RuntimeError):
    """The code a benchmark measures is not in the tree yet."""


@dataclass
class Section:
    """One benchmark's part of docs/PERFORMANCE.md."""

    key: str
    title: str
    goal: str
    verdict: str  # MET, NOT_MET or NOT_RUN
    headline: str  # one line: the ratio or figure the goal is about
    body: str  # markdown: method, sizes, tables, notes
    data: dict[str, Any] = field(default_factory=dict)  # raw numbers (tests read these)
    seconds: float = 0.0  # how long the benchmark took


BORDERLINE = 0.2  # a measured ratio this close to its goal is not decisive on a shared machine
MEMORY_SHARE_GOAL = 0.6  # a function's peak RSS at most this share of its memory setting


def judge(value: float, goal: float, *, at_least: bool) -> str:
    """MET or NOT_MET, marked "(borderline)" when `value` is within BORDERLINE of `goal`."""
    met = value >= goal if at_least else value <= goal
    verdict = MET if met else NOT_MET
    if abs(value - goal) <= BORDERLINE * goal:
        verdict += " (borderline)"
    return verdict


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile (`pct` in 0-100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; floats are written with up to 3 significant decimals by `fmt`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def interleave(variants: dict[str, Callable[[], list[float]]], rounds: int) -> dict[str, list[float]]:
    """Call each variant once per round, in alternating order (A B, B A, ...); samples are pooled."""
    names = list(variants)
    pooled: dict[str, list[float]] = {name: [] for name in names}
    for number in range(rounds):
        order = names if number % 2 == 0 else names[::-1]
        for name in order:
            pooled[name].extend(variants[name]())
    return pooled


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = fn()
    return time.perf_counter() - began, result


def machine() -> dict[str, Any]:
    """What the numbers were measured on, and how busy it was."""
    load = os.getloadavg()
    cpu = platform.processor() or platform.machine()
    model = _cpu_model()
    return {
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "cpu": model or cpu,
        "cores": os.cpu_count() or 1,
        "memory_gib": _memory_gib(),
        "load": load,
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        return math.nan
    return math.nan


def run_module(
    module: str,
    args: list[str],
    env: dict[str, str],
    timeout: float,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`python -m module args...` in the project's root with `env`, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
        check=False,
        preexec_fn=preexec_fn,
    )
