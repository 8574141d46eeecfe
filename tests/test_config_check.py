"""Configuration checked early: a misconfigured function answers 503 naming every variable it lacks,
before it touches a job; a provider that turns out misconfigured mid-run fails only its attempt."""

from __future__ import annotations

import subprocess
import sys

import pytest

from config import ConfigError, load_settings
from jobs.generate import generate
from local.serve import function_names
from tests.conftest import ROOT, TEST_PROJECT
from tests.stack import SCRIPT
from web import check
from web.schemas import GenerateRequest


def jobs_in(stack) -> list:
    return list(stack.deps.store.client.collection(stack.settings.jobs_collection).stream())


def test_heygen_key_without_avatar_answers_503_misconfigured_and_makes_no_job(stack_factory):
    stack = stack_factory(HEYGEN_AVATAR_ID="")
    answer = stack.generate()
    assert answer.status_code == 503
    error = answer.get_json()["error"]
    assert error["code"] == "misconfigured"
    assert "HEYGEN_AVATAR_ID" in error["message"]
    assert jobs_in(stack) == []
    assert len(stack.heygen.videos) == 0


def test_every_missing_variable_is_named_not_just_the_first(stack_factory):
    stack = stack_factory(HEYGEN_AVATAR_ID="", TASKS_SERVICE_ACCOUNT="", FUNCTIONS_BASE_URL="")
    error = stack.generate().get_json()["error"]
    for name in ("HEYGEN_AVATAR_ID", "TASKS_SERVICE_ACCOUNT", "FUNCTIONS_BASE_URL"):
        assert name in error["message"]
    assert len(error["problems"]) == 3


def test_a_provider_misconfigured_mid_run_fails_its_attempt_and_the_job_falls_back(stack_factory):
    stack = stack_factory(HEYGEN_AVATAR_ID="")  # the edge would refuse; the runner must cope anyway
    request = GenerateRequest(script=SCRIPT, provider="heygen").job_request()
    result = generate(stack.deps.intake, "alice", SCRIPT, request, None, "free")
    assert result.status == 202, result.body
    job = stack.deps.store.get_job(result.body["jobId"])
    assert [(a.provider, str(a.status)) for a in job.attempts] == [
        ("heygen", "failed"),
        ("runwayml", "active"),
    ]
    assert job.attempts[0].error["code"] == "misconfigured"


def test_load_settings_names_every_bad_variable():
    environ = {"RETENTION_DAYS": "0", "HTTP_MAX_ATTEMPTS": "99", "RUNWAYML_CREDITS_PER_SECOND": "{"}
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    for name in (
        "GOOGLE_CLOUD_PROJECT",
        "RETENTION_DAYS",
        "HTTP_MAX_ATTEMPTS",
        "RUNWAYML_CREDITS_PER_SECOND",
    ):
        assert name in caught.value.message
    assert len(caught.value.details["problems"]) == 4


def test_the_table_covers_every_entry_point():
    entry_points = function_names(ROOT / "main.py")  # read from main.py's decorators, as served
    assert len(entry_points) == 10
    assert set(check.NEEDS) == set(entry_points)


FULL = f"""GOOGLE_CLOUD_PROJECT: '{TEST_PROJECT}'
FUNCTIONS_BASE_URL: 'https://us-central1-x.cloudfunctions.net'
TASKS_SERVICE_ACCOUNT: 'tasks@x.iam.gserviceaccount.com'
OPS_SERVICE_ACCOUNTS: 'ops@x.iam.gserviceaccount.com'
SCHEDULER_SERVICE_ACCOUNT: 'scheduler@x.iam.gserviceaccount.com'
STORAGE_BUCKET: 'videos'
HEYGEN_AVATAR_ID: 'avatar-1'
OUTPUT_HOSTS: 'a.example.com,.heygen.ai'
"""
SECRETS = ["HEYGEN_API_KEY", "RUNWAYML_API_KEY", "HEYGEN_WEBHOOK_SECRET", "RUNWAYML_WEBHOOK_SECRET"]


def test_the_check_command_passes_a_complete_deploy_environment(tmp_path, capsys):
    env = tmp_path / "env.yaml"
    env.write_text(FULL)
    args = ["--env-file", str(env), *(f"--secret={name}" for name in SECRETS)]
    assert check.main(args) == 0
    assert "configuration ok" in capsys.readouterr().out


def test_the_check_command_lists_every_problem_and_exits_1(tmp_path):
    env = tmp_path / "env.yaml"
    env.write_text(
        FULL.replace("HEYGEN_AVATAR_ID: 'avatar-1'\n", "").replace("STORAGE_BUCKET: 'videos'\n", "")
    )
    command = [sys.executable, "-m", "web.check", "--env-file", str(env), "--secret", "HEYGEN_API_KEY"]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 1
    assert "generate_video: HEYGEN_AVATAR_ID is not set" in out.stdout
    assert "finalize_video_task: STORAGE_BUCKET is not set" in out.stdout
    assert "heygen_webhook: HEYGEN_WEBHOOK_SECRET is not set" in out.stdout
    assert "runwayml_webhook: RUNWAYML_API_KEY is not set" in out.stdout


def test_the_check_command_names_invalid_values_for_all_functions(tmp_path):
    env = tmp_path / "env.yaml"
    env.write_text(FULL + "RETENTION_DAYS: '0'\n")
    assert check.report(check.read_env_file(env.read_text()), ["cancel_video"]) == [
        "all functions: RETENTION_DAYS is invalid: Expected `int` >= 1"
    ]


def test_each_settings_object_is_checked_for_itself():
    bare = load_settings({"GOOGLE_CLOUD_PROJECT": TEST_PROJECT})
    ready = load_settings(
        {
            "GOOGLE_CLOUD_PROJECT": TEST_PROJECT,
            "FUNCTIONS_BASE_URL": "https://functions.example",
            "OPS_SERVICE_ACCOUNTS": "ops@example.iam.gserviceaccount.com",
        }
    )
    with pytest.raises(ConfigError, match="FUNCTIONS_BASE_URL"):
        check.require("provider_health", bare)
    check.require("provider_health", ready)
    with pytest.raises(ConfigError, match="OPS_SERVICE_ACCOUNTS"):
        check.require("provider_health", bare)
