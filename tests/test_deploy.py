"""deploy.sh, checked with the real tools: shellcheck, and every printed gcloud command parsed by gcloud.

The dry run prints each command instead of running it. Each printed `gcloud ...` command is then run
through the real gcloud CLI with an empty, isolated configuration and no credentials: gcloud parses
every flag and argument first, so a command that is correct fails only for lack of an account
(exit 1, "gcloud auth login"), while a bad flag or value fails with exit 2 or a parse error. The dry
run itself runs with neither gcloud nor curl on PATH, which proves it needs no credentials or network.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy.sh"
PROJECT = "test-proj"
REGION = "us-central1"
BASE_URL = f"https://{REGION}-{PROJECT}.cloudfunctions.net"
FUNCTIONS = {  # name: (public, timeout, memory, invoker account prefix)
    "generate_video": (True, "120s", "512Mi", None),
    "cancel_video": (True, "60s", "256Mi", None),
    "runwayml_status_check": (True, "60s", "256Mi", None),
    "runwayml_batch_status_check": (False, "300s", "512Mi", "cvplus-video-ops@"),
    "runwayml_polling_task": (False, "120s", "256Mi", "cvplus-video-tasks@"),
    "finalize_video_task": (False, "540s", "1Gi", "cvplus-video-tasks@"),
    "runwayml_cleanup_task": (False, "540s", "512Mi", "cvplus-video-scheduler@"),
    "runwayml_webhook": (True, "60s", "256Mi", None),
    "heygen_webhook": (True, "60s", "256Mi", None),
    "provider_health": (False, "60s", "256Mi", "cvplus-video-ops@"),
}
RUNS_AS = {  # function: the runtime account it runs as (one per role)
    "generate_video": "cvplus-video-api",
    "cancel_video": "cvplus-video-api",
    "runwayml_status_check": "cvplus-video-api",
    "heygen_webhook": "cvplus-video-hook-heygen",
    "runwayml_webhook": "cvplus-video-hook-runwayml",
    "runwayml_polling_task": "cvplus-video-worker",
    "finalize_video_task": "cvplus-video-worker",
    "runwayml_cleanup_task": "cvplus-video-worker",
    "runwayml_batch_status_check": "cvplus-video-opsfn",
    "provider_health": "cvplus-video-opsfn",
}
KEYS = {"RUNWAYML_API_KEY", "HEYGEN_API_KEY"}
ENQUEUE = {"roles/cloudtasks.enqueuer@queue", "roles/iam.serviceAccountUser@cvplus-video-tasks"}
GRANTS = {  # runtime account: its roles beyond roles/datastore.user (role@resource) and its secrets
    "cvplus-video-api": (
        ENQUEUE
        | {"roles/storage.objectViewer@bucket", "roles/iam.serviceAccountTokenCreator@cvplus-video-api"},
        KEYS,
    ),
    "cvplus-video-hook-heygen": (ENQUEUE, KEYS | {"HEYGEN_WEBHOOK_SECRET"}),
    "cvplus-video-hook-runwayml": (ENQUEUE, KEYS | {"RUNWAYML_WEBHOOK_SECRET"}),
    "cvplus-video-worker": (ENQUEUE | {"roles/storage.objectUser@bucket"}, KEYS),
    "cvplus-video-opsfn": (ENQUEUE, KEYS),
}
LEGACY = f"serviceAccount:cvplus-video-runtime@{PROJECT}.iam.gserviceaccount.com"
TTL_COLLECTIONS = {
    "enhanced_video_jobs",
    "video_job_status",
    "runwayml_jobs",
    "heygen_jobs",
    "video_webhook_events",
    "video_quota",
    "video_health",
    "video_users",
    "video_refresh",
}
MINIMAL_INDEXES = {
    "indexes": [
        {
            "collectionGroup": "enhanced_video_jobs",
            "queryScope": "COLLECTION",
            "fields": [
                {"fieldPath": "ownerUid", "order": "ASCENDING"},
                {"fieldPath": "createdAt", "order": "DESCENDING"},
            ],
        }
    ],
    "fieldOverrides": [],
}
NO_CREDENTIALS = "You do not currently have an active account selected"
PARSE_ERRORS = re.compile(
    r"unrecognized arguments|argument [-\w]+: |Invalid value|invalid choice|Failed to load"
)
OFFLINE_COMMANDS = (("auth", "list"),)  # answered from the (empty) local configuration: exit 0


# --- helpers ---------------------------------------------------------------------------------


def path_without(tmp: Path, *tools: str) -> str:
    """A PATH directory holding every program on the current PATH except `tools`."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    for directory in [*os.environ["PATH"].split(os.pathsep), "/usr/bin", "/bin"]:
        if not Path(directory).is_dir():
            continue
        for program in Path(directory).iterdir():
            target = bin_dir / program.name
            if program.name not in tools and not target.exists() and os.access(program, os.X_OK):
                target.symlink_to(program)
    return str(bin_dir)


def deploy(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(DEPLOY), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def base_env(tmp: Path, path: str | None = None) -> dict[str, str]:
    """A clean environment: none of the developer's project settings leak into the run."""
    return {
        "PATH": path or os.environ["PATH"],
        "HOME": str(tmp),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
        "CLOUDSDK_CONFIG": str(tmp / "gcloud-config"),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
    }


def printed_commands(stdout: str, program: str) -> list[list[str]]:
    return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith(f"+ {program} ")]


