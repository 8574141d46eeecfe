"""One cold start, in a fresh process: import a function's source, answer one request, report times.

    python -m benchmarks.cold_probe SOURCE TARGET METHOD PATH [AUTHORIZATION [JSON_BODY]]

Prints one JSON line: `import_s` (functions-framework and the source module, `create_app`),
`first_request_s` (the first request through the app, which builds the lazy clients), `warm_s` (the
median of WARM_REQUESTS more of the same request, an environment variable, default 0), `status` (the
first request's HTTP status), `warm_statuses` (those the warm requests got), and
`max_rss_mib` (peak resident memory of this process: VmHWM, which starts afresh at exec, unlike
`ru_maxrss`, which Linux carries over from the parent that forked the probe) and
`children_max_rss_mib` (the largest peak of the processes it ran and waited for, such as ffmpeg).
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import json  # noqa: E402 - the clock starts before any import
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402


def main(argv: list[str]) -> None:
    source, target, method, path = argv[:4]
    headers = {"Authorization": argv[4]} if len(argv) > 4 and argv[4] else {}
    body = {"data": argv[5], "content_type": "application/json"} if len(argv) > 5 else {}
    import functions_framework

    app = functions_framework.create_app(target=target, source=source)
    imported = time.perf_counter()
    answer = app.test_client().open(path, method=method, headers=headers, **body)
    answered = time.perf_counter()
    warm, warm_statuses = [], set()
    for _ in range(int(os.environ.get("WARM_REQUESTS", "0"))):
        began = time.perf_counter()
        warm_statuses.add(app.test_client().open(path, method=method, headers=headers, **body).status_code)
        warm.append(time.perf_counter() - began)
    print(
        json.dumps(
            {
                "import_s": imported - STARTED,
                "first_request_s": answered - imported,
                "total_s": answered - STARTED,
                "warm_s": sorted(warm)[len(warm) // 2] if warm else None,
                "status": answer.status_code,
                "warm_statuses": sorted(warm_statuses),
                "max_rss_mib": peak_rss_mib(),
                "children_max_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            }
        ),
        flush=True,
    )


def peak_rss_mib(pid: int | str = "self") -> float:
    """A process's peak resident memory in MiB (VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def tree_peak_rss_mib(pid: int) -> float:
    """The largest peak resident memory of a running process and its descendants (gunicorn serves
    from a worker process under its master)."""
    peaks, todo = [], [pid]
    while todo:
        current = todo.pop()
        peaks.append(peak_rss_mib(current))
        for task in os.listdir(f"/proc/{current}/task"):
            with open(f"/proc/{current}/task/{task}/children") as children:
                todo += [int(child) for child in children.read().split()]
    return max(peaks)


if __name__ == "__main__":
    main(sys.argv[1:])
