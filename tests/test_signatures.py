"""Webhook verifiers: real payloads signed with the shared helpers, then verified or refused."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from pydantic import SecretStr

from providers import registry
from providers.heygen import verify_heygen
from providers.signatures import SignatureError, sign_heygen, sign_standard, verify_standard_webhook

NOW = 1_800_000_000
HEYGEN_SECRET = "whsec_heygen-current"
OLD_HEYGEN_SECRET = "whsec_heygen-previous"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"runway-current-key-bytes").decode()
OLD_STANDARD_SECRET = "whsec_" + base64.b64encode(b"runway-previous-key").decode()

SUCCESS = json.dumps(
    {
        "event_type": "avatar_video.success",
        "event_data": {"video_id": "v1", "url": "https://cdn.example/v1.mp4", "callback_id": "job-1"},
    }
).encode()
TASK_EVENT = json.dumps({"type": "task.updated", "data": {"id": "task-1", "status": "SUCCEEDED"}}).encode()


def heygen(body=SUCCESS, headers=None, secrets=(HEYGEN_SECRET,), now=NOW):
    headers = (
        headers if headers is not None else sign_heygen(body, HEYGEN_SECRET, timestamp=NOW, event_id="evt_1")
    )
    return verify_heygen(body, headers, secrets, now=now, tolerance_s=300)


def standard(body=TASK_EVENT, headers=None, secrets=(STANDARD_SECRET,), now=NOW):
    headers = (
        headers
        if headers is not None
        else sign_standard(body, STANDARD_SECRET, msg_id="msg_1", timestamp=NOW)
    )
    return verify_standard_webhook(body, headers, secrets, now=now, tolerance_s=300)


def refused(call, *args, **kwargs) -> str:
    with pytest.raises(SignatureError) as caught:
        call(*args, **kwargs)
    return caught.value.code


# -- HeyGen -----------------------------------------------------------------------------------------


def test_heygen_valid_delivery_returns_the_parsed_event():
    event = heygen()
    assert (event.event_type, event.video_id) == ("avatar_video.success", "v1")
    assert event.event_id == hashlib.sha256(SUCCESS).hexdigest()
    assert (event.callback_id, event.url) == ("job-1", "https://cdn.example/v1.mp4")


def test_heygen_wrong_secret_is_a_bad_signature():
    assert refused(heygen, secrets=("whsec_someone-else",)) == "bad_signature"


def test_heygen_tampered_body_is_a_bad_signature():
    headers = sign_heygen(SUCCESS, HEYGEN_SECRET, timestamp=NOW)
    assert refused(heygen, body=SUCCESS.replace(b"v1.mp4", b"v2.mp4"), headers=headers) == "bad_signature"


def test_heygen_stale_timestamp_is_refused():
    assert refused(heygen, now=NOW + 301) == "stale_timestamp"


def test_heygen_missing_signature_header_is_refused():
    assert refused(heygen, headers={"Heygen-Timestamp": str(NOW)}) == "missing_signature"


def test_heygen_legacy_signature_header_is_accepted():
    legacy = {"Signature": sign_heygen(SUCCESS, HEYGEN_SECRET)["Heygen-Signature"]}
    assert heygen(headers=legacy).video_id == "v1"


def test_heygen_header_names_are_case_insensitive():
    headers = {k.lower(): v for k, v in sign_heygen(SUCCESS, HEYGEN_SECRET, timestamp=NOW).items()}
    assert heygen(headers=headers).video_id == "v1"


def test_heygen_second_secret_matches_during_rotation():
    assert heygen(secrets=(OLD_HEYGEN_SECRET, HEYGEN_SECRET)).video_id == "v1"


def test_heygen_secrets_may_be_secret_strings():
    assert heygen(secrets=(SecretStr(HEYGEN_SECRET),)).video_id == "v1"


def test_heygen_no_configured_secret_is_refused():
    assert refused(heygen, secrets=("",)) == "no_secret_configured"


def test_heygen_event_id_is_a_body_hash_when_the_header_is_absent():
    event = heygen(headers=sign_heygen(SUCCESS, HEYGEN_SECRET))
    assert event.event_id == hashlib.sha256(SUCCESS).hexdigest()


def test_heygen_event_id_is_the_signed_body_hash_whatever_the_unsigned_event_id_header_says():
    replayed = [heygen(headers=sign_heygen(SUCCESS, HEYGEN_SECRET, event_id=e)) for e in ("a", "b")]
    assert replayed[0].event_id == replayed[1].event_id == hashlib.sha256(SUCCESS).hexdigest()


def test_heygen_failure_event_carries_its_message_from_msg():
    body = json.dumps(
        {"event_type": "avatar_video.fail", "event_data": {"video_id": "v2", "msg": "bad"}}
    ).encode()
    event = heygen(body=body, headers=sign_heygen(body, HEYGEN_SECRET))
    assert (event.event_type, event.message, event.url) == ("avatar_video.fail", "bad", None)


def test_heygen_video_url_is_read_when_url_is_absent():
    body = json.dumps(
        {"event_type": "x", "event_data": {"video_id": "v3", "video_url": "https://u"}}
    ).encode()
    assert heygen(body=body, headers=sign_heygen(body, HEYGEN_SECRET)).url == "https://u"


def test_heygen_signed_body_without_a_video_id_is_malformed():
    body = b'{"event_type": "avatar_video.success", "event_data": {}}'
    assert refused(heygen, body=body, headers=sign_heygen(body, HEYGEN_SECRET)) == "malformed_payload"


def test_heygen_signed_body_that_is_not_json_is_malformed():
    assert (
        refused(heygen, body=b"not json", headers=sign_heygen(b"not json", HEYGEN_SECRET))
        == "malformed_payload"
    )


# -- Standard Webhooks ------------------------------------------------------------------------------


def test_standard_valid_delivery_returns_id_timestamp_and_payload():
    event = standard()
    assert (event.id, event.timestamp, event.event_type) == ("msg_1", NOW, "task.updated")
    assert event.payload["data"]["id"] == "task-1"


def test_standard_wrong_secret_is_a_bad_signature():
    assert refused(standard, secrets=(OLD_STANDARD_SECRET,)) == "bad_signature"


def test_standard_tampered_body_is_a_bad_signature():
    headers = sign_standard(TASK_EVENT, STANDARD_SECRET, msg_id="msg_1", timestamp=NOW)
    assert (
        refused(standard, body=TASK_EVENT.replace(b"task-1", b"task-2"), headers=headers) == "bad_signature"
    )


def test_standard_stale_timestamp_is_refused():
    assert refused(standard, now=NOW - 301) == "stale_timestamp"


@pytest.mark.parametrize("dropped", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_standard_missing_header_is_refused(dropped):
    headers = sign_standard(TASK_EVENT, STANDARD_SECRET, msg_id="msg_1", timestamp=NOW)
    del headers[dropped]
    assert refused(standard, headers=headers) == "missing_signature"


def test_standard_second_secret_matches_during_rotation():
    assert standard(secrets=(OLD_STANDARD_SECRET, STANDARD_SECRET)).id == "msg_1"


def test_standard_one_valid_signature_among_several_is_enough():
    headers = sign_standard(TASK_EVENT, STANDARD_SECRET, msg_id="msg_1", timestamp=NOW)
    other = sign_standard(TASK_EVENT, OLD_STANDARD_SECRET, msg_id="msg_1", timestamp=NOW)
    headers["webhook-signature"] = f"v1a,ignored {other['webhook-signature']} {headers['webhook-signature']}"
    assert standard(headers=headers).id == "msg_1"


def test_standard_secret_without_the_whsec_prefix_is_the_same_key():
    bare = STANDARD_SECRET.removeprefix("whsec_")
    assert standard(secrets=(bare,)).id == "msg_1"


def test_standard_secret_that_is_not_base64_is_refused_as_unconfigured():
    assert refused(standard, secrets=("whsec_not base64!",)) == "no_secret_configured"


def test_standard_signature_covers_the_id_so_a_changed_id_is_refused():
    headers = sign_standard(TASK_EVENT, STANDARD_SECRET, msg_id="msg_1", timestamp=NOW) | {
        "webhook-id": "msg_2"
    }
    assert refused(standard, headers=headers) == "bad_signature"


# -- the specs' readers: verify, then name the task -----------------------------------------------


def read(provider, body, headers, secret):
    webhook = registry.spec(provider).webhook
    return webhook.read(body, headers, (SecretStr(secret),), NOW, 300)


def heygen_event(event_type, video_id):
    return json.dumps({"event_type": event_type, "event_data": {"video_id": video_id}}).encode()


def task_event(data):
    return json.dumps({"type": "task.updated", "data": data}).encode()


def test_each_spec_names_the_setting_holding_its_secrets():
    assert registry.spec("heygen").webhook.secrets_field == "heygen_webhook_secrets"
    assert registry.spec("runwayml").webhook.secrets_field == "runwayml_webhook_secrets"


@pytest.mark.parametrize("event_type", ["avatar_video.success", "avatar_video.fail"])
def test_heygen_reader_names_the_video_of_a_finished_render(event_type):
    body = heygen_event(event_type, "v_1")
    hint = read("heygen", body, sign_heygen(body, HEYGEN_SECRET, event_id="evt_9"), HEYGEN_SECRET)
    assert (hint.event_id, hint.task_id) == (hashlib.sha256(body).hexdigest(), "v_1")


def test_heygen_reader_names_no_task_for_other_event_types():
    body = heygen_event("avatar_video.gif_ready", "v_1")
    hint = read("heygen", body, sign_heygen(body, HEYGEN_SECRET, event_id="evt_9"), HEYGEN_SECRET)
    assert (hint.event_id, hint.task_id) == (hashlib.sha256(body).hexdigest(), None)


def test_heygen_reader_refuses_a_video_id_that_is_not_an_id():
    body = heygen_event("avatar_video.success", "a/b")
    with pytest.raises(SignatureError, match=r"^event_data\.video_id is not a video id$") as caught:
        read("heygen", body, sign_heygen(body, HEYGEN_SECRET), HEYGEN_SECRET)
    assert caught.value.code == "malformed_payload"


def test_heygen_reader_refuses_a_bad_signature():
    body = heygen_event("avatar_video.success", "v_1")
    assert (
        refused(read, "heygen", body, sign_heygen(body, OLD_HEYGEN_SECRET), HEYGEN_SECRET) == "bad_signature"
    )


def test_runwayml_reader_names_the_task_in_data_id():
    hint = read(
        "runwayml",
        TASK_EVENT,
        sign_standard(TASK_EVENT, STANDARD_SECRET, msg_id="m", timestamp=NOW),
        STANDARD_SECRET,
    )
    assert (hint.event_id, hint.task_id) == ("m", "task-1")


@pytest.mark.parametrize("data", [{}, {"id": ""}, {"id": "a/b"}, {"id": 7}, "task-1"])
def test_runwayml_reader_refuses_a_delivery_without_a_task_id_naming_the_field(data):
    body = task_event(data)
    headers = sign_standard(body, STANDARD_SECRET, msg_id="m", timestamp=NOW)
    with pytest.raises(SignatureError, match=r"^data\b") as caught:
        read("runwayml", body, headers, STANDARD_SECRET)
    assert caught.value.code == "malformed_payload"


def test_runwayml_reader_refuses_a_stale_delivery():
    headers = sign_standard(TASK_EVENT, STANDARD_SECRET, msg_id="m", timestamp=NOW - 301)
    assert refused(read, "runwayml", TASK_EVENT, headers, STANDARD_SECRET) == "stale_timestamp"
