"""The operator CLI against a running local stack: every command, --json output, clear errors and
the exit code of each failure kind."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from local.procs import free_port
from local.stack import LocalStack, StackOptions
from ops.cli import main
from ops.client import EXIT_DENIED, EXIT_NOT_FOUND, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
from ops.target import GcloudTokens, OpsError
from tests.conftest import ROOT

SCRIPT = ROOT / "samples" / "cv_script.txt"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    work = tmp_path_factory.mktemp("cli-stack")
    with LocalStack(StackOptions(work_dir=work, state_file=work / "stack.json", speed=300)) as running:
        yield running


@pytest.fixture
def ops(stack: LocalStack, capsys: pytest.CaptureFixture[str]):
    """Run `python -m ops --state-file <stack> ARGS` in-process: (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["--state-file", str(stack.options.state_file), *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="module")
def finished_job(stack: LocalStack) -> dict:
    """One job submitted and waited for through the CLI (as the local user)."""
    argv = [sys.executable, "-m", "ops", "--state-file", str(stack.options.state_file), "--json"]
    argv += ["submit", str(SCRIPT), "--kind", "clip", "--wait", "--timeout", "90"]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == EXIT_OK, result.stderr
    return json.loads(result.stdout)["job"]


def test_submit_waits_for_the_job_and_reports_it_as_json(finished_job):
    assert finished_job["status"] == "completed"
    assert finished_job["provider"] == "runwayml"
    assert finished_job["output"]


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


def test_health_reports_both_providers(ops, finished_job):
    code, out, _ = ops("health", "--json")
    assert code == EXIT_OK
    providers = json.loads(out)["providers"]
    assert set(providers) == {"heygen", "runwayml"}
    assert all(p["health"]["reachable"] for p in providers.values())


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
