"""The local stack and the demo: what they configure, that they start and stop leaving nothing, and
that the demo makes a real MP4 from the sample script through every part of the system."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from google.oauth2 import id_token

from config import load_settings
from local import stack_env as plan
from local.procs import port_open
from local.progress import ProgressDisplay, status_line
from local.serve import function_names
from local.stack import LocalStack, StackOptions
from local.tokens import TokenIssuer, task_auth_headers
from tasks.queue import build_task
from tests.conftest import ROOT
from web.auth import CachedCertsRequest

NOW = datetime(2030, 1, 1, tzinfo=UTC)
ENDS = plan.Endpoints(
    functions_base_url="http://127.0.0.1:1",
    firestore_host="127.0.0.1:2",
    tasks_host="127.0.0.1:3",
    certs_url="http://127.0.0.1:4/certs",
    token_key_file="/tmp/key.json",
    runwayml_url="http://127.0.0.1:5",
    heygen_url="http://127.0.0.1:6",
)


# -- what the stack configures (pure) ----------------------------------------------------------------


def test_served_functions_are_the_decorated_entry_points_of_main_py():
    names = function_names()
    assert {"generate_video", "cancel_video", "runwayml_status_check", "runwayml_polling_task"} <= set(names)
    assert "_user" not in names
    assert "_service" not in names


def test_a_real_provider_key_in_the_environment_switches_its_simulator_off():
    modes = plan.provider_modes({"RUNWAYML_API_KEY": "key_real"})
    assert modes == {"runwayml": plan.REAL, "heygen": plan.SIMULATOR}
    assert "real money" in plan.real_money_warnings(modes)[0]


def test_a_real_heygen_key_without_an_avatar_is_refused():
    with pytest.raises(plan.PlanError, match="HEYGEN_AVATAR_ID"):
        plan.provider_modes({"HEYGEN_API_KEY": "hg"})


def test_functions_env_points_every_setting_at_loopback_and_drops_inherited_ones():
    env = plan.functions_env({"PATH": "/bin", "STORAGE_BUCKET": "prod-bucket", "HEYGEN_API_KEY": "hg"}, ENDS)
    settings = load_settings(env)
    assert env["PATH"] == "/bin"
    assert settings.storage_bucket is None
    assert settings.heygen_base_url == "http://127.0.0.1:6"
    assert settings.heygen_api_key.get_secret_value() == plan.HEYGEN_SIM_KEY
    assert settings.tasks_emulator_host == "127.0.0.1:3"
    assert settings.local_token_key_file == "/tmp/key.json"


def test_functions_env_passes_a_real_key_through_without_touching_its_base_url():
    real = plan.Endpoints(**{**ENDS.__dict__, "runwayml_url": None})
    settings = load_settings(plan.functions_env({"RUNWAYML_API_KEY": "key_real"}, real))
    assert settings.runwayml_api_key.get_secret_value() == "key_real"
    assert settings.runwayml_base_url == "https://api.dev.runwayml.com"


def test_fault_rate_spreads_over_request_faults_only():
    spec = plan.fault_mix(0.5)
    rates = {kind: float(rate) for kind, rate in (part.split("=") for part in spec.split(","))}
    assert sum(rates.values()) == pytest.approx(0.5)
    assert "stuck" not in rates
    assert "moderation" not in rates
    assert plan.fault_mix(0) == ""
    with pytest.raises(plan.PlanError):
        plan.fault_mix(1.5)


def test_emulator_tasks_carry_a_token_for_their_url_only_when_a_local_key_is_configured(tmp_path):
    issuer = TokenIssuer(tmp_path / "key.json")
    try:
        base = {
            "GOOGLE_CLOUD_PROJECT": "p",
            "FUNCTIONS_BASE_URL": "http://127.0.0.1:9",
            "TASKS_SERVICE_ACCOUNT": "tasks@p.iam.gserviceaccount.com",
            "LOCAL_TOKEN_KEY_FILE": str(tmp_path / "key.json"),
        }
        args = {"function": "runwayml_polling_task", "payload": {}, "name_key": "k", "delay_s": 0}
        emulated = load_settings(base | {"CLOUD_TASKS_EMULATOR_HOST": "127.0.0.1:1"})
        headers = task_auth_headers(emulated)("http://127.0.0.1:9/runwayml_polling_task?x=1")
        local = build_task(emulated, **args, now=NOW, headers=headers)
        assert task_auth_headers(load_settings(base)) is None
        cloud = build_task(load_settings(base), **args, now=NOW)
        token = local.http_request.headers["Authorization"].removeprefix("Bearer ")
        claims = id_token.verify_token(
            token,
            CachedCertsRequest(),
            audience="http://127.0.0.1:9/runwayml_polling_task",
            certs_url=issuer.certs_url,
        )
        assert claims["email"] == "tasks@p.iam.gserviceaccount.com"
        assert "Authorization" not in cloud.http_request.headers
    finally:
        issuer.stop()


def test_progress_redraws_one_line_on_a_terminal():
    out = io.StringIO()
    display = ProgressDisplay(out, tty=True)
    job = {"jobId": "j1", "status": "processing", "progress": 40, "provider": "heygen"}
    display.update({"j1": job}, 1.0)
    display.update({"j1": job | {"progress": 60}}, 2.0)
    display.finish()
    assert out.getvalue().count("\r") == 2
    assert out.getvalue().endswith("\n")
    assert "60%" in out.getvalue()
    assert "heygen" in out.getvalue()


def test_progress_prints_plain_lines_only_on_change_elsewhere():
    out = io.StringIO()
    display = ProgressDisplay(out, tty=False)
    job = {"jobId": "j1", "status": "queued", "progress": 0, "provider": "heygen"}
    for _ in range(3):
        display.update({"j1": job}, 1.0)
    display.update({"j1": job | {"status": "completed", "progress": 100}}, 2.0)
    assert out.getvalue().splitlines() == ["j1: queued 0% heygen", "j1: completed 100% heygen"]
    assert "\r" not in out.getvalue()


def test_progress_of_several_jobs_counts_them_by_status_and_provider():
    jobs = {
        "a": {"status": "completed", "progress": 100, "provider": "heygen"},
        "b": {"status": "processing", "progress": 50, "provider": "runwayml"},
    }
    line = status_line(jobs, 3.0)
    assert "75%" in line
    assert "1 completed, 1 processing" in line
    assert "heygen 1, runwayml 1" in line


# -- the running stack -------------------------------------------------------------------------------


def _gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
def test_the_stack_starts_every_part_and_stops_leaving_no_process_or_port(tmp_path):
    state_file = tmp_path / "stack.json"
    with LocalStack(StackOptions(work_dir=tmp_path, state_file=state_file, speed=100)) as stack:
        pids, ports = dict(stack.started_pids), dict(stack.started_ports)
        assert {"functions", "Firestore emulator", "Cloud Tasks emulator"} <= set(pids)
        assert {"heygen simulator", "runwayml simulator", "token issuer"} <= set(ports)
        assert all(port_open(port) for port in ports.values())
        assert state_file.is_file()
        assert Path(stack.state.token_key_file).is_file()
        for name in stack.function_names:  # every function is mounted and answers (any status)
            assert requests.options(stack.url(name), timeout=5).status_code != 404
        missing = requests.get(stack.url("no_such_function"), timeout=5)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
    assert all(_gone(pid) for pid in pids.values()), pids
    assert not any(port_open(port) for port in ports.values()), ports
    assert not state_file.exists()
    assert not list(tmp_path.glob("issuer-key-*.json"))


def _processes_with(marker: str) -> list[int]:
    """PIDs of live processes whose environment carries `marker` (children inherit it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.slow
def test_the_demo_makes_a_real_mp4_from_the_sample_script_and_stops_everything(tmp_path):
    marker = f"CVPLUS_DEMO_TEST={uuid.uuid4().hex}"
    env = {**os.environ, marker.split("=")[0]: marker.split("=")[1]}
    env.pop("FIRESTORE_EMULATOR_HOST", None)
    argv = [sys.executable, "-m", "local.demo", "--speed=300", f"--out={tmp_path / 'out'}"]
    argv.append(f"--work-dir={tmp_path / 'work'}")
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        output, _ = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    videos = list((tmp_path / "out").glob("*.mp4"))
    assert len(videos) == 1, output
    assert videos[0].read_bytes()[4:8] == b"ftyp"
    assert "1/1 video(s) made" in output
    assert "why" in output
    assert "estimated $" in output
    assert _processes_with(marker) == []
