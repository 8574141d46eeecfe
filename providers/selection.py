"""Ranking of providers for one request, from explicit state (pure: no I/O, the time passed in).

Every provider that is not excluded gets points; the highest total is tried first, the rest are the
fallback order. Ties go to the lower priority number, then to the name, so a ranking is
deterministic. Each factor leaves a reason such as `priority 1 (+20)` for the job and the demo.

    factor       rule                                                            points
    priority     priority 1 / 2 / 3 and above                                    +20 / +10 / 0
    health       circuit closed / half-open (cool-down over, on trial) / open    0 / -15 / excluded
    quality      premium requested, provider strong at premium                   +15
    content      talking avatar reading the CV requested, provider makes them    +40
                 creative style (energetic, creative, artistic), creative clips  +20
                 short clip (4-10 s), provider makes short clips                 +5
    cost         +5 x cheapest estimate / this estimate (unknown estimate: 0)    0..+5
    user tier    free tier: the most expensive estimate, when estimates differ  -10
    preference   the user asked for this provider                                +70

`traits` (what a provider is good at) come from its spec (`ProviderSpec.traits`). The project's own
request budget is not a factor here: it is taken after the ranking, in ranked order
(`jobs/generate.py`), so a provider over budget is skipped without a read for every ranking.

The preference outweighs any difference that priority, quality, content, cost and tier can make
between HeyGen and RunwayML (at most 65 points), so only poor health can still put a preferred
provider second.

Excluded, whatever the preference (reason recorded in `Ranking.excluded`): circuit open, refused by
the provider's own validation, duration outside what the provider makes.

With the registered specs' traits (HeyGen: avatar; RunwayML: premium, creative, short clips) and
priorities (HeyGen 1, RunwayML 2) this gives::

    default (professional, standard, 5 s)     heygen 25    runwayml 7.8 (free) / 17.8 (pro)
    premium, pro tier                         heygen 25    runwayml 32.8
    energetic 5 s clip, free tier             heygen 25    runwayml 27.8
    talking avatar, energetic, premium, pro   heygen 65    runwayml 52.8
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from providers.base import Capabilities
from providers.circuit import CLOSED, CircuitState, Phase, effective_state

AVATAR, PREMIUM, CREATIVE, SHORT_CLIPS = "avatar", "premium", "creative", "short_clips"  # trait names
CREATIVE_STYLES = frozenset({"energetic", "creative", "artistic"})
SHORT_CLIP_S = (4, 10)

PRIORITY_POINTS = {1: 20.0, 2: 10.0}
HALF_OPEN_POINTS = -15.0
PREMIUM_POINTS, AVATAR_POINTS, CREATIVE_POINTS, SHORT_CLIP_POINTS = 15.0, 40.0, 20.0, 5.0
COST_POINTS, FREE_TIER_POINTS, PREFERENCE_POINTS = 5.0, -10.0, 70.0

Factor = tuple[float, str]


@dataclass(frozen=True)
class SelectionRequest:
    """What the ranking needs to know about one request."""

    style: str = "professional"
    quality: str = "standard"
    duration_s: float = 5
    wants_avatar: bool = False
    user_tier: str = "free"
    preference: str | None = None


@dataclass(frozen=True)
class ProviderState:
    """One provider as the ranking sees it at one moment; `traits` come from its spec."""

    name: str
    priority: int
    capabilities: Capabilities | None = None
    circuit: CircuitState = CLOSED
    est_cost_usd: float | None = None
    invalid_reason: str | None = None
    traits: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Ranking:
    """Providers to try, best first; why each scored what it did; why the others are out.

    `retry_after_s` is set when nothing is left and every excluded provider comes back by itself
    (budget window or circuit cool-down): the earliest such moment, for a `Retry-After`.
    """

    candidates: tuple[str, ...]
    reasons: dict[str, list[str]]
    excluded: dict[str, str]
    scores: dict[str, float] = field(default_factory=dict)
    retry_after_s: float | None = None

    def to_doc(self) -> dict[str, Any]:
        return {
            "candidates": list(self.candidates),
            "scores": dict(self.scores),
            "reasons": {name: list(lines) for name, lines in self.reasons.items()},
            "excluded": dict(self.excluded),
            "retryAfterS": self.retry_after_s,
        }


def rank(request: SelectionRequest, states: Sequence[ProviderState], now: datetime) -> Ranking:
    """Rank `states` for `request` as of `now`."""
    if len({s.name for s in states}) != len(states):
        raise ValueError("each provider may appear only once")
    outs = {s.name: _exclusions(s, request, now) for s in states}
    eligible = [s for s in states if not outs[s.name]]
    costs = [s.est_cost_usd for s in eligible if s.est_cost_usd is not None]
    factors = {s.name: _factors(s, request, now, costs) for s in eligible}
    scores = {name: round(sum(points for points, _ in fs), 1) for name, fs in factors.items()}
    order = sorted(eligible, key=lambda s: (-scores[s.name], s.priority, s.name))
    return Ranking(
        candidates=tuple(s.name for s in order),
        reasons={name: [f"{text} ({points:+g})" for points, text in fs] for name, fs in factors.items()},
        excluded={name: "; ".join(text for text, _ in out) for name, out in outs.items() if out},
        scores=scores,
        retry_after_s=None if eligible else _earliest_return(outs.values()),
    )


# ---------------------------------------------------------------------------------------------------
# Exclusions: (reason, seconds until it lifts by itself, or None when it does not)


def _exclusions(s: ProviderState, req: SelectionRequest, now: datetime) -> list[tuple[str, float | None]]:
    out: list[tuple[str, float | None]] = []
    circuit = effective_state(s.circuit, now)
    if circuit.state is Phase.OPEN and circuit.opened_until is not None:
        wait = (circuit.opened_until - now).total_seconds()
        out.append((f"circuit open after {circuit.consecutive_failures} failures, retry in {wait:g} s", wait))
    if s.invalid_reason is not None:
        out.append((f"cannot take this request: {s.invalid_reason}", None))
    caps = s.capabilities
    if caps is not None and not caps.min_duration_s <= req.duration_s <= caps.max_duration_s:
        out.append((f"makes {caps.min_duration_s}-{caps.max_duration_s} s, not {req.duration_s:g} s", None))
    return out


def _earliest_return(outs: Any) -> float | None:
    waits = [max(w for _, w in out) for out in outs if out and all(w is not None for _, w in out)]
    return min(waits) if waits else None


# ---------------------------------------------------------------------------------------------------
# Points


def _factors(s: ProviderState, req: SelectionRequest, now: datetime, costs: list[float]) -> list[Factor]:
    return [
        (PRIORITY_POINTS.get(s.priority, 0.0), f"priority {s.priority}"),
        *_health(s, now),
        *_content(s, req),
        *_cost(s, req, costs),
        *([(PREFERENCE_POINTS, "requested by the user")] if req.preference == s.name else []),
    ]


def _health(s: ProviderState, now: datetime) -> list[Factor]:
    if effective_state(s.circuit, now).state is Phase.HALF_OPEN:
        return [(HALF_OPEN_POINTS, "circuit half-open, on trial after failures")]
    return []


def _content(s: ProviderState, req: SelectionRequest) -> list[Factor]:
    traits, style, short = s.traits, req.style.lower(), f"short {req.duration_s:g} s clip"
    wanted = [
        (req.wants_avatar and AVATAR in traits, AVATAR_POINTS, "talking avatar requested"),
        (req.quality == "premium" and PREMIUM in traits, PREMIUM_POINTS, "premium quality"),
        (style in CREATIVE_STYLES and CREATIVE in traits, CREATIVE_POINTS, f"creative style '{style}'"),
        (_is_short_clip(req) and SHORT_CLIPS in traits, SHORT_CLIP_POINTS, short),
    ]
    return [(points, text) for applies, points, text in wanted if applies]


def _is_short_clip(req: SelectionRequest) -> bool:
    return SHORT_CLIP_S[0] <= req.duration_s <= SHORT_CLIP_S[1]


def _cost(s: ProviderState, req: SelectionRequest, costs: list[float]) -> list[Factor]:
    cost = s.est_cost_usd
    if cost is None:
        return []
    factors = [(round(COST_POINTS * min(costs) / cost, 1) if cost > 0 else COST_POINTS, f"cost ${cost:.2f}")]
    if req.user_tier == "free" and len(set(costs)) > 1 and cost == max(costs):
        factors.append((FREE_TIER_POINTS, "free tier avoids the most expensive option"))
    return factors
