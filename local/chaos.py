"""Chaos run: hundreds of jobs through the whole local system while everything misbehaves on purpose.

    python -m local.chaos [--jobs 300] [--seed 7] [--speed 100] [--kills 2]      (or `make chaos`)

What breaks, all seeded (the seed in the table reproduces the draws; thread timing still varies):

- both provider simulators inject request and task faults (`DEFAULT_FAULTS`: 5xx, 429 with
  Retry-After, read timeouts, connection resets, malformed bodies, stuck tasks, moderation; stale
  status reads, answers lost after a processed create, truncated and trickling output downloads);
  HeyGen delivers every webhook twice;
- every Cloud Tasks delivery passes through `local.delivery_proxy`: some are duplicated at once,
  some copied again seconds later so that later polls overtake them;
- the function host (the stack's `local.serve` process) is SIGKILLed mid-run and restarted on the
  same port, `--kills` times; requests in flight die with it;
- the app side: each job is submitted with an Idempotency-Key and retried (bounded) when the
  answer is lost; some jobs are cancelled at once, some while their first provider create is in
  flight, some watched through the status check.

Then, after every job's deadline has passed (or every job ended) and one run of the scheduled
cleanup, the books are checked (`local.chaos_checks`): nothing lost (nor stranded while running:
provider done, job not terminal, nothing scheduled), no double charge, nothing moved backward,
counts agree. `run(config)` returns a `ChaosResult`; `python -m local.chaos`
prints its table and exits 1 on any violation.

The simulators run in this process (`local.chaos_sims`), so their books can be read; the rest is
`local.stack.LocalStack` as `make stack` starts it, with the functions' FUNCTIONS_BASE_URL pointed
at the delivery proxy. `local.chaos_driver.Run` holds the parts and plays the app;
`local.chaos_report` prints the table.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from local import chaos_checks as checks
from local.chaos_driver import DEFAULT_FAULTS, ChaosConfig, Run
from local.chaos_report import ChaosResult, render
from local.chaos_sims import callers_gone, injected

__all__ = ["DEFAULT_FAULTS", "ChaosConfig", "ChaosResult", "Run", "main", "run"]


def run(config: ChaosConfig, during: Callable[[Run], None] | None = None) -> ChaosResult:
    """Start everything, break it, check the books, stop everything (also on failure).

    `during(run)`, when given, is called once the jobs have settled, before the final cleanup.
    """
    chaos = Run(config)
    began = time.monotonic()
    phases = chaos.result.phases
    try:
        for phase, step in (("start", chaos.start), ("submit", chaos.submit_all), ("settle", chaos.settle)):
            mark = time.monotonic()
            step()
            phases[phase] = round(time.monotonic() - mark, 1)
        if during is not None:
            during(chaos)
        chaos.result.cleanup = chaos.cleanup()
        time.sleep(1.0)  # let the listeners deliver the cleanup's writes
        books = chaos.books()
        chaos.result.record(
            books, checks.account(books), injected(chaos.runway, chaos.heygen), chaos.proxy.stats
        )
        chaos.result.transitions = sum(len(states) for states in books.states.values())
        chaos.result.callers_gone = callers_gone(chaos.runway, chaos.heygen)
        chaos.result.responses += [answer for _, _, answer in chaos.proxy.answers]
    finally:
        mark = time.monotonic()
        chaos.stop()
        phases["stop"] = round(time.monotonic() - mark, 1)
        chaos.result.wall_s = round(time.monotonic() - began, 1)
        chaos.result.log_dir = str(config.work_dir / "logs")
    return chaos.result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--speed", type=float, default=100.0, help="simulated seconds per real second")
    parser.add_argument("--kills", type=int, default=2, help="times the function host is killed")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    result = run(ChaosConfig(jobs=args.jobs, seed=args.seed, speed=args.speed, kills=args.kills))
    print(render(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(result.to_json())
    return 1 if result.violations else 0


if __name__ == "__main__":
    sys.exit(main())
