"""Polling efficiency: polls per job and detection delay of each schedule, on a virtual clock.

Seeded jobs behave as the simulators make them (local/runwayml_sim.py, local/heygen_sim.py)::

    RunwayML  PENDING for the simulator's queue_s (2 s), THROTTLED for a while on a busy account,
              RUNNING for Durations(15, 45) with progress 0-0.99, then SUCCEEDED. Runway refreshes a
              task at most every 5 s: what a GET sees is the state at the task's last refresh tick
              (ticks every 5 s from a random phase).
    HeyGen    pending for queue_s (20 s), processing for Durations(300, 900) (progress: none; the
              provider reports the fixed midpoint 50), then completed; refreshed every 10 s.

Each schedule polls the same jobs with `tasks.schedule.next_delay`, fed exactly what `tasks/poll.py`
feeds it (elapsed time since the task was created, polls made, last status and progress). The
*detection delay* runs from the moment the provider first shows the task finished to the poll that
sees it; the oracle polls once at that moment (1 poll, 0 s). Nothing sleeps.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import MET, NOT_MET, Section, mean, percentile, table
from local.heygen_sim import RENDER_TIMES as HEYGEN_RENDER_TIMES
from local.heygen_sim import SimOptions
from local.simcore import Durations
from tasks.renders import RenderHistory
from tasks.schedule import (
    HEYGEN,
    RUNWAYML,
    RUNWAYML_SDK,
    RUNWAYML_SEED,
    Envelope,
    Reading,
    first_look,
    next_delay,
    render_seen,
)

RUNWAY_DURATIONS = Durations(15, 45)  # RunwayMLSim's default render times
RUNWAY_QUEUE_S = 2.0  # RunwayMLSim's default queue_s
RUNWAY_REFRESH_S = 5.0  # "do not expect updates more often than once every five seconds"
HEYGEN_QUEUE_S = SimOptions().queue_s
HEYGEN_REFRESH_S = 10.0  # an assumption: HeyGen documents none; its own advice starts at 10 s
HEYGEN_MIDPOINT = 50.0  # providers/heygen.py: "processing" reports a fixed 50
BUSY_THROTTLE_MEAN_S = 20.0  # busy account: mean extra THROTTLED wait (exponential), half the jobs
LOGNORMAL_MEDIANS_S = (20.0, 33.0, 60.0)  # the other worlds' render times
LOGNORMAL_SIGMA = 0.15  # a small spread: about ±30 % at the 5th and 95th percentiles
# The goal (RunwayML): polls per job on the idle / busy account, and detection delay p50 / p95 (s)
GOAL_POLLS = {"idle": 2.5, "busy": 3.5}
GOAL_DELAY_P50_S, GOAL_DELAY_P95_S = 3.0, 6.0


@dataclass(frozen=True)
class Job:
    """One provider task's true timeline (simulated seconds from its creation)."""

    started: float  # end of PENDING/THROTTLED
    render_s: float
    phase: float  # first refresh tick
    refresh_s: float
    progress_reported: bool  # RunwayML: 0-1 while running; HeyGen: a fixed midpoint

    def tick(self, t: float) -> float | None:
        """The last refresh at or before `t` (None before the first)."""
        if t < self.phase:
            return None
        return self.phase + math.floor((t - self.phase) / self.refresh_s) * self.refresh_s

    @property
    def visible_done(self) -> float:
        """The first moment a GET shows the task finished."""
        done = self.started + self.render_s
        return self.phase + math.ceil(max(0.0, done - self.phase) / self.refresh_s) * self.refresh_s

    def seen(self, t: float) -> tuple[str, float | None]:
        """(project status, progress 0-100) as a GET at `t` reports them."""
        at = self.tick(t)
        if at is None or at < self.started:
            return "queued", 0.0
        if at >= self.started + self.render_s:
            return "completed", 100.0
        if not self.progress_reported:
            return "processing", HEYGEN_MIDPOINT
        return "processing", round(min(0.99, (at - self.started) / self.render_s), 3) * 100


