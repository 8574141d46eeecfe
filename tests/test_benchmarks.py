"""Smoke runs of the benchmarks: each in its `--quick` size, checking the shape of what it reports.

Nothing here asserts a speed: the numbers of a quick run mean nothing. What is pinned is that every
benchmark runs, measures both its variant and its baseline, and reports well-formed tables.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from benchmarks import cold_start, cpu_share, polling
from benchmarks.__main__ import main as bench_main
from benchmarks.__main__ import run_all
from benchmarks.common import (
    MET,
    NOT_MET,
    NOT_RUN,
    REPORTED,
    Section,
    interleave,
    judge,
    percentile,
    table,
)
from benchmarks.counting import FirestoreCounter
from benchmarks.env import Context
from benchmarks.report import render

VERDICTS = (MET, NOT_MET, REPORTED)


@pytest.fixture
def ctx(firestore_emulator, tmp_path):
    context = Context(
        quick=True, docs_dir=tmp_path, plots=False, work_dir=tmp_path / "work", emulator=firestore_emulator
    )
    yield context
    context.close()


def run_one(ctx, name: str) -> Section:
    [section] = run_all(ctx, [name], echo=False)
    assert section.verdict.removesuffix(" (borderline)") in VERDICTS, section.body
    assert section.headline
    assert section.body
    return section


def table_rows(markdown: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in markdown.splitlines()
        if line.startswith("|") and not line.startswith("|---")
    ]


# -- helpers ----------------------------------------------------------------------------------------


def test_percentile_is_nearest_rank():
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([1.0, 2.0], 95) == 2.0
    assert math.isnan(percentile([], 50))


def test_interleave_alternates_the_order_of_the_variants():
    calls = []
    pooled = interleave({"a": lambda: calls.append("a") or [1.0], "b": lambda: calls.append("b") or [2.0]}, 3)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert pooled == {"a": [1.0] * 3, "b": [2.0] * 3}


def test_a_verdict_near_its_goal_is_marked_borderline():
    assert judge(12.5, 10, at_least=True) == MET
    assert judge(10.5, 10, at_least=True) == "met (borderline)"
    assert judge(0.7, 0.8, at_least=True) == "not met (borderline)"
    assert judge(3.0, 1.5, at_least=False) == NOT_MET


def test_a_table_has_a_header_a_rule_and_one_line_per_row():
    text = table(("x", "y"), [(1, 2.5), ("a", float("nan"))])
    assert text.splitlines() == ["| x | y |", "|---|---|", "| 1 | 2.50 |", "| a | – |"]


def test_the_report_summarises_every_section():
    sections = [
        Section("a", "Alpha", "be fast", MET, "2× faster", "body A"),
        Section("b", "Beta", "be small", NOT_RUN, "not in the tree yet", "body B"),
    ]
    machine = {
        "cpu": "cpu",
        "cores": 2,
        "memory_gib": 24.0,
        "system": "Linux",
        "python": "3.11",
        "load": (1.0, 1.0, 1.0),
    }
    text = render(sections, {"before": machine, "after": machine, "when": "now"}, 60.0, quick=True)
    assert text.startswith("# Performance")
    assert "| Alpha | be fast | **met** | 2× faster |" in text
    assert "## Beta" in text
    assert "body B" in text


# -- polling (pure) ---------------------------------------------------------------------------------


def test_a_runway_task_shows_its_end_at_the_next_refresh_tick():
    job = polling.Job(started=2.0, render_s=20.0, phase=1.0, refresh_s=5.0, progress_reported=True)
    assert job.visible_done == 26.0
    assert job.seen(25.9) == ("processing", 95.0)  # as of the tick at 21 s: 19 of 20 s rendered
    assert job.seen(26.0) == ("completed", 100.0)
    assert job.seen(0.5) == ("queued", 0.0)


def test_heygen_tasks_report_no_progress_but_the_fixed_midpoint():
    [job] = polling.heygen_jobs(1, seed=3)
    assert job.seen(job.started + 1 + job.refresh_s) == ("processing", polling.HEYGEN_MIDPOINT)


def test_polling_benchmark_reports_every_schedule_against_the_oracle(ctx):
    section = run_one(ctx, "polling")
    scenarios = section.data["scenarios"]
    assert set(scenarios) == {"RunwayML, idle account", "RunwayML, busy account", "HeyGen, polling only"}
    for outcomes in scenarios.values():
        oracle, *others = outcomes
        assert (oracle["polls_mean"], oracle["delay_p50"]) == (1.0, 0.0)
        assert all(o["polls_mean"] >= 1 and o["delay_p50"] >= 0 for o in others)
        assert all(o["jobs"] == section.data["jobs"] for o in outcomes)
    assert section.body.count("| schedule |") == 3
    worlds = section.data["worlds"]
    assert len(worlds) == 14  # 2 accounts x (3 lognormal + uniform) x 2 tick phases, less the 2 above
    assert all(w[role]["polls_mean"] >= 1 for w in worlds for role in ("seed", "sdk", "project"))


# -- counting ---------------------------------------------------------------------------------------


def test_the_counter_sees_reads_writes_and_deletes(ctx):
    from google.cloud import firestore

    ctx.wipe()
    client = firestore.Client(project="cvplus-bench")
    counter = FirestoreCounter().attach(client)
    ref = client.collection("things").document("one")
    ref.set({"n": 1})
    ref.get()
    client.collection("things").document("missing").get()
    list(client.collection("empty").stream())
    ref.delete()
    seen = counter.snapshot()
    client.close()
    assert (seen["reads"], seen["writes"], seen["deletes"]) == (3, 1, 1)
    assert seen["writes_by_collection"] == {"things": 1}
    assert seen["rpcs"] == 5


# -- benchmarks on the emulator and in subprocesses -------------------------------------------------


@pytest.mark.slow
def test_status_check_benchmark_measures_both_functions_over_http(ctx):
    section = run_one(ctx, "status_check")
    results = section.data["results"]
    assert set(results) == {1, 4}
    for by_name in results.values():
        assert len(by_name) == 2
        assert all(r["errors"] == 0 and r["rps"] > 0 and r["p99_ms"] >= r["p50_ms"] for r in by_name.values())
    assert {"verify ID token", "job view + JSON", "rpcs"} <= set(section.data["steps_ms"])
    assert section.data["steps_ms"]["rpcs"] >= 1


@pytest.mark.slow
def test_batch_benchmark_counts_round_trips_on_both_sides(ctx):
    section = run_one(ctx, "batch")
    rows = section.data["rows"]
    assert [r["jobs"] for r in rows] == [3, 10]
    for row in rows:
        assert row["batch_rpcs"] >= 1
        assert row["single_rpcs"] >= row["jobs"]
        assert row["batch_reads"] == row["reported_reads"] == row["jobs"]
        assert row["provider_calls"] == 0
    assert 40 < section.data["peak_rss_mib"] < section.data["memory_mib"] == 512  # the gunicorn worker


@pytest.mark.slow
def test_cold_start_benchmark_answers_from_fresh_processes(ctx):
    section = run_one(ctx, "cold_start")
    summary = section.data["summary"]
    assert [s["status"] for s in summary.values()] == [200, 200, 200, 401, 200]
    assert section.data["settings_to_read"] > 0
    assert all(s["total_s"] > 0 and s["max_rss_mib"] > 0 for s in summary.values())
    assert table_rows(section.body)[0][0] == "variant"
    shapes = section.data["shapes"]
    assert shapes or not cpu_share.available()
    assert {(s["function"], s["shape"]) for s in shapes} == {
        (name, shape) for name in cold_start.USER_FACING for shape in ("previous", "deployed")
    } or not shapes
    # each first request goes all the way: a video created, a job cancelled, a job read
    assert all(s["status"] == (202 if s["function"] == "generate_video" else 200) for s in shapes)
    assert all(s["max_rss_mib"] > 0 and s["warm_s"] > 0 for s in shapes)


@pytest.mark.skipif(not cpu_share.available(), reason="needs root and the cgroup v1 cpu controller")
def test_a_process_in_a_cpu_share_gets_no_more_than_its_share():
    spin = "import time\nend = time.monotonic() + 1.0\nwhile time.monotonic() < end: pass\n"
    spin += "import os; print(sum(os.times()[:2]))"
    with cpu_share.cpu_share(0.2) as enter:
        done = subprocess.run(
            [sys.executable, "-c", spin], capture_output=True, text=True, preexec_fn=enter, check=True
        )
    assert float(done.stdout) < 0.35  # a fifth of the second it spun, plus the interpreter's start


@pytest.mark.slow
def test_finalize_benchmark_stores_a_video_and_its_gif_and_adds_up_their_memory(ctx):
    section = run_one(ctx, "finalize")
    data = section.data
    assert data["memory_mib"] == 1024
    assert data["process_mib"] > 40
    assert data["ffmpeg_mib"] > 5  # ffmpeg ran, as a child of the probe
    assert data["mp4_mib"] > 0.1
    assert data["gif_mib"] > 0
    parts = data["process_mib"] + data["ffmpeg_mib"] + data["mp4_mib"] + data["gif_mib"]
    assert data["total_mib"] == pytest.approx(parts)


@pytest.mark.slow
def test_cost_benchmark_prices_completed_jobs_of_both_providers(ctx):
    section = run_one(ctx, "cost")
    jobs = section.data["jobs"]
    assert {j["provider"] for j in jobs} == {"runwayml", "heygen"}
    assert all(j["status"] == "completed" for j in jobs)
    assert all(j["reads"] > 0 and j["writes"] > 0 and j["tasks_created"] >= 1 for j in jobs)
    assert all(p["cloud"] > 0 for p in section.data["per_thousand"].values())


def test_the_command_writes_the_page(firestore_emulator, tmp_path):
    out = tmp_path / "PERFORMANCE.md"
    assert bench_main(["--quick", "--only", "polling", "--no-plots", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Performance")
    assert "## Polling efficiency" in text


@pytest.mark.slow
def test_cleanup_benchmark_deletes_every_record_in_both_variants(ctx):
    pytest.importorskip("tasks.cleanup")
    section = run_one(ctx, "cleanup")
    records = section.data["records"]
    assert section.data["sweep"]["deletes"] == section.data["naive"]["deletes"]
    assert section.data["naive"]["deletes"] >= records  # each job's user view goes with it
    assert section.data["naive"]["rpcs"] > section.data["sweep"]["rpcs"]
    assert all(section.data[v]["peak_rss_mib"] > 0 for v in ("sweep", "naive", "small"))


@pytest.mark.slow
def test_throughput_benchmark_ends_every_job_on_the_local_stack(ctx):
    section = run_one(ctx, "throughput")
    assert section.data["submitted"] == 4
    assert section.data["lost"] == 0
    assert sum(section.data["statuses"].values()) == 4
    assert "functions" in section.data["cpu"]
    assert section.data["creates_per_s"] > 0
    assert section.data["lock_timeouts"] == 0
    assert 40 < section.data["peak_rss_mib"] < 1024  # the functions process, all functions loaded


@pytest.mark.slow
def test_admission_benchmark_times_generate_video_with_and_without_the_limits(ctx):
    section = run_one(ctx, "admission")
    assert section.data["ratio"] > 0
    assert "limits on" in section.body
    assert "limits off" in section.body
