"""The optional Gemini prompt writer (PROMPT_WRITER=gemini), on Vertex AI through `google-genai`.

Only `compose` imports this module, and only when the setting is on, so the SDK costs nothing at
cold start otherwise. The client authenticates as the runtime service account (Application Default
Credentials, `vertexai=True` with the project and GEMINI_LOCATION; no API key). With VERTEX_BASE_URL
(local stack and tests only) it talks to that loopback simulator with a static token instead, so
nothing reaches Google.

Gemini gets the CV script, what the rules found (occupation, seniority) and the camera sentence to
keep, and answers the structured `Answer` (subject, setting, action, camera, style). The answer is
used only when it passes every check of `checks` (same as the rules composer's); otherwise — or on
any error or timeout (GEMINI_TIMEOUT_SECONDS) — `write` returns None and the caller keeps the rules
composer's prompt. Each fallback logs a warning with a code, never the script.

    code                  why the rules composer was kept
    gemini_error          the call failed (HTTP error, connection, timeout, SDK error)
    gemini_unparsable     the answer was not the JSON schema asked for
    gemini_rejected       the answer failed a check (the check codes are logged)
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from config import Settings
from logs import get_logger
from providers.prompts import checks
from providers.prompts.compose import Parts, render
from providers.prompts.extract import Elements
from providers.prompts.fit import join
from providers.prompts.vocabulary import VOCABULARY

log = get_logger("providers.prompts.gemini")

INSTRUCTIONS = """You write one short text-to-video prompt for a CV video, following Runway's
Gen-4 prompting guide: simple; the subject in general terms (an occupation and seniority only: never
a name, gender, age or ethnicity); one action that fits the occupation; a setting where that
occupation works; the camera sentence exactly as given; style descriptors. Positive phrasing only.
No quotation marks, no text, captions or logos to render, no sentence copied from the CV: turn
achievements into visuals of the person's field. Between 20 and 60 words in all."""


class Answer(BaseModel):
    """The structured answer asked of Gemini (its JSON schema is sent as the response schema)."""

    model_config = ConfigDict(extra="ignore")

    subject: str = Field(description="the subject in general terms, e.g. 'A seasoned electrician'")
    setting: str = Field(description="a noun phrase, e.g. 'a bright plant room with neat panels'")
    action: str = Field(description="one action in the present tense, e.g. 'tests a control panel'")
    camera: str = Field(description="the camera sentence, exactly as given")
    style: str = Field(description="style descriptors, comma separated")


def write(script: str, el: Elements, rules: Parts, settings: Settings) -> Parts | None:
    """Gemini's prompt parts when its answer passes every check; None (logged) otherwise."""
    try:
        text = _generate(settings, _request(script, el, rules))
    except Exception as exc:
        log.warning(
            "gemini writer failed; rules prompt kept",
            extra={"code": "gemini_error", "error": type(exc).__name__},
        )
        return None
    try:
        answer = Answer.model_validate_json(text or "")
    except ValidationError:
        log.warning("gemini answer unparsable; rules prompt kept", extra={"code": "gemini_unparsable"})
        return None
    parts = Parts(
        answer.subject.strip(),
        answer.action.strip(),
        answer.setting.strip(),
        answer.camera.strip(),
        answer.style.strip(),
    )
    found = checks.problems(join([text for _, text in render(parts) if text]), script)
    if found or not all((parts.subject, parts.action, parts.setting, parts.style)):
        log.warning(
            "gemini answer rejected; rules prompt kept",
            extra={"code": "gemini_rejected", "checks": list(found)},
        )
        return None
    return parts


def _request(script: str, el: Elements, rules: Parts) -> str:
    occupation = VOCABULARY.occupations[el.occupation.value].noun if el.occupation else "not recognised"
    level = el.seniority.value if el.seniority else "unknown"
    return (
        f"Occupation: {occupation} (confidence {el.confidence:.2f}). Seniority: {level}.\n"
        f"Camera sentence to keep: {rules.camera}.\nStyle: {rules.style}.\n"
        f"A prompt the rules would write: {join([t for _, t in render(rules) if t])}\n\nCV script:\n{script}"
    )


def _generate(settings: Settings, request: str) -> str | None:
    from google.genai import types

    config = types.GenerateContentConfig(
        system_instruction=INSTRUCTIONS,
        response_mime_type="application/json",
        response_schema=Answer,
        temperature=0.4,
        max_output_tokens=400,
        thinking_config=types.ThinkingConfig(thinking_budget=0),  # a short answer: no thinking tokens
    )
    client = _client(
        settings.project_id, settings.gemini_location, settings.vertex_base_url, settings.gemini_timeout_s
    )
    return client.models.generate_content(model=settings.gemini_model, contents=request, config=config).text


@functools.lru_cache(maxsize=4)
def _client(project: str, location: str, base_url: str | None, timeout_s: float) -> Any:
    """One client per configuration (reused across requests of an instance)."""
    from google import genai
    from google.genai import types

    options = types.HttpOptions(
        timeout=int(timeout_s * 1000), base_url=base_url, retry_options=types.HttpRetryOptions(attempts=1)
    )
    return genai.Client(
        vertexai=True,
        project=project,
        location=location,
        credentials=_credentials(base_url),
        http_options=options,
    )


def _credentials(base_url: str | None) -> Any:
    """None: Application Default Credentials (the runtime service account). A static token for the
    loopback simulator (VERTEX_BASE_URL), so tests and the local stack never reach Google."""
    if base_url is None:
        return None
    from google.oauth2.credentials import Credentials

    return Credentials(token="local-simulator")  # noqa: S106 - not a secret: the simulator checks nothing
