"""The project's own request budget per provider, in fixed windows aligned to the epoch (pure).

Limits are written `COUNT/SECONDS`, comma-separated, one per window, e.g. `25/60,100/3600,500/86400`
(25 a minute, 100 an hour, 500 a day). Each provider's default is its spec's `default_quota`; a
setting (`RUNWAYML_QUOTA`, `HEYGEN_QUOTA`) overrides it: `registry.spec(name).quota(settings)`.

Windows are fixed, not sliding: window `b` of length `L` covers `[b*L, (b+1)*L)` seconds since
1970-01-01T00:00Z, so minutes start on the minute and days at 00:00 UTC. `bucket_of(now, L)` is `b`;
a window's counter is split over shards, documents `<provider>_<m|h|d>_<b>_<k>` (`jobs/guards.py`),
each holding its share of the limit (`shard_limits`), so no one document takes every request.

A spend cap (`SPEND_CAP_USD_PER_DAY` in total, `PROVIDER_SPEND_CAPS_USD_PER_DAY` per provider) stops
new creates for the rest of the UTC day once the estimated cost of those sent today reaches it.

A request is allowed when every window is below its limit. A refusal names the window that keeps it
refused longest (when several are full, all must reset) and `retry_after_s`, the exact time until
that window ends. A limit of 0 is a value: the provider gets no requests at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WINDOW = re.compile(r"\s*(?P<count>[0-9]+)\s*/\s*(?P<seconds>[0-9]+)\s*")
_NAMES = {60: ("minute", "m"), 3600: ("hour", "h"), 86400: ("day", "d")}


@dataclass(frozen=True, order=True)
class Window:
    """One budget: at most `limit` requests per fixed window of `seconds`."""

    seconds: int
    limit: int

    @property
    def name(self) -> str:
        return _NAMES[self.seconds][0] if self.seconds in _NAMES else f"{self.seconds}s"

    @property
    def code(self) -> str:
        return _NAMES[self.seconds][1] if self.seconds in _NAMES else f"{self.seconds}s"


@dataclass(frozen=True)
class QuotaDecision:
    allowed: bool
    retry_after_s: float | None = None
    window: str | None = None

    def to_doc(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "retryAfterS": self.retry_after_s, "window": self.window}


ALLOWED = QuotaDecision(allowed=True)


def parse_limits(spec: str) -> tuple[Window, ...]:
    """`"25/60,100/3600"` -> windows sorted by length; `ValueError` on anything else."""
    windows = sorted(_parse_window(part) for part in spec.split(",") if part.strip())
    if not windows:
        raise ValueError("a quota needs at least one COUNT/SECONDS window")
    if len({w.seconds for w in windows}) != len(windows):
        raise ValueError(f"quota {spec!r} names the same window length twice")
    return tuple(windows)


def _parse_window(part: str) -> Window:
    match = _WINDOW.fullmatch(part)
    if match is None or int(match["seconds"]) <= 0:
        raise ValueError(f"quota window {part.strip()!r} is not COUNT/SECONDS (e.g. 25/60)")
    return Window(seconds=int(match["seconds"]), limit=int(match["count"]))


def bucket_of(now: datetime, seconds: int) -> int:
    """Number of the fixed window of `seconds` that contains `now` (exact, integer arithmetic)."""
    return (now - EPOCH) // timedelta(seconds=seconds)


def window_start(now: datetime, seconds: int) -> datetime:
    return EPOCH + timedelta(seconds=bucket_of(now, seconds) * seconds)


def window_end(now: datetime, seconds: int) -> datetime:
    return window_start(now, seconds) + timedelta(seconds=seconds)


def counter_id(provider: str, window: Window, now: datetime, shard: int = 0) -> str:
    """Id of one shard's counter document of `window` at `now`, e.g. `runwayml_m_29452320_3`."""
    return f"{provider}_{window.code}_{bucket_of(now, window.seconds)}_{shard}"


def spend_id(provider: str, now: datetime, shard: int) -> str:
    """Id of one shard of the provider's estimated spend on the UTC day of `now`."""
    return f"{provider}_usd_{bucket_of(now, 86400)}_{shard}"


def shard_count(limits: Sequence[Window], shards: int) -> int:
    """How many shards a budget is split over: at most `shards`, and no more than its smallest
    limit, so every shard has a share of every window (0 when some limit is 0)."""
    return min(shards, *(w.limit for w in limits))


def shard_limits(limits: Sequence[Window], shard: int, count: int) -> dict[Window, Window]:
    """Each window's share held by `shard` of `count`: the shares of a window add up to its limit."""
    return {w: Window(w.seconds, w.limit // count + (1 if shard < w.limit % count else 0)) for w in limits}


NEAR_CAP = 0.8  # the share of a spend cap that warns operators (`spend_near_cap`)


def near_cap(
    spend: Mapping[str, float], caps: Mapping[str, float | None], total_cap: float, provider: str, usd: float
) -> str | None:
    """Which spend ("provider spend" or "total spend") `usd` more takes past `NEAR_CAP` of its cap."""
    cap = caps.get(provider)
    before = spend.get(provider, 0.0)
    if cap is not None and before < NEAR_CAP * cap <= before + usd:
        return "provider spend"
    before = sum(spend.values())
    if before < NEAR_CAP * total_cap <= before + usd:
        return "total spend"
    return None


def spend_refusal(
    spend: Mapping[str, float],
    caps: Mapping[str, float | None],
    total_cap: float,
    provider: str,
    usd: float,
    now: datetime,
) -> QuotaDecision | None:
    """Refused until the UTC day ends when `usd` more would pass the provider's cap or the total."""
    wait = (window_end(now, 86400) - now).total_seconds()
    cap = caps.get(provider)
    if cap is not None and spend.get(provider, 0.0) + usd > cap + 1e-9:
        return QuotaDecision(allowed=False, retry_after_s=wait, window="provider spend")
    if sum(spend.values()) + usd > total_cap + 1e-9:
        return QuotaDecision(allowed=False, retry_after_s=wait, window="total spend")
    return None


def decide(counts: Mapping[str, int], limits: Sequence[Window], now: datetime) -> QuotaDecision:
    """Allowed when every window (counts by window name; missing = 0) is below its limit."""
    full = [w for w in limits if counts.get(w.name, 0) >= w.limit]
    if not full:
        return ALLOWED
    binding = max(full, key=lambda w: window_end(now, w.seconds))
    wait = (window_end(now, binding.seconds) - now).total_seconds()
    return QuotaDecision(allowed=False, retry_after_s=wait, window=binding.name)


def describe(counts: Mapping[str, int], limits: Sequence[Window], now: datetime) -> dict[str, Any]:
    """Monitoring view: per window its count, limit, what remains and when it resets."""
    return {
        w.name: {
            "count": counts.get(w.name, 0),
            "limit": w.limit,
            "remaining": max(0, w.limit - counts.get(w.name, 0)),
            "resetsAt": window_end(now, w.seconds),
        }
        for w in limits
    }
