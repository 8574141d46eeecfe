"""Run a process under a CPU quota: the vCPU share a function is deployed with (cgroup v1).

    with cpu_share(0.167) as enter:
        subprocess.run([...], preexec_fn=enter)

The cpu controller at /sys/fs/cgroup/cpu gets a group whose quota is `share` of one core per
100 ms period (docs: /work/shared gcp-notes, "Emulating a deployed CPU share"); the child joins it
before it execs. Needs root and the v1 controller: `available()` says whether both are there.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000
_names = itertools.count()


def available() -> bool:
    return (ROOT / "cpu.cfs_quota_us").is_file() and os.access(ROOT, os.W_OK)


@contextlib.contextmanager
def cpu_share(share: float) -> Iterator[Callable[[], None]]:
    """A function for `preexec_fn` that moves the child into a group limited to `share` of a core."""
    group = ROOT / f"cvplus-bench-{os.getpid()}-{next(_names)}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(round(share * PERIOD_US)))
        tasks = str(group / "tasks")

        def enter() -> None:
            with open(tasks, "w") as handle:
                handle.write(str(os.getpid()))

        yield enter
    finally:
        group.rmdir()  # empty once the child has exited
