"""What the rest of the project knows about one provider: one `ProviderSpec`, owned by its package.

A provider package (`providers/runwayml/`, `providers/heygen/`) holds its wire format, status table
and errors, and exports one `SPEC`; `providers/registry.py` registers the specs in one place. Nothing
outside a provider's package names a fact about it: the polling envelope, how long its output links
live, how many ids one bulk status read takes, its default request budget, where its task records
are kept and how its webhooks are verified are all read from its spec::

    ProviderSpec
      name, priority            "heygen", 1 (tried first)
      build(settings)           the `Provider` client; `enabled(settings)` says whether its key is set
      envelope                  polling limits and policy (`Envelope`, used by tasks/schedule.py)
      link_ttl                  the shortest documented lifetime of its output links
      typical_render_s          how long a task usually takes, queue included (the progress and
                                finish-time estimate of `jobs/progress.py` when it reports none)
      bulk_ids                  ids per bulk status read, or None (no bulk call: one read per task)
      default_quota             the project's own request budget, `COUNT/SECONDS,...`
      quota_field               the Settings field that overrides it (None: the default only)
      records / records_field   the Firestore collection of its task records, and its setting
      traits                    what the selection engine rewards it for (`providers/selection.py`)
      webhook                   how a delivery is verified and read (None: it sends none)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from config import Settings
from providers.base import Provider

POLICIES = ("seed_backoff", "sdk_fixed", "stepped", "adaptive")
DEFAULT_RENDER_S = 300.0  # a provider that names no typical render time


@dataclass(frozen=True)
class Envelope:
    """The limits of polling one provider's tasks, and the policy used inside them (tasks/schedule.py)."""

    first_delay_s: float
    min_delay_s: float
    max_delay_s: float
    factor: float
    max_polls: int
    max_elapsed_s: float
    update_interval_s: float = 0.0  # the provider refreshes a task at most this often
    steps: tuple[tuple[float, float], ...] = ()  # (from elapsed_s, delay_s), ascending
    typical_duration_s: float | None = None
    render_range_s: tuple[float, float] | None = None  # shortest and longest render before any history
    completion_margin_s: float = 1.0  # aim this long after the estimated completion
    queue_s: float = 0.0  # a task usually waits this long before it starts (progress counts from then)
    policy: str = "adaptive"

    def __post_init__(self) -> None:
        if not 0 < self.min_delay_s <= self.first_delay_s <= self.max_delay_s:
            raise ValueError("need 0 < min_delay_s <= first_delay_s <= max_delay_s")
        if self.factor < 1 or self.max_polls < 1 or self.max_elapsed_s <= 0:
            raise ValueError("need factor >= 1, max_polls >= 1 and max_elapsed_s > 0")
        if not 0 <= self.update_interval_s <= self.max_delay_s or self.completion_margin_s < 0:
            raise ValueError("need 0 <= update_interval_s <= max_delay_s and completion_margin_s >= 0")
        if self.queue_s < 0:
            raise ValueError("need queue_s >= 0")
        if self.render_range_s is not None and not 0 < self.render_range_s[0] <= self.render_range_s[1]:
            raise ValueError("need 0 < shortest <= longest in render_range_s")
        starts = [start for start, _ in self.steps]
        if starts != sorted(starts) or any(d <= 0 for _, d in self.steps):
            raise ValueError("steps must be (from elapsed_s, delay_s > 0) in ascending order")
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}; one of {POLICIES}")


@dataclass(frozen=True)
class WebhookHint:
    """A verified delivery, reduced to what it hints at: an event id and the provider task it names.

    `task_id` None means the event is of a kind that says nothing about a task (acknowledged, ignored).
    """

    event_id: str
    task_id: str | None


# (raw body, headers, secrets, now as unix seconds, tolerance in seconds) -> the hint; raises
# `providers.signatures.SignatureError` for a delivery that must be refused.
WebhookReader = Callable[[bytes, Mapping[str, str], tuple[Any, ...], float, int], WebhookHint]


@dataclass(frozen=True)
class Webhook:
    read: WebhookReader
    secrets_field: str  # the Settings field holding its signing secrets (comma-separated, for rotation)


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    priority: int
    build: Callable[[Settings], Provider]
    enabled: Callable[[Settings], bool]
    envelope: Envelope
    link_ttl: timedelta
    default_quota: str
    records: str
    traits: frozenset[str] = frozenset()
    bulk_ids: int | None = None
    quota_field: str | None = None
    records_field: str | None = None
    webhook: Webhook | None = None
    typical_render_s: float = DEFAULT_RENDER_S

    def __post_init__(self) -> None:
        if self.typical_render_s <= 0:
            raise ValueError("need typical_render_s > 0")

    def quota(self, settings: Settings) -> str:
        """The request budget in force: its setting when there is one and it is set, else the default."""
        value = getattr(settings, self.quota_field) if self.quota_field else None
        return value if value is not None else self.default_quota

    def records_collection(self, settings: Settings) -> str:
        """The Firestore collection of this provider's task records."""
        value = getattr(settings, self.records_field) if self.records_field else None
        return value if value is not None else self.records