def runway_jobs(
    count: int,
    seed: int,
    busy: bool = False,
    render: Callable[[random.Random], float] | None = None,
    aligned: bool = False,
) -> list[Job]:
    """RunwayML tasks: the simulator's render times unless `render` draws others; `aligned`: the 5 s
    refresh ticks start at the task's creation instead of at a random phase."""
    rng = random.Random(seed)
    draw = render or (lambda r: RUNWAY_DURATIONS.draw(r.random()))
    jobs = []
    for _ in range(count):
        throttled = rng.expovariate(1 / BUSY_THROTTLE_MEAN_S) if busy and rng.random() < 0.5 else 0.0
        render_s = draw(rng)
        phase = 0.0 if aligned else rng.uniform(0, RUNWAY_REFRESH_S)
        jobs.append(Job(RUNWAY_QUEUE_S + throttled, render_s, phase, RUNWAY_REFRESH_S, True))
    return jobs


def lognormal(median_s: float, sigma: float = LOGNORMAL_SIGMA) -> Callable[[random.Random], float]:
    return lambda rng: median_s * math.exp(rng.gauss(0.0, sigma))


def other_worlds(count: int, seed: int) -> list[tuple[str, list[Job]]]:
    """The same account states with other render-time distributions and refresh phases."""
    worlds = []
    for busy in (False, True):
        account = "busy" if busy else "idle"
        for aligned in (False, True):
            phase = "ticks from the create" if aligned else "random tick phase"
            renders = [("15–45 s uniform", None)] + [
                (f"lognormal median {m:g} s", lognormal(m)) for m in LOGNORMAL_MEDIANS_S
            ]
            for label, draw in renders:
                if draw is None and not aligned:
                    continue  # the main scenarios above
                jobs = runway_jobs(count, seed, busy=busy, render=draw, aligned=aligned)
                worlds.append((f"{account}, {label}, {phase}", jobs))
    return worlds


def heygen_jobs(count: int, seed: int) -> list[Job]:
    rng = random.Random(seed)
    durations: Durations = HEYGEN_RENDER_TIMES
    jobs = []
    for _ in range(count):
        render = durations.draw(rng.random())
        jobs.append(Job(HEYGEN_QUEUE_S, render, rng.uniform(0, HEYGEN_REFRESH_S), HEYGEN_REFRESH_S, False))
    return jobs


def follow(
    job: Job, envelope: Envelope, rng: random.Random, history: RenderHistory
) -> tuple[int, float | None]:
    """(polls made, detection delay), as tasks/poll.py would poll `job`; delay None = timed out.

    As the poller does: the first poll is put off, without a look, while the renders in `history`
    say none has ended yet; every reading is kept as the task record keeps it (the first progress
    and the last figure, the last time seen queued); a finished task's render goes into `history`."""
    t, number, polls = 0.0, 0, 0
    first = last = None
    queued_until: float | None = None
    delay = next_delay(envelope, elapsed_s=0.0, poll_count=0, rand=rng.random())
    while delay is not None:
        t, number = t + delay, number + 1
        wait = first_look(envelope, history.prior("sim")) - t
        if number == 1 and wait >= max(envelope.update_interval_s, 1.0):
            delay = wait  # deferred: no provider call
            continue
        polls += 1
        status, progress = job.seen(t)
        if status == "completed":
            history.record("sim", render_seen(envelope, first, last, queued_until, t))
            return polls, t - job.visible_done
        delay = next_delay(
            envelope,
            elapsed_s=t,
            poll_count=number,
            progress=progress,
            status=status,
            first_reading=first,
            queued_until_s=queued_until,
            prior=history.prior("sim"),
            rand=rng.random(),
        )
        if status == "queued":
            queued_until = t
        elif progress:
            first = first or Reading(t, progress)
            last = Reading(t, progress)
    return polls, None


@dataclass(frozen=True)
class Outcome:
    policy: str
    polls_mean: float
    polls_p95: float
    delay_p50: float
    delay_p95: float
    delay_mean: float
    timed_out: int
    jobs: int


