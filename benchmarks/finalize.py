"""Finalize memory: the heaviest request `finalize_video_task` takes, in a fresh process in its
deployed shape.

A provider's finished video (an MP4 of realistic size, made once per run with the ffmpeg that
imageio-ffmpeg ships, served over loopback HTTP as a provider's CDN would) is copied into the
Storage emulator and turned into a GIF, as a job that asked for `format: gif` has it. The request is
one Cloud Tasks delivery (the tasks account's token), answered by a fresh functions-framework
process (benchmarks/cold_probe.py) under the CPU quota of finalize's deployed vCPU.

What the instance holds at its peak is bounded by the sum of the function's process (VmHWM), ffmpeg
(a child process: its peak RSS) and the files in /tmp while the GIF is made (the MP4 kept as the
GIF's source, and the GIF), because /tmp is memory on Cloud Functions. The goal: that sum at most
60 % of the memory deploy.sh gives the function.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks import cpu_share
from benchmarks.cold_start import MAIN_PY, probe
from benchmarks.common import MEMORY_SHARE_GOAL, Section, judge, median, table
from benchmarks.env import PROJECT, TASKS_SA, Context
from benchmarks.fixtures import finished_job, store_for
from benchmarks.prices import function_sizes

FUNCTION = "finalize_video_task"
FUNCTIONS_BASE = "http://127.0.0.1:9999"
BUCKET = f"{PROJECT}-videos"
VIDEO_S, VIDEO_BITRATE = 30, "8M"  # 1080p at 8 Mbit/s: about 30 MB, a long avatar video's size


def run(ctx: Context) -> Section:
    from local.storage_emulator import StorageEmulator
    from tasks.storage import gif_path, video_path

    runs = 1 if ctx.quick else 3
    seconds = 3 if ctx.quick else VIDEO_S
    video = make_video(ctx.work_dir / f"provider-{seconds}s.mp4", seconds)
    gib, vcpu = function_sizes()[FUNCTION]
    memory_mib = gib * 1024
    shaped = cpu_share.available()
    storage = StorageEmulator(ctx.work_dir / "logs").start()
    try:
        storage.create_bucket(PROJECT, BUCKET)
        env = ctx.function_env(
            FUNCTIONS_BASE, STORAGE_EMULATOR_HOST=storage.url, STORAGE_BUCKET=BUCKET, OUTPUT_HOSTS="127.0.0.1"
        )
        token = f"Bearer {ctx.issuer().service_token(TASKS_SA, f'{FUNCTIONS_BASE}/{FUNCTION}')}"
        store = store_for(PROJECT, STORAGE_BUCKET=BUCKET, STORAGE_EMULATOR_HOST=storage.url)
        results = []
        with served(video) as url:
            for _ in range(runs):
                job_id = finished_job(store, output_url=url, video_format="gif")
                attempt = store.get_job(job_id).current_attempt
                assert attempt is not None
                body = json.dumps({"jobId": job_id, "attemptId": attempt.attempt_id})
                outcome = probe(
                    [MAIN_PY, FUNCTION, "POST", "/", token, body], env, share=vcpu if shaped else None
                )
                output = store.get_job(job_id).output
                if outcome["status"] != 200 or output.get("gifPath") != gif_path(job_id):
                    raise RuntimeError(f"finalize answered {outcome['status']}; output {output}")
                if output["videoPath"] != video_path(job_id) or output["sizeBytes"] != video.stat().st_size:
                    raise RuntimeError(f"the stored video differs from the provider's: {output}")
                results.append(outcome | {"gif_mib": output["gifSizeBytes"] / 2**20})
        store.client.close()
    finally:
        storage.stop()
    return _section(results, video, memory_mib, vcpu, shaped)


def make_video(path: Path, seconds: int) -> Path:
    """A 1080p H.264 MP4 of `seconds` (ffmpeg's moving test pattern), made once and kept."""
    if not path.is_file():
        import imageio_ffmpeg

        path.parent.mkdir(parents=True, exist_ok=True)
        argv = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"]
        argv += ["-i", "testsrc2=size=1920x1080:rate=30", "-t", str(seconds), "-c:v", "libx264"]
        argv += ["-preset", "ultrafast", "-b:v", VIDEO_BITRATE, "-pix_fmt", "yuv420p", str(path)]
        subprocess.run(argv, check=True, capture_output=True, timeout=300)
    return path


@contextlib.contextmanager
def served(video: Path) -> Iterator[str]:
    """`video` served over loopback HTTP, as a provider's CDN serves a finished render; its URL."""
    handler = functools.partial(_Quiet, directory=str(video.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{video.name}"
    finally:
        server.shutdown()
        server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


def _section(
    results: list[dict[str, Any]], video: Path, memory_mib: float, vcpu: float, shaped: bool
) -> Section:
    process = max(r["max_rss_mib"] for r in results)
    ffmpeg = max(r["children_max_rss_mib"] for r in results)
    mp4 = video.stat().st_size / 2**20
    gif = max(r["gif_mib"] for r in results)
    total = process + ffmpeg + mp4 + gif
    share = total / memory_mib
    took = median([r["total_s"] for r in results])
    headline = (
        f"a {mp4:.0f} MiB MP4 stored with its GIF in {took:.1f} s at {vcpu:g} vCPU; at most {total:.0f} MiB "
        f"held = {share:.0%} of its {memory_mib:.0f} MiB (process {process:.0f}, ffmpeg {ffmpeg:.0f}, "
        f"temporary files {mp4 + gif:.0f})"
    )
    rows = [
        ("the function's process (peak RSS)", process),
        ("ffmpeg, making the GIF (peak RSS)", ffmpeg),
        ("temporary file: the MP4 kept as the GIF's source", mp4),
        ("temporary file: the GIF", gif),
        ("sum: what the instance holds at most", total),
    ]
    body = "\n\n".join(
        [
            __doc__.split("\n\n", 1)[1].strip(),
            f"{len(results)} run(s), a fresh process each; the largest of each figure is kept. Import + "
            f"answer took {took:.1f} s (median)"
            + (
                "."
                if shaped
                else "; no CPU quota could be set on this machine, so it ran on a full core "
                "(memory does not depend on it)."
            ),
            table(("part", "MiB"), rows),
            f"{share:.0%} of the {memory_mib:.0f} MiB deploy.sh gives `{FUNCTION}` (goal ≤ "
            f"{MEMORY_SHARE_GOAL:.0%}).",
        ]
    )
    return Section(
        key="finalize",
        title="Finalize memory",
        goal=f"a video with its GIF stored within {MEMORY_SHARE_GOAL:.0%} of the function's memory",
        verdict=judge(share, MEMORY_SHARE_GOAL, at_least=False),
        headline=headline,
        body=body,
        data={
            "process_mib": process,
            "ffmpeg_mib": ffmpeg,
            "mp4_mib": mp4,
            "gif_mib": gif,
            "total_mib": total,
            "memory_mib": memory_mib,
            "seconds": took,
        },
    )