def flag(command: list[str], name: str) -> str | None:
    values = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"{name}=")]
    assert len(values) <= 1, f"{name} given twice in {command}"
    return values[0] if values else None


def find(commands: list[list[str]], *prefix: str) -> list[list[str]]:
    return [c for c in commands if tuple(c[1 : 1 + len(prefix)]) == prefix]


@dataclass(frozen=True)
class GcloudVerdict:
    command: list[str]
    returncode: int
    stderr: str

    def parsed_cleanly(self) -> bool:
        if PARSE_ERRORS.search(self.stderr) or self.returncode == 2:
            return False
        if tuple(self.command[1:3]) in OFFLINE_COMMANDS:
            return self.returncode == 0
        return self.returncode == 1 and NO_CREDENTIALS in self.stderr


def run_real_gcloud(command: list[str], stdin: str = "") -> GcloudVerdict:
    """Run one command through the installed gcloud with a fresh empty configuration."""
    with tempfile.TemporaryDirectory() as config:
        env = base_env(Path(config))
        result = subprocess.run(
            command, env=env, input=stdin, capture_output=True, text=True, timeout=120, check=False
        )
    return GcloudVerdict(command, result.returncode, result.stderr)


def require_gcloud() -> None:
    if shutil.which("gcloud") is None:
        pytest.fail("the gcloud CLI is not installed; it checks every command deploy.sh prints")


# --- the dry run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DryRun:
    stdout: str
    gcloud: list[list[str]]
    curl: list[list[str]]
    work_dir: Path
    indexes: dict


@pytest.fixture(scope="module")
def tmp_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deploy")


@pytest.fixture(scope="module")
def dry_run(tmp_module: Path) -> DryRun:
    """One full dry run, with neither gcloud nor curl on PATH."""
    real_indexes = ROOT / "firestore.indexes.json"
    indexes_file = real_indexes
    if not real_indexes.is_file():
        indexes_file = tmp_module / "firestore.indexes.json"
        indexes_file.write_text(json.dumps(MINIMAL_INDEXES))
    env = base_env(tmp_module, path_without(tmp_module, "gcloud", "curl"))
    env |= {
        "INDEXES_FILE": str(indexes_file),
        "OPS_SERVICE_ACCOUNTS": "oncall@other-proj.iam.gserviceaccount.com",
        "HEYGEN_AVATAR_ID": "avatar-1",
        "RUNWAYML_CREDITS_PER_SECOND": '{"gen4.5": 12, "gen4_turbo": 5}',
    }
    result = deploy("--dry-run", "--project", PROJECT, "--region", REGION, env=env)
    assert result.returncode == 0, result.stderr
    match = re.search(r"^# generated files are kept in (\S+)$", result.stdout, re.MULTILINE)
    assert match, result.stdout
    return DryRun(
        stdout=result.stdout,
        gcloud=printed_commands(result.stdout, "gcloud"),
        curl=printed_commands(result.stdout, "curl"),
        work_dir=Path(match.group(1)),
        indexes=json.loads(indexes_file.read_text()),
    )


@pytest.mark.timeout(900)  # 40-odd real gcloud starts, three at a time: minutes on a busy machine
def test_every_printed_gcloud_command_is_accepted_by_the_real_gcloud(dry_run: DryRun) -> None:
    require_gcloud()
    assert len(dry_run.gcloud) > 40
    with ThreadPoolExecutor(max_workers=3) as pool:
        verdicts = list(pool.map(run_real_gcloud, dry_run.gcloud))
    rejected = [v for v in verdicts if not v.parsed_cleanly()]
    assert not rejected, "\n\n".join(
        f"{shlex.join(v.command)}\n  exit {v.returncode}: {v.stderr.strip()[:400]}" for v in rejected
    )


def test_a_bad_flag_is_caught_by_the_same_check() -> None:
    require_gcloud()
    verdict = run_real_gcloud(["gcloud", "functions", "deploy", "x", "--gen2", "--bogus"])
    assert not verdict.parsed_cleanly()
    assert verdict.returncode == 2


def test_each_function_is_deployed_once_with_its_access_timeout_and_memory(dry_run: DryRun) -> None:
    deploys = {c[3]: c for c in find(dry_run.gcloud, "functions", "deploy")}
    assert set(deploys) == set(FUNCTIONS)
    for name, (public, timeout, memory, _) in FUNCTIONS.items():
        command = deploys[name]
        assert ("--allow-unauthenticated" if public else "--no-allow-unauthenticated") in command
        assert flag(command, "--timeout") == timeout
        assert flag(command, "--memory") == memory
        assert flag(command, "--entry-point") == name
        assert flag(command, "--runtime") == "python312"
        assert flag(command, "--source") == "."
        assert {"--gen2", "--trigger-http"} <= set(command)
        assert flag(command, "--service-account") == f"{RUNS_AS[name]}@{PROJECT}.iam.gserviceaccount.com"


USER_FACING = ("generate_video", "cancel_video", "runwayml_status_check")
VCPU_OF_MEMORY = {"256Mi": 0.167, "512Mi": 0.333, "1Gi": 0.583}  # Google's memory/vCPU table