def measure(name: str, jobs: list[Job], envelope: Envelope | None, seed: int) -> Outcome:
    """Poll every job with `envelope` (None: the oracle)."""
    if envelope is None:
        return Outcome(name, 1.0, 1.0, 0.0, 0.0, 0.0, 0, len(jobs))
    rng, history = random.Random(seed), RenderHistory()  # one polling worker, learning as it goes
    results = [follow(job, envelope, rng, history) for job in jobs]
    polls = [float(p) for p, _ in results]
    delays = [d for _, d in results if d is not None]
    timed_out = sum(1 for _, d in results if d is None)
    return Outcome(
        name,
        mean(polls),
        percentile(polls, 95),
        percentile(delays, 50),
        percentile(delays, 95),
        mean(delays),
        timed_out,
        len(jobs),
    )


def scenarios(count: int, seed: int) -> list[tuple[str, list[Job], list[tuple[str, str, Envelope | None]]]]:
    """(scenario, jobs, [(role, label, envelope)]); roles: oracle, seed, sdk, project, other."""
    # HeyGen's 20 minutes for the peers, and polls enough to use them: the comparison is of polls
    long_seed = dataclasses.replace(RUNWAYML_SEED, max_elapsed_s=HEYGEN.max_elapsed_s, max_polls=1000)
    long_fixed = dataclasses.replace(long_seed, policy="sdk_fixed")
    runway = [
        ("oracle", "oracle", None),
        ("seed", "seed: 2 s → 15 s backoff", RUNWAYML_SEED),
        ("sdk", "SDK: fixed 6 ± 1.5 s", RUNWAYML_SDK),
        ("project", "project: adaptive", RUNWAYML),
    ]
    heygen = [
        ("oracle", "oracle", None),
        ("seed", "seed: 2 s → 15 s backoff", long_seed),
        ("sdk", "fixed 6 ± 1.5 s (SDK-style)", long_fixed),
        ("project", "project: stepped", HEYGEN),
        ("other", "seed as specified (6 min limit)", RUNWAYML_SEED),
    ]
    return [
        ("RunwayML, idle account", runway_jobs(count, seed), runway),
        ("RunwayML, busy account", runway_jobs(count, seed, busy=True), runway),
        ("HeyGen, polling only", heygen_jobs(count, seed), heygen),
    ]


def trade_offs(data: dict[str, list[dict]]) -> str:
    """What the project's schedule gives and takes against the SDK."""
    lines = ["Trade-off against the SDK's fixed interval:"]
    for scenario, rows in data.items():
        by_policy = {row["policy"]: row for row in rows}
        sdk = next(r for name, r in by_policy.items() if "6 ± 1.5" in name)
        project = next(r for name, r in by_policy.items() if name.startswith("project"))
        saved = 1 - project["polls_mean"] / sdk["polls_mean"]
        later = project["delay_p50"] - sdk["delay_p50"]
        line = (
            f"- {scenario}: {saved:.0%} fewer polls for {later:+.1f} s of median delay "
            f"({project['delay_p95'] - sdk['delay_p95']:+.1f} s at p95)"
        )
        lines.append(line)
    lines.append(TRADE_OFF)
    return "\n".join(lines)


TRADE_OFF = """
How the project's schedule gets there (tasks/schedule.py, `adaptive`; tasks/renders.py). The polling
worker keeps the last 100 renders it saw end (their length, and whether the task started late,
that is, was still queued at a look). Its first look comes when the shortest of them (the 5th
percentile) could end, 1 s after a whole 5 s interval: until it has 20, at 16 s; after that a first
poll that arrives sooner is put off without a provider call. A progress figure then gives the end:
from two figures (polls sit whole 5 s intervals apart, so their snapshots do too) exactly; from one,
counting from the usual 2 s queue while no recent task started late (the snapshot 0 to 5 s old, or
as old as the first figures of recent tasks were, widened by 1.25 s), else within what the recent
renders' range (5th to 95th percentile) and the figure allow. The next look is aimed a fifth of the
way into that range of possible ends, in whole 5 s intervals after the snapshot: Runway refreshes a
task on a fixed 5 s grid, so the aimed poll lands just after a refresh and sees the end within one
interval of it (half of one on average). A look that comes too early reads a second figure, and the
one after it is exact. On the busy account the worker learns that tasks start late, stops counting
from the queue, and pays with a third look for what it no longer assumes.
HeyGen's stepped schedule (HeyGen's own advice: every 10 s, every 30 s after 2 minutes, every 60 s
after 5) gives up tens of seconds of delay for about half the seed's polls and a quarter of a fixed
6 s interval's; in production HeyGen's webhook, not a poll, usually tells the job first (it
triggers the same fetch-and-apply at once)."""

