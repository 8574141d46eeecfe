"""The provider simulators of a chaos run, in the run's own process, so their books can be read.

`local.stack` would start the simulators as child processes whose counters nobody can read. The
chaos run starts them here instead, on loopback, with seeded fault plans, and hands their URLs to
the stack as if they were the real APIs (a provider whose key is in the environment is used as
given: `local.stack_env.provider_modes`). The functions cannot tell the difference.

What the accounting reads, counted on the provider's side:

- RunwayML creates carry no idempotency key. `CountingRunwayML` keeps the body of every create it
  accepted; the chaos run gives each job a unique `seed`, which RunwayML's create body carries, so a
  task maps back to its job.
- HeyGen creates carry `callback_id` (the job id) and `Idempotency-Key` (the attempt id):
  `CountingHeyGen` keeps the callback id of every video; `videos_by_key` counts videos per key.

Both call `on_create(provider, ref)` (when set) after a create was made and before its answer
leaves, with the job's seed (RunwayML) or callback id (HeyGen): the chaos driver uses it to send a
user's `cancel_video` while the job's create is in flight. `finished()` names the tasks the
provider has ended, for the stranded-job check.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from local.heygen_sim import HeyGenSim
from local.runwayml_sim import RunwayMLSim
from local.simcore import FaultPlan, SimClock


class CallerGone:
    """Counts answers that found their caller gone (the function host was killed mid-request)."""

    callers_gone = 0

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            self.callers_gone += 1  # not a simulator fault: counted, not printed
            return
        super().handle_error(request, client_address)  # type: ignore[misc]


CreateHook = Callable[[str, Any], None]


class CountingRunwayML(CallerGone, RunwayMLSim):
    """The RunwayML simulator, remembering the seed of every task it created."""

    on_create: CreateHook | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seeds: dict[str, int | None] = {}  # task id -> the create body's seed
        self._books = threading.Lock()

    def create_task(self, endpoint: str, body: object) -> tuple[int, dict[str, Any], dict[str, str]]:
        status, payload, headers = super().create_task(endpoint, body)
        if status == 200 and isinstance(body, dict):
            with self._books:
                self.seeds[payload["id"]] = body.get("seed")
            if self.on_create is not None:
                self.on_create("runwayml", body.get("seed"))
        return status, payload, headers


class CountingHeyGen(CallerGone, HeyGenSim):
    """The HeyGen simulator, remembering which job (callback id) each video was made for."""

    on_create: CreateHook | None = None

    def create(self, raw: bytes, key: str | None) -> tuple[int, dict, dict[str, str]]:
        answer = super().create(raw, key)
        if answer[0] == 200 and self.on_create is not None:
            video = self.videos.get(answer[1]["data"]["video_id"])
            self.on_create("heygen", video.callback_id if video else None)
        return answer

    def hook(self, url: str, secret: str) -> None:
        """Deliver webhooks to `url` signed with `secret` (known only once the functions are up)."""
        with self._state:
            self.endpoints.append((url, secret))

    def callbacks(self) -> dict[str, str | None]:
        with self._state:
            return {video_id: video.callback_id for video_id, video in self.videos.items()}


@dataclass(frozen=True)
class SimPlan:
    """Speed, faults and keys of both simulators."""

    speed: float
    faults: dict[str, float]
    seed: int
    runwayml_key: str
    heygen_key: str
    read_timeout_hold_s: float = 1.5  # longer than the functions' HTTP read timeout
    trickle_bps: int = 4096  # a trickling download of the 9 KB sample takes about 2.3 s


def start_simulators(plan: SimPlan) -> tuple[CountingRunwayML, CountingHeyGen]:
    """Both simulators, started, each with its own seeded fault plan (same rates)."""
    knobs = {"hold_s": plan.read_timeout_hold_s, "trickle_bps": plan.trickle_bps}
    runway_faults = FaultPlan(rates=dict(plan.faults), seed=plan.seed, **knobs)
    heygen_faults = FaultPlan(rates=dict(plan.faults), seed=plan.seed + 1, **knobs)
    runway = CountingRunwayML(
        faults=runway_faults,
        clock=SimClock(plan.speed),
        api_key=plan.runwayml_key,
        concurrency=20,
        daily_limit=100_000,
        credit_balance=100_000_000,
    ).start()
    heygen = CountingHeyGen(
        faults=heygen_faults,
        clock=SimClock(plan.speed),
        api_key=plan.heygen_key,
        max_concurrent=200,
        balance_usd=1_000_000.0,
        webhook_copies=2,  # every event is delivered twice
        webhook_attempts=3,
    ).start()
    return runway, heygen


def injected(runway: CountingRunwayML, heygen: CountingHeyGen) -> dict[str, int]:
    """Faults injected so far, by kind, over both simulators."""
    total: dict[str, int] = {}
    for sim in (runway, heygen):
        for kind, count in sim.faults.injected.items():
            total[kind] = total.get(kind, 0) + count
    return total


def callers_gone(runway: CountingRunwayML, heygen: CountingHeyGen) -> int:
    return runway.callers_gone + heygen.callers_gone