def test_the_functions_a_person_waits_on_get_a_whole_vcpu_the_rest_what_their_memory_brings(
    dry_run: DryRun,
) -> None:
    deploys = {c[3]: c for c in find(dry_run.gcloud, "functions", "deploy")}
    for name, command in deploys.items():
        cpu = float(flag(command, "--cpu"))
        assert cpu == (1.0 if name in USER_FACING else VCPU_OF_MEMORY[flag(command, "--memory")])
        concurrent = name in ("generate_video", "cancel_video", "runwayml_status_check")  # test_concurrency
        assert flag(command, "--concurrency") == ("8" if concurrent else "1")
        assert flag(command, "--min-instances") == "0"  # warm instances only when asked for


def test_min_instances_keeps_only_the_user_facing_functions_warm(tmp_path: Path) -> None:
    env = base_env(tmp_path, path_without(tmp_path, "gcloud", "curl")) | {"MIN_INSTANCES": "1"}
    result = deploy("--dry-run", "--project", PROJECT, "--region", REGION, env=env)
    assert result.returncode == 0, result.stderr
    deploys = {c[3]: c for c in find(printed_commands(result.stdout, "gcloud"), "functions", "deploy")}
    warm = {name for name, command in deploys.items() if flag(command, "--min-instances") == "1"}
    assert warm == set(USER_FACING)


def test_private_functions_are_invoked_only_by_their_service_accounts(dry_run: DryRun) -> None:
    bindings = find(dry_run.gcloud, "functions", "add-invoker-policy-binding")
    granted = {(c[3], flag(c, "--member")) for c in bindings}
    expected = {
        (name, f"serviceAccount:{prefix}{PROJECT}.iam.gserviceaccount.com")
        for name, (_, _, _, prefix) in FUNCTIONS.items()
        if prefix
    }
    extra_ops = "serviceAccount:oncall@other-proj.iam.gserviceaccount.com"
    expected |= {(name, extra_ops) for name in ("runwayml_batch_status_check", "provider_health")}
    assert granted == expected


def test_secrets_are_pinned_to_explicit_versions_and_webhook_secrets_go_only_to_their_webhook(
    dry_run: DryRun,
) -> None:
    assert ":latest" not in dry_run.stdout
    for command in find(dry_run.gcloud, "functions", "deploy"):
        if command[3] == "finalize_video_task":  # calls no provider API: no keys at all
            assert flag(command, "--set-secrets") is None
            assert "--clear-secrets" in command
            continue
        secrets = dict(item.split("=", 1) for item in flag(command, "--set-secrets").split(","))
        assert secrets["RUNWAYML_API_KEY"] == "RUNWAYML_API_KEY:1"
        assert secrets["HEYGEN_API_KEY"] == "HEYGEN_API_KEY:1"
        assert ("HEYGEN_WEBHOOK_SECRET" in secrets) == (command[3] == "heygen_webhook")
        assert ("RUNWAYML_WEBHOOK_SECRET" in secrets) == (command[3] == "runwayml_webhook")
    lookups = find(dry_run.gcloud, "secrets", "versions", "list")
    assert all(flag(c, "--filter") == "state:enabled" and flag(c, "--limit") == "1" for c in lookups)


def test_secret_access_is_granted_per_secret_not_project_wide(dry_run: DryRun) -> None:
    per_secret = find(dry_run.gcloud, "secrets", "add-iam-policy-binding")
    assert {c[3] for c in per_secret} == {
        "RUNWAYML_API_KEY",
        "HEYGEN_API_KEY",
        "HEYGEN_WEBHOOK_SECRET",
        "RUNWAYML_WEBHOOK_SECRET",
    }
    project_roles = {flag(c, "--role") for c in find(dry_run.gcloud, "projects", "add-iam-policy-binding")}
    assert project_roles == {"roles/datastore.user"}


def test_env_vars_file_keeps_values_with_commas_and_json_intact(dry_run: DryRun) -> None:
    deploys = find(dry_run.gcloud, "functions", "deploy")
    env_file = Path(flag(deploys[0], "--env-vars-file"))
    values = {}
    for line in env_file.read_text().splitlines():
        key, _, quoted = line.partition(": ")
        assert quoted.startswith("'"), line
        assert quoted.endswith("'"), line
        values[key] = quoted[1:-1].replace("''", "'")
    assert values["GOOGLE_CLOUD_PROJECT"] == PROJECT
    assert values["FUNCTIONS_BASE_URL"] == BASE_URL
    assert values["OPS_SERVICE_ACCOUNTS"] == (
        f"cvplus-video-ops@{PROJECT}.iam.gserviceaccount.com,oncall@other-proj.iam.gserviceaccount.com"
    )
    assert values["TASKS_SERVICE_ACCOUNT"] == f"cvplus-video-tasks@{PROJECT}.iam.gserviceaccount.com"
    assert values["RUNWAYML_CREDITS_PER_SECOND"] == '{"gen4.5": 12, "gen4_turbo": 5}'
    assert {"TASKS_QUEUE", "TASKS_LOCATION", "STORAGE_BUCKET", "HEYGEN_AVATAR_ID"} <= set(values)


def test_queue_concurrency_fits_the_instances_of_its_targets(dry_run: DryRun) -> None:
    create = find(dry_run.gcloud, "tasks", "queues", "create")
    update = find(dry_run.gcloud, "tasks", "queues", "update")
    assert len(create) == len(update) == 1
    assert create[0][4:] == update[0][4:], "create and update must converge on the same settings"
    deploys = {c[3]: c for c in find(dry_run.gcloud, "functions", "deploy")}
    concurrent = int(flag(create[0], "--max-concurrent-dispatches"))
    for target in ("runwayml_polling_task", "finalize_video_task"):
        assert concurrent <= int(flag(deploys[target], "--max-instances"))
    for name in ("--max-attempts", "--min-backoff", "--max-backoff", "--max-doublings"):
        assert flag(create[0], name) is not None


