"""Functions served as deployed, and a keep-alive HTTP load loop against them.

`serve()` runs the `functions-framework` command (gunicorn, one worker, its default threads: the
production server of the Python runtime) in its own process group on a free loopback port.
`hammer()` sends a bounded number of GETs over persistent connections and returns each latency.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.common import ROOT
from local.procs import ManagedProcess, free_port, http_ready

FUNCTIONS_FRAMEWORK = ROOT / ".venv" / "bin" / "functions-framework"
MAX_REQUEST_S = 10.0


def serve(target: str, source: Path, env: Mapping[str, str], log_dir: Path) -> tuple[ManagedProcess, str]:
    """Start `target` from `source` behind functions-framework; (process, base URL) once it answers."""
    port = free_port()
    argv = [str(FUNCTIONS_FRAMEWORK), f"--target={target}", f"--source={source}"]
    argv += ["--host=127.0.0.1", f"--port={port}"]
    process = ManagedProcess(
        f"functions-framework {target}", argv, log_path=log_dir / f"{target}.log", env=dict(env), cwd=ROOT
    )
    process.start()
    url = f"http://127.0.0.1:{port}"
    process.wait_ready(http_ready(url + "/"), timeout_s=60)
    return process, url


def hammer(
    url: str, headers: Mapping[str, str], count: int, concurrency: int = 1
) -> tuple[list[float], float, int]:
    """GET `url` `count` times on `concurrency` keep-alive connections: (latencies s, wall s, errors)."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    share = [count // concurrency + (1 if i < count % concurrency else 0) for i in range(concurrency)]

    def worker(n: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=MAX_REQUEST_S)
        mine = []
        bad = 0
        for _ in range(n):
            began = time.perf_counter()
            try:
                conn.request("GET", path, headers=dict(headers))
                response = conn.getresponse()
                response.read()
                bad += response.status != 200
            except (OSError, http.client.HTTPException):
                bad += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=MAX_REQUEST_S)
            mine.append(time.perf_counter() - began)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=worker, args=(n,)) for n in share if n]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - began, errors[0]
