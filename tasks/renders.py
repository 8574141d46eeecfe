"""What recent renders of each provider took, kept in memory by the polling worker.

    RenderHistory.record(provider, render)                   when a poll sees a task finished
    RenderHistory.prior(provider) -> RenderPrior | None       None until `min_samples` renders

The prior feeds the adaptive schedule (tasks/schedule.py): the first look comes when the shortest
recent render could end, a task seen running is aimed at from its start only while tasks have not
been starting late, and from a snapshot as old as recent first figures were (where the provider's
refresh grid lies). Each instance learns on its own and starts from the envelope's
`render_range_s`; the last `size` renders count, so the prior follows the provider's load.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict, deque
from statistics import quantiles

from tasks.schedule import Render, RenderPrior

SHORTEST_QUANTILE = 5  # percent: the prior's shortest render
LONGEST_QUANTILE = 95
AGE_MARGIN_S = 1.25  # a quarter of Runway's 5 s refresh


class RenderHistory:
    def __init__(self, *, size: int = 100, min_samples: int = 20) -> None:
        self.min_samples = max(min_samples, 2)  # quantiles need two
        self._renders: defaultdict[str, deque[Render]] = defaultdict(lambda: deque(maxlen=size))
        self._lock = threading.Lock()

    def record(self, provider: str, render: Render) -> None:
        if not math.isfinite(render.render_s):  # figures too close to tell a length from
            return
        with self._lock:
            self._renders[provider].append(render)

    def prior(self, provider: str) -> RenderPrior | None:
        with self._lock:
            seen = list(self._renders.get(provider, ()))
        if len(seen) < self.min_samples:
            return None
        shortest, longest = _range([r.render_s for r in seen])
        ages = [r.snapshot_age_s for r in seen if r.snapshot_age_s is not None]
        late = sum(1 for r in seen if r.started_late) / len(seen)
        return RenderPrior(shortest, longest, late, _widened(ages) if len(ages) >= self.min_samples else None)


def _widened(ages: list[float]) -> tuple[float, float]:
    """The ages seen, widened by AGE_MARGIN: the tasks that show an age are those whose aimed look came
    early, which favours fresh snapshots, and a look aimed from too narrow a range comes late."""
    return max(0.0, min(ages) - AGE_MARGIN_S), max(ages) + AGE_MARGIN_S


def _range(values: list[float]) -> tuple[float, float]:
    cuts = quantiles(sorted(values), n=100, method="inclusive")
    return cuts[SHORTEST_QUANTILE - 1], cuts[LONGEST_QUANTILE - 1]