def test_cleanup_runs_every_15_minutes_with_an_oidc_token_for_the_function_url(dry_run: DryRun) -> None:
    jobs = find(dry_run.gcloud, "scheduler", "jobs", "create", "http") + find(
        dry_run.gcloud, "scheduler", "jobs", "update", "http"
    )
    assert len(jobs) == 2
    for command in jobs:
        assert flag(command, "--schedule") == "*/15 * * * *"
        assert flag(command, "--uri") == f"{BASE_URL}/runwayml_cleanup_task"
        assert flag(command, "--oidc-token-audience") == flag(command, "--uri")
        assert flag(command, "--oidc-service-account-email").startswith("cvplus-video-scheduler@")
        assert flag(command, "--http-method") == "POST"
        assert flag(command, "--attempt-deadline") == "540s"


def test_every_create_is_preceded_by_a_describe_of_the_same_resource(dry_run: DryRun) -> None:
    for group in (
        ("tasks", "queues"),
        ("scheduler", "jobs"),
        ("storage", "buckets"),
        ("iam", "service-accounts"),
    ):
        position = {tuple(c): i for i, c in enumerate(dry_run.gcloud)}
        for create in find(dry_run.gcloud, *group, "create"):
            name = create[4] if create[4] != "http" else create[5]
            describes = [position[tuple(c)] for c in find(dry_run.gcloud, *group, "describe") if name in c[4]]
            assert describes, shlex.join(create)
            assert min(describes) < position[tuple(create)], shlex.join(create)


def test_bucket_is_private_and_expires_objects_after_the_retention(dry_run: DryRun) -> None:
    for command in find(dry_run.gcloud, "storage", "buckets", "create") + find(
        dry_run.gcloud, "storage", "buckets", "update"
    ):
        assert {"--uniform-bucket-level-access", "--public-access-prevention"} <= set(command)
        lifecycle = json.loads(Path(flag(command, "--lifecycle-file")).read_text())
        assert lifecycle["rule"] == [{"action": {"type": "Delete"}, "condition": {"age": 30}}]


def field_config(field: dict[str, str]) -> str:
    """The `--field-config` value gcloud takes for one field of firestore.indexes.json."""
    if "arrayConfig" in field:
        return f"field-path={field['fieldPath']},array-config={field['arrayConfig'].lower()}"
    return f"field-path={field['fieldPath']},order={field['order'].lower()}"


def test_firestore_ttl_policies_and_composite_indexes(dry_run: DryRun) -> None:
    ttls = find(dry_run.gcloud, "firestore", "fields", "ttls", "update")
    assert {flag(c, "--collection-group") for c in ttls} == TTL_COLLECTIONS
    assert all(c[5] == "expireAt" and "--enable-ttl" in c for c in ttls)
    created = find(dry_run.gcloud, "firestore", "indexes", "composite", "create")
    assert len(created) == len(dry_run.indexes["indexes"])
    for command, index in zip(created, dry_run.indexes["indexes"], strict=True):
        fields = [arg.split("=", 1)[1] for arg in command if arg.startswith("--field-config=")]
        assert fields == [field_config(field) for field in index["fields"]]


def test_security_rules_are_released_through_the_rules_api(dry_run: DryRun) -> None:
    urls = [c[-1] for c in dry_run.curl if "firebaserules" in c[-1]]
    api = f"https://firebaserules.googleapis.com/v1/projects/{PROJECT}"
    assert urls == [f"{api}/rulesets", f"{api}/releases/cloud.firestore", f"{api}/releases"]
    body = json.loads((dry_run.work_dir / "ruleset.json").read_text())
    assert body["source"]["files"][0]["content"] == (ROOT / "firestore.rules").read_text()
    patch = json.loads((dry_run.work_dir / "release-patch.json").read_text())
    assert patch["release"]["name"] == f"projects/{PROJECT}/releases/cloud.firestore"
    assert all("Bearer" not in arg for command in dry_run.curl for arg in command)


def test_summary_prints_function_urls_and_the_heygen_webhook_registration(dry_run: DryRun) -> None:
    for name in FUNCTIONS:
        assert f"  {BASE_URL}/{name}\n" in dry_run.stdout
    assert "/v3/webhooks/endpoints" in dry_run.stdout
    assert f"{BASE_URL}/heygen_webhook" in dry_run.stdout


def account_grants(commands: list[list[str]]) -> dict[str, tuple[set[str], set[str]]]:
    """Per runtime account (id): its roles as role@resource (buckets, queue, accounts) and its secrets."""
    grants: dict[str, tuple[set[str], set[str]]] = {}
    for command in commands:
        if "add-iam-policy-binding" not in command:
            continue
        member = flag(command, "--member")
        if not member.startswith("serviceAccount:") or not member.endswith(
            f"@{PROJECT}.iam.gserviceaccount.com"
        ):
            continue
        account = member.split(":", 1)[1].split("@")[0]
        roles, secrets = grants.setdefault(account, (set(), set()))
        target = command[command.index("add-iam-policy-binding") + 1]
        if command[1] == "secrets":
            secrets.add(target)
        elif command[1] == "projects":
            roles.add(f"{flag(command, '--role')}@project")
        elif command[1] in ("storage", "tasks"):
            roles.add(f"{flag(command, '--role')}@{'bucket' if command[1] == 'storage' else 'queue'}")
        elif command[1] == "iam":
            roles.add(f"{flag(command, '--role')}@{target.split('@')[0]}")
    return grants