WORLDS = """\
**Other worlds** (RunwayML, half as many jobs each): the same schedules on other render-time
distributions (lognormal, medians 20, 33 and 60 s, σ = 0.15 on the log scale), and with Runway's
refresh ticks starting at the task's creation instead of at a random phase. Cells: polls per job
(mean) · detection delay p50 / p95 in seconds. The last column applies the goal of the account
(idle ≤ 2.5 polls, busy ≤ 3.5; delays ≤ 3 s and ≤ 6 s). Each world starts with a worker that has
seen no render, so its first 20 jobs use the envelope's defaults. With ticks from the create, a look
1 s after a whole interval sees a snapshot 1 s old, so every delay is 1 s, and the worker learns
that first figures are about 1 s old."""


def verdict_for(scenario: str, outcomes: dict[str, Outcome]) -> tuple[bool, str]:
    """RunwayML: the polls and delays of the goal; HeyGen: fewer polls than both peers."""
    seed, sdk, project = outcomes["seed"], outcomes["sdk"], outcomes["project"]
    note = (
        f"{project.polls_mean:.2f} polls/job (seed {seed.polls_mean:.1f}, SDK {sdk.polls_mean:.1f}), "
        f"detection delay p50 {project.delay_p50:.1f} s / p95 {project.delay_p95:.1f} s "
        f"(SDK {sdk.delay_p50:.1f} / {sdk.delay_p95:.1f} s)"
    )
    if not scenario.startswith("RunwayML"):
        return project.polls_mean < min(seed.polls_mean, sdk.polls_mean), note
    return meets(project, GOAL_POLLS["busy" if "busy" in scenario else "idle"]), note


def meets(outcome: Outcome, polls: float) -> bool:
    return (
        outcome.polls_mean <= polls
        and outcome.delay_p50 <= GOAL_DELAY_P50_S
        and outcome.delay_p95 <= GOAL_DELAY_P95_S
        and outcome.timed_out == 0
    )


def worlds_table(count: int, seed: int) -> tuple[str, list[dict]]:
    """The seed's, the SDK's and the project's schedule on every other world, one row each."""
    peers = {"seed": RUNWAYML_SEED, "sdk": RUNWAYML_SDK, "project": RUNWAYML}
    rows, data = [], []
    for world, jobs in other_worlds(count, seed):
        out = {role: measure(role, jobs, env, seed + 1) for role, env in peers.items()}
        ok = meets(out["project"], GOAL_POLLS["busy" if world.startswith("busy") else "idle"])
        data.append({"world": world, "meets": ok, **{r: dataclasses.asdict(o) for r, o in out.items()}})
        cells = [f"{o.polls_mean:.2f} · {o.delay_p50:.1f} / {o.delay_p95:.1f}" for o in out.values()]
        rows.append((world, *cells, "yes" if ok else "**no**"))
    header = ("world", "seed: polls · p50 / p95 s", "SDK", "project", "project meets the goal")
    return table(header, rows), data


