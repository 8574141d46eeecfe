"""The operator CLI against a running local stack: every command, --json output, clear errors and
the exit code of each failure kind (run as `python -m ops`, and through `make ops`)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from local.procs import free_port
from local.stack import LocalStack, StackOptions
from local.stack_env import UNLIMITED_PLANS
from ops.cli import main
from ops.client import EXIT_DENIED, EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
from ops.target import GcloudTokens, OpsError
from tests.conftest import ROOT
from web.auth import Verifier

SCRIPT = ROOT / "samples" / "cv_script.txt"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    work = tmp_path_factory.mktemp("cli-stack")
    options = StackOptions(  # one user submits every job: the per-user limits are lifted
        work_dir=work, state_file=work / "stack.json", speed=300, extra_env=UNLIMITED_PLANS
    )
    with LocalStack(options) as running:
        yield running


@pytest.fixture
def ops(stack: LocalStack, capsys: pytest.CaptureFixture[str]):
    """Run `python -m ops --state-file <stack> ARGS` in-process: (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["--state-file", str(stack.options.state_file), *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def run_cli(stack: LocalStack, *args: str) -> tuple[int, str, str]:
    """`python -m ops --state-file <stack> ARGS` in a process of its own: (exit code, stdout, stderr)."""
    argv = [sys.executable, "-m", "ops", "--state-file", str(stack.options.state_file), *args]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def finished(stack: LocalStack, downloads: Path) -> dict:
    """One GIF job submitted through the CLI (as the local user), waited for and downloaded."""
    args = ["--kind", "clip", "--format", "gif", "--download", str(downloads), "--timeout", "90"]
    code, out, err = run_cli(stack, "--json", "submit", str(SCRIPT), *args)
    assert code == EXIT_OK, err
    return json.loads(out)


@pytest.fixture(scope="module")
def finished_job(finished: dict) -> dict:
    return finished["job"]


def test_submit_waits_for_the_job_and_reports_it_as_json(finished_job):
    assert finished_job["status"] == "completed"
    assert finished_job["provider"] == "runwayml"
    assert finished_job["output"]
    assert ISO_UTC.match(finished_job["createdAt"])
    assert ISO_UTC.match(finished_job["endedAt"])


def test_submit_download_saves_the_mp4_and_the_gif(finished, downloads):
    job_id = finished["job"]["jobId"]
    files = {Path(f["path"]).name: f["bytes"] for f in finished["files"]}
    assert files == {
        f"{job_id}.mp4": (downloads / f"{job_id}.mp4").stat().st_size,
        f"{job_id}.gif": (downloads / f"{job_id}.gif").stat().st_size,
    }
    assert (downloads / f"{job_id}.mp4").read_bytes()[4:8] == b"ftyp"
    assert (downloads / f"{job_id}.gif").read_bytes()[:4] == b"GIF8"


def test_submit_reports_the_prompt_and_the_quality_score(finished):
    assert finished["prompt"]
    assert "engineer" in finished["prompt"]
    assert isinstance(finished["job"]["qualityScore"], int)


def test_submit_reads_the_script_from_stdin(ops, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(SCRIPT.read_text()))
    code, out, _ = ops("--json", "submit", "-", "--style", "friendly", "--provider", "runwayml")
    assert code == EXIT_OK
    assert json.loads(out)["jobId"]


def test_status_shows_the_job_as_a_table_and_as_json(ops, finished_job):
    code, out, _ = ops("status", finished_job["jobId"])
    assert code == EXIT_OK
    assert "completed (100%)" in out
    assert "selection" in out
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert ISO_UTC.match(lines["created"])
    assert re.fullmatch(r"\d+/100", lines["quality"])
    assert lines["prompt"]
    assert lines["gif"].split("?")[0].endswith(".gif")
    assert re.fullmatch(r"estimated \$\d+\.\d\d, actual \$\d+\.\d\d", lines["cost"])
    code, out, _ = ops("status", finished_job["jobId"], "--json")
    assert json.loads(out)["job"]["jobId"] == finished_job["jobId"]


def test_status_of_an_unknown_job_is_not_found(ops):
    code, out, err = ops("--json", "status", "no-such-job")
    assert code == EXIT_NOT_FOUND
    assert "HTTP 404" in err
    assert json.loads(out)["error"]["status"] == 404


def test_status_as_another_user_is_not_found(ops, finished_job):
    code, _, err = ops("status", finished_job["jobId"], "--user", "mallory")
    assert code == EXIT_NOT_FOUND
    assert "not yours" in err


def test_jobs_lists_by_owner_and_by_status(ops, finished_job):
    code, out, _ = ops("jobs", "--owner", "local-user", "--json")
    assert code == EXIT_OK
    assert finished_job["jobId"] in [j["jobId"] for j in json.loads(out)["jobs"]]
    code, out, _ = ops("jobs", "--status", "completed")
    assert code == EXIT_OK
    assert finished_job["jobId"] in out
    assert out.splitlines()[0].split()[:2] == ["job", "status"]


def test_batch_check_by_ids_and_by_filter(ops, finished_job):
    code, out, _ = ops("batch-check", finished_job["jobId"], "unknown-job", "--json")
    assert code == EXIT_OK
    summary = json.loads(out)["summary"]
    assert (summary["found"], summary["notFound"]) == (1, 1)
    code, out, _ = ops("batch-check", "--status", "completed")
    assert code == EXIT_OK
    assert finished_job["jobId"] in out


def test_batch_check_refuses_ids_and_a_filter_together(ops):
    code, _, err = ops("batch-check", "some-job", "--status", "queued")
    assert code == EXIT_USAGE
    assert "not both" in err


def test_cleanup_dry_run_changes_nothing(ops):
    code, out, _ = ops("cleanup", "--dry-run", "--json")
    assert code == EXIT_OK
    assert json.loads(out)["dryRun"] is True
    code, out, _ = ops("cleanup", "--dry-run")
    assert out.splitlines()[0] == "cleanup (dry run: nothing changed); complete: yes"
    assert out.splitlines()[1].split() == ["step", "what", "count"]


def test_health_shows_budget_and_balance_columns(ops, finished_job):
    code, out, _ = ops("health")
    assert code == EXIT_OK
    header, *rows = out.splitlines()
    assert "budget left" in header
    assert "balance" in header
    runwayml = next(row for row in rows if row.startswith("runwayml"))
    assert re.search(r"runwayml\s+yes\s+\d+ ms\s+closed\s+\d+/\d+ per \w+\s+\$[\d.]+\d\d\s", runwayml)


def test_health_reports_both_providers(ops, finished_job):
    code, out, _ = ops("health", "--json")
    assert code == EXIT_OK
    providers = json.loads(out)["providers"]
    assert set(providers) == {"heygen", "runwayml"}
    assert all(p["health"]["reachable"] for p in providers.values())


# Every command as a process: --json is one JSON document on stdout, and the exit code stays.
JSON_CASES = {
    "submit": (["submit", str(SCRIPT), "--kind", "clip"], EXIT_OK, "jobId"),
    "status": (["status", "{job}"], EXIT_OK, "job"),
    "status of an unknown job": (["status", "no-such-job"], EXIT_NOT_FOUND, "error"),
    "cancel of a finished job": (["cancel", "{job}"], EXIT_FAILED, "error"),
    "cancel of an unknown job": (["cancel", "no-such-job"], EXIT_NOT_FOUND, "error"),
    "jobs": (["jobs", "--owner", "local-user"], EXIT_OK, "jobs"),
    "batch-check": (["batch-check", "{job}", "no-such-job"], EXIT_OK, "summary"),
    "cleanup": (["cleanup", "--dry-run"], EXIT_OK, "dryRun"),
    "health": (["health"], EXIT_OK, "providers"),
    "token": (["token", "--user", "alice"], EXIT_OK, "token"),
    "bad arguments": (["jobs", "--limit", "0"], EXIT_USAGE, None),
}


@pytest.mark.parametrize("case", JSON_CASES, ids=list(JSON_CASES))
def test_every_command_prints_json_and_keeps_its_exit_code(stack, finished_job, case):
    args, expected, key = JSON_CASES[case]
    code, out, err = run_cli(stack, *[a.format(job=finished_job["jobId"]) for a in args], "--json")
    assert code == expected, err
    if key is None:  # refused before anything ran: nothing on stdout, the reason on stderr
        assert out == ""
        assert "--limit" in err
        return
    payload = json.loads(out)
    assert key in payload
    if key == "error":
        assert payload["error"]["exitCode"] == expected


def make_ops(stack: LocalStack, args: str) -> subprocess.CompletedProcess[str]:
    """`make ops ARGS="--state-file <stack> ARGS"` (`-o`: never rebuild the shared virtualenv)."""
    state = f"--state-file {stack.options.state_file}"
    argv = ["make", "-o", ".venv/.installed", "ops", f"ARGS={state} {args}"]
    # as typed at a shell: under another make (CI's `make test`) make would add "Entering directory"
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False, env=env)


def test_make_ops_pipes_json_but_ends_failures_with_2(stack):
    """`make ops` prints only the CLI's output; make itself turns the CLI's 4 into 2."""
    result = make_ops(stack, "health --json")
    assert result.returncode == EXIT_OK, result.stderr
    assert set(json.loads(result.stdout)["providers"]) == {"heygen", "runwayml"}
    result = make_ops(stack, "status no-such-job --json")
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"]["exitCode"] == EXIT_NOT_FOUND


def test_token_is_accepted_by_the_verifier_and_the_running_stack(stack, finished_job):
    code, out, _ = run_cli(stack, "token", "--user", "alice", "--tier", "pro", "--json")
    assert code == EXIT_OK
    minted = json.loads(out)
    assert ISO_UTC.match(minted["expiresAt"])
    state = stack.state
    verifier = Verifier(
        firebase_project=state.project, firebase_certs_url=state.certs_url, google_certs_url=state.certs_url
    )
    caller = verifier.user(minted["token"])
    assert (caller.uid, caller.tier) == ("alice", "pro")
    code, out, _ = run_cli(stack, "token")  # plain: the token alone, for TOKEN=$(...)
    session = requests.Session()
    session.trust_env = False
    url, params = stack.url("runwayml_status_check"), {"jobId": finished_job["jobId"]}
    answer = session.get(url, params=params, headers={"Authorization": f"Bearer {out.strip()}"}, timeout=30)
    assert answer.status_code == 200
    answer = session.get(
        url, params=params, headers={"Authorization": f"Bearer {minted['token']}"}, timeout=30
    )
    assert answer.status_code == 404  # alice's token works, and the job is not hers


def test_token_is_for_the_local_stack_only(capsys):
    code = main(["--project", "some-project", "token"])
    assert code == EXIT_USAGE
    assert "local stack only" in capsys.readouterr().err


def test_cancel_ends_a_live_job_as_its_owner(ops):
    code, out, _ = ops("--json", "submit", str(SCRIPT), "--kind", "avatar", "--provider", "heygen")
    job_id = json.loads(out)["jobId"]
    code, out, err = ops("cancel", job_id, "--json")
    assert code == EXIT_OK, err
    assert json.loads(out)["job"]["status"] == "cancelled"
    code, out, _ = ops("status", job_id, "--json")
    job = json.loads(out)["job"]
    assert (job["status"], job["attempts"][-1]["status"]) == ("cancelled", "cancelled")
    code, out, _ = ops("cancel", job_id)  # again: harmless
    assert code == EXIT_OK
    assert "cancelled (" in out
    code, _, err = ops("cancel", job_id, "--user", "mallory")
    assert code == EXIT_NOT_FOUND


def test_an_unreachable_endpoint_is_a_clear_error(ops):
    code, _, err = ops("--base-url", f"http://127.0.0.1:{free_port()}", "health")
    assert code == EXIT_UNREACHABLE
    assert "cannot reach" in err


def test_no_running_stack_says_how_to_start_one(tmp_path, capsys):
    code = main(["--state-file", str(tmp_path / "none.json"), "jobs"])
    assert code == EXIT_UNREACHABLE
    assert "make stack" in capsys.readouterr().err


def test_bad_arguments_exit_with_the_usage_code(ops):
    with pytest.raises(SystemExit) as exited:
        ops("status")
    assert exited.value.code == EXIT_USAGE
    code, _, err = ops("jobs", "--limit", "0")
    assert code == EXIT_USAGE
    code, _, err = ops("submit", "/no/such/script.txt")
    assert code == EXIT_USAGE
    assert "cannot read the script" in err


def test_python_dash_m_ops_prints_a_table(stack, finished_job):
    argv = [sys.executable, "-m", "ops", "jobs", "--state-file", str(stack.options.state_file)]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == EXIT_OK, result.stderr
    assert finished_job["jobId"] in result.stdout


# -- a deployed project: where the identities come from ------------------------------------------


def test_deployed_user_calls_need_a_firebase_token_in_the_environment():
    with pytest.raises(OpsError, match="CVPLUS_ID_TOKEN") as raised:
        GcloudTokens(environ={}).user(None)
    assert raised.value.exit_code == EXIT_USAGE


def test_deployed_service_calls_say_when_gcloud_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(OpsError, match="gcloud CLI is not installed"):
        GcloudTokens().service("ops", "https://r-p.cloudfunctions.net/provider_health")


def test_deployed_service_calls_report_gcloud_refusing(monkeypatch, tmp_path):
    fake = tmp_path / "gcloud"
    fake.write_text(
        "#!/bin/sh\necho 'ERROR: (gcloud.auth) You do not currently have an active account' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    with pytest.raises(OpsError, match="active account") as raised:
        GcloudTokens().service("ops", "https://r-p.cloudfunctions.net/provider_health")
    assert raised.value.exit_code == EXIT_DENIED


def test_the_deployed_url_is_built_from_project_and_region():
    from ops.target import deployed_base_url

    assert deployed_base_url("my-proj", "europe-west1") == "https://europe-west1-my-proj.cloudfunctions.net"