def test_each_runtime_account_gets_only_what_its_functions_use(dry_run: DryRun) -> None:
    runtime = {
        account: grants
        for account, grants in account_grants(dry_run.gcloud).items()
        if account in set(RUNS_AS.values())
    }
    assert set(runtime) == set(GRANTS)
    for account, (roles, secrets) in GRANTS.items():
        assert runtime[account] == (roles | {"roles/datastore.user@project"}, secrets), account
    assert "cvplus-video-runtime" not in account_grants(dry_run.gcloud)


def test_the_deployer_may_mint_ops_id_tokens_and_the_deploy_ends_with_provider_health(
    dry_run: DryRun,
) -> None:
    (grant,) = [
        c for c in dry_run.gcloud if flag(c, "--role") == "roles/iam.serviceAccountOpenIdTokenCreator"
    ]
    assert grant[4] == f"cvplus-video-ops@{PROJECT}.iam.gserviceaccount.com"
    assert flag(grant, "--member") == "user:deployer@example.com"
    (mint,) = find(dry_run.gcloud, "auth", "print-identity-token")
    url = f"{BASE_URL}/provider_health"
    assert flag(mint, "--impersonate-service-account") == grant[4]
    assert flag(mint, "--audiences") == url
    assert "--include-email" in mint  # the function checks the token's email claim
    assert dry_run.curl[-1][-1] == url
    assert "-X" not in dry_run.curl[-1]  # provider_health answers GET only


def test_order_is_firestore_then_workers_then_ops_and_webhooks_then_user_facing(dry_run: DryRun) -> None:
    lines = dry_run.stdout.splitlines()
    deploys = [shlex.split(line[2:])[3] for line in lines if line.startswith("+ gcloud functions deploy ")]
    workers = {"runwayml_polling_task", "finalize_video_task", "runwayml_cleanup_task"}
    user = {"generate_video", "cancel_video", "runwayml_status_check"}
    assert set(deploys[:3]) == workers
    assert set(deploys[-3:]) == user
    first_deploy = next(i for i, line in enumerate(lines) if line.startswith("+ gcloud functions deploy "))
    last_firestore = max(
        i for i, line in enumerate(lines) if "firestore indexes" in line or "firebaserules" in line
    )
    assert last_firestore < first_deploy


def test_monitoring_is_created_or_updated_from_the_repository_files(dry_run: DryRun) -> None:
    metrics = {f"cvplus/{p.stem}" for p in (ROOT / "monitoring" / "metrics").glob("*.yaml")}
    for verb in ("create", "update"):
        commands = find(dry_run.gcloud, "logging", "metrics", verb)
        assert {c[4] for c in commands} == metrics
        assert all(Path(flag(c, "--config-from-file")).stem == c[4].split("/")[1] for c in commands)
    policies = sorted(p.name for p in (ROOT / "monitoring" / "policies").glob("*.json"))
    for verb in ("create", "update"):
        commands = find(dry_run.gcloud, "alpha", "monitoring", "policies", verb)
        assert (
            sorted(Path(flag(c, "--policy-from-file")).name.removeprefix("policy-") for c in commands)
            == policies
        )
    rendered = json.loads((dry_run.work_dir / "policy-queue_backlog.json").read_text())
    assert "{{" not in json.dumps(rendered)
    assert 'queue_id="video-polling"' in rendered["conditions"][0]["conditionThreshold"]["filter"]
    assert "notificationChannels" not in rendered  # NOTIFICATION_CHANNEL unset
    assert find(dry_run.gcloud, "monitoring", "dashboards", "create")
    (update,) = find(dry_run.gcloud, "monitoring", "dashboards", "update")
    assert update[4] == f"projects/{PROJECT}/dashboards/cvplus-video"
    assert json.loads(Path(flag(update, "--config-from-file")).read_text())["etag"] == "ETAG"


def test_the_legacy_account_grants_are_listed_or_removed(tmp_path: Path) -> None:
    env = base_env(tmp_path, path_without(tmp_path, "gcloud", "curl"))
    listed = deploy("--dry-run", "--project", PROJECT, "--no-verify", env=env)
    assert listed.returncode == 0, listed.stderr
    assert not [c for c in printed_commands(listed.stdout, "gcloud") if "remove-iam-policy-binding" in c]
    assert f"#   gcloud projects remove-iam-policy-binding {PROJECT} --member={LEGACY}" in listed.stdout
    removed = deploy("--dry-run", "--project", PROJECT, "--no-verify", "--remove-legacy-grants", env=env)
    assert removed.returncode == 0, removed.stderr
    commands = [c for c in printed_commands(removed.stdout, "gcloud") if "remove-iam-policy-binding" in c]
    assert {flag(c, "--member") for c in commands} == {LEGACY}
    assert {flag(c, "--role") for c in commands} == {
        "roles/datastore.user",
        "roles/secretmanager.secretAccessor",
        "roles/storage.objectAdmin",
        "roles/cloudtasks.enqueuer",
        "roles/iam.serviceAccountUser",
        "roles/iam.serviceAccountTokenCreator",
    }
    assert not find(printed_commands(removed.stdout, "gcloud"), "auth", "print-identity-token")  # --no-verify
    require_gcloud()
    rejected = [v for v in map(run_real_gcloud, commands) if not v.parsed_cleanly()]
    assert not rejected, rejected


