"""Settings: built once from the environment, validated, secrets hidden, names in every error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config import ENV_VARS, ConfigError, load_settings
from providers import registry

BASE = {"GOOGLE_CLOUD_PROJECT": "p1"}


def test_defaults_apply_when_only_the_project_is_set():
    settings = load_settings(BASE)
    assert settings.project_id == "p1"
    assert settings.runwayml_base_url == "https://api.dev.runwayml.com"
    assert settings.runwayml_api_version == "2024-11-06"
    assert settings.jobs_collection == "enhanced_video_jobs"
    assert settings.firebase_project == "p1"


def test_missing_project_names_the_variable():
    with pytest.raises(ConfigError, match="GOOGLE_CLOUD_PROJECT is not set"):
        load_settings({})


def test_invalid_value_names_the_variable_it_came_from():
    with pytest.raises(ConfigError, match="RETENTION_DAYS is invalid"):
        load_settings({**BASE, "RETENTION_DAYS": "soon"})


def test_zero_is_a_value_not_a_missing_setting():
    settings = load_settings({**BASE, "RETRY_AFTER_CAP_SECONDS": "0"})
    assert settings.retry_after_cap_s == 0


@pytest.mark.parametrize(
    ("raw", "value"),
    [("true", True), ("FALSE", False), ("1", True), ("0", False), ("yes", True), ("off", False)],
)
def test_a_boolean_takes_the_usual_words(raw, value):
    assert load_settings({**BASE, "RUNWAYML_VEO_AUDIO": raw}).runwayml_veo_audio is value
    with pytest.raises(ConfigError, match="RUNWAYML_VEO_AUDIO is invalid"):
        load_settings({**BASE, "RUNWAYML_VEO_AUDIO": "maybe"})


def test_runwayml_api_secret_is_accepted_as_an_alias():
    settings = load_settings({**BASE, "RUNWAYML_API_SECRET": "key_alias"})
    assert settings.runwayml_api_key.get_secret_value() == "key_alias"


def test_runwayml_api_key_wins_over_its_alias():
    settings = load_settings({**BASE, "RUNWAYML_API_KEY": "key_a", "RUNWAYML_API_SECRET": "key_b"})
    assert settings.runwayml_api_key.get_secret_value() == "key_a"


def test_secrets_never_appear_in_repr():
    settings = load_settings({**BASE, "HEYGEN_API_KEY": "hg-very-secret", "HEYGEN_WEBHOOK_SECRET": "a,b"})
    assert "hg-very-secret" not in repr(settings)
    assert [s.get_secret_value() for s in settings.heygen_webhook_secrets] == ["a", "b"]


def test_require_names_the_variable_and_its_alias():
    settings = load_settings(BASE)
    with pytest.raises(ConfigError, match=r"RUNWAYML_API_KEY \(or RUNWAYML_API_SECRET\) is not set"):
        settings.require("runwayml_api_key")


def test_settings_are_frozen():
    settings = load_settings(BASE)
    with pytest.raises(AttributeError, match="immutable"):
        settings.project_id = "other"


def test_credit_table_is_json():
    settings = load_settings({**BASE, "RUNWAYML_CREDITS_PER_SECOND": '{"gen4.5": 10}'})
    assert settings.runwayml_credits_per_second == {"gen4.5": 10}
    with pytest.raises(ConfigError, match="RUNWAYML_CREDITS_PER_SECOND"):
        load_settings({**BASE, "RUNWAYML_CREDITS_PER_SECOND": "{bad"})


def test_every_variable_is_documented_in_the_readme():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)`", readme, flags=re.MULTILINE))
    names = {name for names in ENV_VARS.values() for name in names}
    assert names <= documented, f"undocumented: {sorted(names - documented)}"


def test_provider_defaults_are_left_to_the_provider_specs():
    settings = load_settings(BASE)
    assert (settings.runwayml_quota, settings.heygen_quota) == (None, None)
    assert (settings.runwayml_tasks_collection, settings.heygen_tasks_collection) == (None, None)
    assert registry.spec("runwayml").records_collection(settings) == "runwayml_jobs"
    assert registry.spec("heygen").records_collection(settings) == "heygen_jobs"


def test_a_tasks_collection_setting_overrides_the_spec_default():
    settings = load_settings({**BASE, "HEYGEN_TASKS_COLLECTION": "hg_tasks"})
    assert registry.spec("heygen").records_collection(settings) == "hg_tasks"