def run(ctx) -> Section:
    count = 60 if ctx.quick else 2000
    parts, data, verdicts = [], {}, {}
    header = ("schedule", "polls/job mean", "polls p95", "delay p50 s", "delay p95 s", "delay mean s")
    for scenario, jobs, policies in scenarios(count, seed=ctx.seed):
        outcomes = {role: measure(label, jobs, env, ctx.seed + 1) for role, label, env in policies}
        verdicts[scenario] = verdict_for(scenario, outcomes)
        data[scenario] = [dataclasses.asdict(o) for o in outcomes.values()]
        rows = [
            (o.policy, o.polls_mean, o.polls_p95, o.delay_p50, o.delay_p95, o.delay_mean, o.timed_out)
            for o in outcomes.values()
        ]
        parts.append(f"**{scenario}** ({count:,} seeded jobs)\n\n" + table((*header, "timed out"), rows))
    figure = plot(data, ctx.docs_dir / "polling.png") if ctx.plots else None
    lines = [f"- {name}: goal {'met' if ok else 'NOT met'}: {note}" for name, (ok, note) in verdicts.items()]
    worlds, world_data = worlds_table(count // 2, ctx.seed + 7)
    body = "\n\n".join([METHOD, *parts, "\n".join(lines), trade_offs(data), WORLDS, worlds])
    if figure is not None:
        body += f"\n\n![polls per job against median detection delay]({figure.name})"
    return Section(
        key="polling",
        title="Polling efficiency",
        goal=f"RunwayML: at most {GOAL_POLLS['idle']} polls per job on the idle account "
        f"({GOAL_POLLS['busy']} busy), detection delay median ≤ {GOAL_DELAY_P50_S:g} s and "
        f"p95 ≤ {GOAL_DELAY_P95_S:g} s",
        verdict=MET
        if all(ok for name, (ok, _) in verdicts.items() if name.startswith("RunwayML"))
        else NOT_MET,
        headline=" · ".join(f"{name}: {note}" for name, (_, note) in verdicts.items()),
        body=body,
        data={
            "scenarios": data,
            "verdicts": {k: v[0] for k, v in verdicts.items()},
            "jobs": count,
            "worlds": world_data,
        },
    )


METHOD = """\
Virtual clock, no sleeping. The jobs come from the simulators' own render-time distributions
(`local.simcore.Durations`: RunwayML 15–45 s after the simulator's 2 s queue, HeyGen 300–900 s after
its 20 s queue). Runway shows a new state at most every 5 s (a random phase per task); HeyGen every
10 s (assumed) and never a number for progress (the provider maps "processing" to a fixed 50). On the
*busy* RunwayML account half the jobs also wait THROTTLED, exponentially distributed with a 20 s
mean. Every schedule is `tasks.schedule.next_delay` fed what `tasks/poll.py` feeds it (time since
the task was created, polls so far, last status and progress, the first progress figure and the
last time seen queued, the worker's recent renders), on the same seeded jobs; *polls* are provider
reads (a first poll the worker puts off makes none).
*Detection delay*: from the first moment the provider shows the task finished to the poll that sees
it; the oracle polls once, exactly then. For HeyGen the seed's and the SDK-style schedules get
HeyGen's 20-minute envelope and polls enough to use it (the comparison is of polls); the last row
shows the seed's schedule as specified, whose 6-minute limit ends most HeyGen renders as time-outs.
The seed's and the SDK's schedules keep their own delays (2 s growing by 1.5 to 15 s; 6 ± 1.5 s)
inside the same 6-minute, 180-poll limits."""


def plot(data: dict[str, list[dict]], path: Path) -> Path | None:
    """Polls per job against median delay, one panel per scenario."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, axes = plt.subplots(1, len(data), figsize=(5 * len(data), 4.2))
    for axis, (scenario, outcomes) in zip(axes, data.items(), strict=True):
        for outcome in outcomes:
            if outcome["timed_out"] > outcome["jobs"] / 10:
                continue  # its delay speaks only for the few jobs that finished in time
            axis.scatter(outcome["polls_mean"], outcome["delay_p50"], s=60)
            axis.errorbar(
                outcome["polls_mean"],
                outcome["delay_p50"],
                yerr=[[0], [outcome["delay_p95"] - outcome["delay_p50"]]],
                fmt="none",
                alpha=0.4,
            )
            axis.annotate(
                outcome["policy"],
                (outcome["polls_mean"], outcome["delay_p50"]),
                fontsize=8,
                xytext=(4, 4),
                textcoords="offset points",
            )
        axis.set_title(scenario, fontsize=9)
        axis.set_xlabel("polls per job (mean)")
        axis.set_ylabel("detection delay, s (median; bar to p95)")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