def test_rollback_sends_traffic_to_the_previous_revision(tmp_path: Path) -> None:
    env = base_env(tmp_path, path_without(tmp_path, "gcloud", "curl"))
    result = deploy("--dry-run", "--project", PROJECT, "--rollback", "generate_video", env=env)
    assert result.returncode == 0, result.stderr
    commands = printed_commands(result.stdout, "gcloud")
    assert not find(commands, "functions", "deploy")
    (describe,) = find(commands, "functions", "describe")
    assert flag(describe, "--format") == "value(serviceConfig.service)"
    (listing,) = find(commands, "run", "revisions", "list")
    assert flag(listing, "--service") == "generate-video"
    assert flag(listing, "--sort-by") == "~metadata.creationTimestamp"
    (update,) = find(commands, "run", "services", "update-traffic")
    assert update[4] == "generate-video"
    assert flag(update, "--to-revisions") == "PREVIOUS_REVISION=100"
    require_gcloud()
    rejected = [v for v in map(run_real_gcloud, commands[2:]) if not v.parsed_cleanly()]
    assert not rejected, rejected
    bad = deploy("--dry-run", "--project", PROJECT, "--rollback", "nope", env=env)
    assert bad.returncode == 2
    assert "unknown function 'nope'" in bad.stderr


def test_env_file_settings_sit_between_the_environment_and_the_flags(tmp_path: Path) -> None:
    name = f"pytest-{os.getpid()}"
    env_file = ROOT / "deploy" / f"{name}.env"
    env_file.write_text(
        "# a comment\n\nGOOGLE_CLOUD_PROJECT=file-proj\nFUNCTION_REGION='europe-west1'\n"
        'CORS_ORIGINS="https://a.example, https://b.example"\n'
        'TIER_LIMITS={"free": {"jobsPerDay": 5}, "team\'s": {"liveJobs": 3}}\n'
        "NOTIFICATION_CHANNEL=projects/file-proj/notificationChannels/123\n"
    )
    try:
        env = base_env(tmp_path) | {"GOOGLE_CLOUD_PROJECT": "shell-proj", "FUNCTION_REGION": "us-east1"}
        result = deploy("--dry-run", "--env", name, "--region", "asia-east1", "--no-verify", env=env)
    finally:
        env_file.unlink()
    assert result.returncode == 0, result.stderr
    commands = printed_commands(result.stdout, "gcloud")
    deploys = find(commands, "functions", "deploy")
    assert {flag(c, "--project") for c in deploys} == {"file-proj"}
    assert {flag(c, "--region") for c in deploys} == {"asia-east1"}
    env_yaml = Path(flag(deploys[0], "--env-vars-file")).read_text()
    assert "CORS_ORIGINS: 'https://a.example, https://b.example'" in env_yaml
    tiers = yaml.safe_load(env_yaml)["TIER_LIMITS"]  # JSON, quotes and commas included, arrives intact
    assert json.loads(tiers) == {"free": {"jobsPerDay": 5}, "team's": {"liveJobs": 3}}
    work_dir = Path(flag(deploys[0], "--env-vars-file")).parent
    policy = json.loads((work_dir / "policy-circuit_open.json").read_text())
    assert policy["notificationChannels"] == ["projects/file-proj/notificationChannels/123"]


