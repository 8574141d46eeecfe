"""Google Cloud list prices used by the cost benchmark (USD, beyond the free tiers, which are ignored).

Read from the public pricing pages in November 2026; change them here when Google does. Region: a
Tier 1 region (us-central1) with a regional Firestore database; a multi-region database (nam5, eur3)
costs about twice as much per operation (reads $0.06, writes $0.18, deletes $0.02 per 100,000).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from benchmarks.common import ROOT


@dataclass(frozen=True)
class Price:
    usd: float  # per single unit
    per: str
    source: str
    label: str  # the price as the page states it


FIRESTORE = "cloud.google.com/firestore/pricing"
RUN = "cloud.google.com/run/pricing"
TASKS = "cloud.google.com/tasks/docs/pricing"
PRICES: dict[str, Price] = {
    "firestore_read": Price(0.03 / 100_000, "document read", f"{FIRESTORE} (us-central1)", "$0.03 / 100,000"),
    "firestore_write": Price(
        0.09 / 100_000, "document write", f"{FIRESTORE} (us-central1)", "$0.09 / 100,000"
    ),
    "firestore_delete": Price(
        0.01 / 100_000, "document delete", f"{FIRESTORE} (us-central1)", "$0.01 / 100,000"
    ),
    "tasks_operation": Price(
        0.40 / 1_000_000, "billable operation (API call or push delivery attempt)", TASKS, "$0.40 / million"
    ),
    "function_invocation": Price(
        0.40 / 1_000_000, "request", f"{RUN} (Cloud Run functions bill as Cloud Run)", "$0.40 / million"
    ),
    "vcpu_second": Price(0.000024, "vCPU-second, CPU allocated during requests, Tier 1", RUN, "$0.000024"),
    "gib_second": Price(0.0000025, "GiB-second, Tier 1", RUN, "$0.0000025"),
}
BILLING_QUANTUM_S = 0.1  # Cloud Run rounds billable time up to the nearest 100 ms
PRICES_READ = "November 2026"

# Memory -> vCPU of a function that sets only --memory (Cloud Run functions' memory/CPU table).
VCPU_FOR_MEMORY = {"128Mi": 0.083, "256Mi": 0.167, "512Mi": 0.333, "1Gi": 0.583, "2Gi": 1.0, "4Gi": 2.0}
_SPEC = re.compile(r'^\s*"([a-z_]+)\|[^|]*\|[^|]*\|([0-9]+[MG]i)\|[0-9]+\|[^|]*\|[^|]*(?:\|([0-9.]+))?')


def function_sizes() -> dict[str, tuple[float, float]]:
    """Function name -> (GiB, vCPU), read from deploy.sh's FUNCTIONS table (vCPU: its own column, else
    what the memory brings)."""
    sizes = {}
    for line in (ROOT / "deploy.sh").read_text().splitlines():
        match = _SPEC.match(line)
        if match:
            name, memory, cpu = match.groups()
            gib = int(memory[:-2]) / (1024 if memory.endswith("Mi") else 1)
            sizes[name] = (gib, float(cpu) if cpu else VCPU_FOR_MEMORY.get(memory, 1.0))
    return sizes


# The shape the user-facing functions had before they got a whole vCPU (memory only, so the vCPU that
# memory brings): the "previous" columns of the cold-start and cost benchmarks.
PREVIOUS_SHAPE: dict[str, tuple[float, float]] = {  # name -> (GiB, vCPU)
    "generate_video": (0.5, VCPU_FOR_MEMORY["512Mi"]),
    "cancel_video": (0.25, VCPU_FOR_MEMORY["256Mi"]),
    "runwayml_status_check": (0.25, VCPU_FOR_MEMORY["256Mi"]),
}


def previous_sizes() -> dict[str, tuple[float, float]]:
    """`function_sizes()` with the user-facing functions in their previous shape."""
    return function_sizes() | PREVIOUS_SHAPE
