"""Admission cost: `generate_video` with the per-user limits on against the same code with them off.

One process, one Firestore emulator, both provider simulators on loopback (no limits of their own);
`generate_video` runs through functions-framework's app. Rounds alternate (ABAB) between

    limits on    the collaborators as deployed: the user's ledger is read (in the round trip that
                 looks for a repeated Idempotency-Key), decided and written (`jobs/admission.py`)
                 before the job is created
    limits off   the same collaborators with an admission that allows everything, reads nothing
                 and writes nothing

Every request comes from a new user with a new Idempotency-Key, as the app's traffic does; the plans
are set high so that nothing is refused and the work measured is the check itself.
"""

from __future__ import annotations

import dataclasses
import time
import uuid

import functions_framework

from benchmarks.common import ROOT, Section, interleave, judge, mean, percentile, ratio, table
from benchmarks.env import PROJECT, SCRIPT, Context, simulators

GOAL = 0.8  # accepted creates per second with the limits on, against without them


class AdmitAll:
    """Admission with no limits: allows every job and writes nothing."""

    def ledger_ref(self, uid: str) -> None:
        return None  # no ledger to read

    def admit(self, uid: str, plan: str, limits: object, job_id: str, usd: float | None, read=None) -> None:
        return None


def run(ctx: Context) -> Section:
    from config import load_settings
    from tasks.memory import InMemoryQueue
    from web import deps

    ctx.wipe()
    rounds, per_round = (2, 3) if ctx.quick else (8, 25)
    with simulators() as providers:
        env = ctx.function_env("http://127.0.0.1:9", **providers)
        on = deps.build(load_settings(env), queue=InMemoryQueue())
        off = dataclasses.replace(on, users=AdmitAll())
        client = functions_framework.create_app(
            target="generate_video", source=str(ROOT / "main.py")
        ).test_client()
        token = ctx.issuer()

        def batch(collaborators: deps.Deps) -> list[float]:
            deps.use(collaborators)
            took = []
            for _ in range(per_round):
                uid = uuid.uuid4().hex[:12]
                headers = {
                    "Authorization": f"Bearer {token.user_token(uid, PROJECT)}",
                    "Idempotency-Key": uid,
                }
                began = time.perf_counter()
                answer = client.post("/", json={"script": SCRIPT}, headers=headers)
                took.append(time.perf_counter() - began)
                if answer.status_code != 202:
                    raise RuntimeError(f"generate_video answered {answer.status_code}: {answer.get_json()}")
            return took

        try:
            batch(on), batch(off)  # warm: imports, clients, certificate cache
            pooled = interleave({"limits on": lambda: batch(on), "limits off": lambda: batch(off)}, rounds)
        finally:
            deps.use(None)
    return _section(pooled, rounds, per_round)


def _section(pooled: dict[str, list[float]], rounds: int, per_round: int) -> Section:
    speed = ratio(mean(pooled["limits off"]), mean(pooled["limits on"]))
    rows = [
        (name, f"{mean(v) * 1000:.1f}", f"{percentile(v, 95) * 1000:.1f}", f"{1 / mean(v):.1f}")
        for name, v in pooled.items()
    ]
    body = "\n".join(
        [
            __doc__.split("\n\n", 1)[1].strip(),
            "",
            f"{rounds} rounds of {per_round} requests per variant, alternating.",
            "",
            table(("variant", "mean ms", "p95 ms", "creates/s (one client)"), rows),
            "",
            f"Creates per second with the limits on: **{speed:.2f}×** those without (goal ≥ {GOAL}×).",
        ]
    )
    headline = f"{speed:.2f}× the creates per second without the per-user limits"
    verdict = judge(speed, GOAL, at_least=True)
    return Section(
        "admission", "Admission with per-user limits", f"≥ {GOAL}×", verdict, headline, body, {"ratio": speed}
    )