def test_example_env_file_works_and_unknown_env_files_are_named(tmp_path: Path) -> None:
    result = deploy("--dry-run", "--env", "example", "--only", "generate_video", env=base_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "# settings from deploy/example.env" in result.stdout
    missing = deploy("--dry-run", "--env", "no-such-env", env=base_env(tmp_path))
    assert missing.returncode == 2
    assert "deploy/no-such-env.env not found" in missing.stderr


def test_check_runs_web_check_with_the_functions_environment_or_says_why_not(tmp_path: Path) -> None:
    result = deploy(
        "--dry-run", "--project", PROJECT, "--only", "generate_video", "--check", env=base_env(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    if (ROOT / "web" / "check.py").is_file():
        (line,) = [line for line in result.stdout.splitlines() if line.startswith("+ env ")]
        words = shlex.split(line[2:])
        assert words[-2:] == ["-m", "web.check"]
        assert f"GOOGLE_CLOUD_PROJECT={PROJECT}" in words
        assert "STORAGE_BUCKET=test-proj-cvplus-videos" in words
    else:
        assert "--check skipped: web/check.py does not exist" in result.stdout


def test_scripts_the_readme_runs_are_executable_in_git() -> None:
    scripts = set(re.findall(r"(?<![\w./])\./([\w.-]+\.(?:sh|py))\b", (ROOT / "README.md").read_text()))
    assert "deploy.sh" in scripts
    listing = subprocess.run(
        ["git", "ls-files", "-s", *scripts], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    modes = {line.split("\t")[1]: line.split()[0] for line in listing.splitlines()}
    assert modes == dict.fromkeys(scripts, "100755")


def test_the_temp_folder_is_removed_when_a_run_fails(fake_gcloud_env: dict[str, str], tmp_path: Path) -> None:
    apis = re.search(r"APIS=\(([^)]*)\)", DEPLOY.read_text()).group(1).split()
    result = deploy("--project", PROJECT, env=fake_gcloud_env | {"ENABLED_APIS": " ".join(apis)})
    assert result.returncode == 1  # the secrets are missing: it stops after creating the folder
    assert "secrets missing" in result.stderr
    assert not list(tmp_path.glob("cvplus-deploy.*"))


# --- options and prerequisites -----------------------------------------------------------------


def test_shellcheck_passes() -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed (apt-get install -y shellcheck); it lints deploy.sh")
    result = subprocess.run(
        ["shellcheck", "deploy.sh", "deploy/monitoring.sh"],
        cwd=ROOT,  # deploy.sh sources deploy/monitoring.sh by a path relative to the repository
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_help_exits_0_and_lists_the_options(tmp_path: Path) -> None:
    result = deploy("--help", env=base_env(tmp_path))
    assert result.returncode == 0
    for option in ("--project", "--region", "--queue", "--bucket", "--only", "--dry-run"):
        assert option in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "unknown option: --bogus"),
        (["--dry-run", "--project"], "--project needs a value"),
        (["--dry-run", "--project", PROJECT, "--only", "no_such_function"], "unknown function"),
        (["--dry-run", "--project", PROJECT, "--secret-version", "HEYGEN_API_KEY=latest"], "NAME=NUMBER"),
    ],
)
def test_bad_usage_exits_2_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    result = deploy(*args, env=base_env(tmp_path))
    assert result.returncode == 2
    assert message in result.stderr


def test_missing_project_is_named(tmp_path: Path) -> None:
    result = deploy("--dry-run", env=base_env(tmp_path))
    assert result.returncode == 1
    assert "no project: pass --project=ID or set GOOGLE_CLOUD_PROJECT" in result.stderr


def test_project_and_region_come_from_the_environment_too(tmp_path: Path) -> None:
    env = base_env(tmp_path) | {"GOOGLE_CLOUD_PROJECT": "env-proj", "FUNCTION_REGION": "europe-west1"}
    result = deploy("--dry-run", "--only", "generate_video", env=env)
    assert result.returncode == 0, result.stderr
    assert "https://europe-west1-env-proj.cloudfunctions.net/generate_video" in result.stdout


def test_only_deploys_the_named_function_and_its_grants(tmp_path: Path) -> None:
    result = deploy(
        "--dry-run", "--project", PROJECT, "--only", "runwayml_polling_task", env=base_env(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    commands = printed_commands(result.stdout, "gcloud")
    assert [c[3] for c in find(commands, "functions", "deploy")] == ["runwayml_polling_task"]
    assert [c[3] for c in find(commands, "functions", "add-invoker-policy-binding")] == [
        "runwayml_polling_task"
    ]
    assert not find(commands, "tasks", "queues", "create")
    assert not find(commands, "scheduler", "jobs", "create", "http")


def test_secret_versions_come_from_flags_and_environment(tmp_path: Path) -> None:
    env = base_env(tmp_path) | {"HEYGEN_API_KEY_VERSION": "3"}
    result = deploy(
        "--dry-run", "--project", PROJECT, "--only", "generate_video",
        "--secret-version=RUNWAYML_API_KEY=7", env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    command = find(printed_commands(result.stdout, "gcloud"), "functions", "deploy")[0]
    assert (
        flag(command, "--set-secrets")
        == "RUNWAYML_API_KEY=RUNWAYML_API_KEY:7,HEYGEN_API_KEY=HEYGEN_API_KEY:3"
    )


def test_missing_gcloud_is_explained(tmp_path: Path) -> None:
    result = deploy("--project", PROJECT, env=base_env(tmp_path, path_without(tmp_path, "gcloud")))
    assert result.returncode == 1
    assert "the gcloud CLI is not installed" in result.stderr


def test_not_being_logged_in_is_explained(tmp_path: Path) -> None:
    require_gcloud()
    result = deploy("--project", PROJECT, env=base_env(tmp_path), timeout=120)
    assert result.returncode == 1
    assert "gcloud is not logged in: run 'gcloud auth login'" in result.stderr


# A stand-in gcloud for the branches that need a logged-in account: it answers the two listing
# calls and the access token, and fails everything else ("not found"). The commands the script
# suggests are then run through the real gcloud.
FAKE_TOKEN = "ya29.fake-access-token"
FAKE_GCLOUD = f"""#!/usr/bin/env bash
case "$1 $2" in
  "auth list") echo deployer@example.com ;;
  "auth print-access-token") echo {FAKE_TOKEN} ;;
  "services list") printf '%s\\n' $ENABLED_APIS ;;
  *) echo "NOT_FOUND: $*" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def fake_gcloud_env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD)
    (bin_dir / "gcloud").chmod(0o755)
    return base_env(tmp_path, f"{bin_dir}:{path_without(tmp_path, 'gcloud')}")


def suggested_commands(stderr: str) -> list[list[str]]:
    lines = [line.strip() for line in stderr.splitlines()]
    return [
        shlex.split(line.split("| ", 1)[-1]) for line in lines if "gcloud " in line and "--project" in line
    ]


def test_missing_apis_are_listed_with_the_command_that_enables_them(fake_gcloud_env: dict[str, str]) -> None:
    require_gcloud()
    env = fake_gcloud_env | {"ENABLED_APIS": "run.googleapis.com cloudfunctions.googleapis.com"}
    result = deploy("--project", PROJECT, env=env)
    assert result.returncode == 1
    assert "APIs not enabled" in result.stderr
    (enable,) = suggested_commands(result.stderr)
    assert enable[:3] == ["gcloud", "services", "enable"]
    assert "cloudtasks.googleapis.com" in enable
    assert "run.googleapis.com" not in enable
    assert run_real_gcloud(enable).parsed_cleanly()


def test_missing_secrets_are_listed_with_the_command_that_creates_them(
    fake_gcloud_env: dict[str, str],
) -> None:
    require_gcloud()
    apis = re.search(r"APIS=\(([^)]*)\)", DEPLOY.read_text()).group(1).split()
    result = deploy("--project", PROJECT, env=fake_gcloud_env | {"ENABLED_APIS": " ".join(apis)})
    assert result.returncode == 1
    assert "secrets missing in Secret Manager" in result.stderr
    assert (
        'printf %s "$RUNWAYML_API_KEY" | gcloud secrets create RUNWAYML_API_KEY --data-file=-'
        in result.stderr
    )
    creates = suggested_commands(result.stderr)
    assert {c[3] for c in creates} >= {"RUNWAYML_API_KEY", "HEYGEN_API_KEY"}
    for command in creates:
        assert run_real_gcloud(command, stdin="not-a-real-key").parsed_cleanly()


# --- the security rules release, for real over HTTP ----------------------------------------------------


class FakeRulesApi(http.server.BaseHTTPRequestHandler):
    """The three Firebase Rules API calls deploy.sh makes, on loopback; remembers every request."""

    requests: ClassVar[list[tuple[str, str, dict[str, str], dict]]] = []
    released: ClassVar[bool] = False

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeRulesApi.requests.append((self.command, self.path, dict(self.headers), body))
        prefix = f"/v1/projects/{PROJECT}"
        if (self.command, self.path) == ("POST", f"{prefix}/rulesets"):
            self._answer(200, {"name": f"projects/{PROJECT}/rulesets/ruleset-7"})
        elif (self.command, self.path) == ("PATCH", f"{prefix}/releases/cloud.firestore"):
            self._answer(200 if FakeRulesApi.released else 404, {"name": body["release"]["name"]})
        elif (self.command, self.path) == ("POST", f"{prefix}/releases"):
            FakeRulesApi.released = True
            self._answer(200, body)
        else:
            self._answer(400, {"error": "unexpected call"})

    do_POST = do_PATCH = _handle

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def rules_api() -> Iterator[str]:
    FakeRulesApi.requests = []
    FakeRulesApi.released = False
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeRulesApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def release_rules(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = f"source {shlex.quote(str(DEPLOY))} && PROJECT={PROJECT} && setup_settings && deploy_rules"
    return subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_rules_release_creates_a_ruleset_then_creates_or_updates_the_release(
    fake_gcloud_env: dict[str, str], rules_api: str
) -> None:
    env = fake_gcloud_env | {"FIREBASE_RULES_API": rules_api}

    first = release_rules(env)
    second = release_rules(env)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    calls = [(method, path.rsplit("/", 1)[1]) for method, path, _, _ in FakeRulesApi.requests]
    assert calls == [
        ("POST", "rulesets"),
        ("PATCH", "cloud.firestore"),
        ("POST", "releases"),  # first run: no release yet
        ("POST", "rulesets"),
        ("PATCH", "cloud.firestore"),  # second run: the release exists, it is repointed
    ]
    rules = (ROOT / "firestore.rules").read_text()
    for method, _, headers, _ in FakeRulesApi.requests:
        assert headers["Authorization"] == f"Bearer {FAKE_TOKEN}", method
        assert headers["x-goog-user-project"] == PROJECT
    assert FakeRulesApi.requests[0][3] == {
        "source": {"files": [{"name": "firestore.rules", "content": rules}]}
    }
    assert FakeRulesApi.requests[1][3]["release"] == {
        "name": f"projects/{PROJECT}/releases/cloud.firestore",
        "rulesetName": f"projects/{PROJECT}/rulesets/ruleset-7",
    }
    assert FAKE_TOKEN not in first.stdout + first.stderr


def test_the_gemini_prompt_writer_gets_vertex_ai_for_generate_video_only(tmp_path: Path) -> None:
    env = base_env(tmp_path, path_without(tmp_path, "gcloud", "curl")) | {"PROMPT_WRITER": "gemini"}
    result = deploy("--dry-run", "--project", PROJECT, "--no-verify", env=env)
    assert result.returncode == 0, result.stderr
    commands = printed_commands(result.stdout, "gcloud")
    enable = find(commands, "services", "enable", "aiplatform.googleapis.com")
    vertex = [c for c in commands if flag(c, "--role") == "roles/aiplatform.user"]
    assert len(enable) == 1
    assert [flag(c, "--member") for c in vertex] == [
        f"serviceAccount:{RUNS_AS['generate_video']}@{PROJECT}.iam.gserviceaccount.com"
    ]
    assert (
        "PROMPT_WRITER: 'gemini'"
        in (Path(re.search(r"kept in (\S+)", result.stdout)[1]) / "env.yaml").read_text()
    )
    require_gcloud()
    rejected = [v for v in map(run_real_gcloud, enable + vertex) if not v.parsed_cleanly()]
    assert not rejected, rejected
