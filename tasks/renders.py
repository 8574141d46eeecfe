"""What recent renders of each provider took, kept in memory by the polling worker.

    RenderHistory.record(provider, render_s, started_late)   when a poll sees a task finished
    RenderHistory.prior(provider) -> RenderPrior | None       None until `min_samples` renders

The prior feeds the adaptive schedule (tasks/schedule.py): the first look comes when the shortest
recent render could end, and a task seen running is aimed at from its start only while tasks have
not been starting late. Each instance learns on its own and starts from the envelope's
`render_range_s`; the last `size` renders count, so the prior follows the provider's load.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from statistics import quantiles

from tasks.schedule import RenderPrior

SHORTEST_QUANTILE = 5  # percent: the prior's shortest render
LONGEST_QUANTILE = 95


class RenderHistory:
    def __init__(self, *, size: int = 100, min_samples: int = 20) -> None:
        self.size, self.min_samples = size, max(min_samples, 2)  # quantiles need two
        self._renders: defaultdict[str, deque[tuple[float, bool]]] = defaultdict(lambda: deque(maxlen=size))
        self._lock = threading.Lock()

    def record(self, provider: str, render_s: float, started_late: bool) -> None:
        with self._lock:
            self._renders[provider].append((render_s, started_late))

    def prior(self, provider: str) -> RenderPrior | None:
        with self._lock:
            seen = list(self._renders.get(provider, ()))
        if len(seen) < self.min_samples:
            return None
        cuts = quantiles(sorted(r for r, _ in seen), n=100, method="inclusive")
        late = sum(1 for _, was_late in seen if was_late) / len(seen)
        return RenderPrior(cuts[SHORTEST_QUANTILE - 1], cuts[LONGEST_QUANTILE - 1], late)
