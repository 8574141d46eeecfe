"""The Gemini prompt writer against the loopback Vertex AI simulator, through the real google-genai SDK.

A valid answer is used; an answer that fails a check, is not the schema, errors or times out leaves
the rules composer's prompt in place, logged with a code and never with the script.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

import logs
from config import ConfigError, load_settings
from local.vertex_sim import VertexSim
from providers.prompts import build_prompt, problems
from tests.conftest import ROOT

NURSE = "I am Amara, a registered nurse with 8 years on a busy acute ward. I trained 30 new nurses."
TIMEOUT_S = 1.0


@pytest.fixture
def vertex(request):
    sim = VertexSim(mode=getattr(request, "param", "valid"), hold_s=TIMEOUT_S + 1.5).start()
    yield sim
    sim.stop()


def settings_for(sim: VertexSim, writer: str = "gemini"):
    return load_settings(
        {
            "GOOGLE_CLOUD_PROJECT": "demo-project",
            "PROMPT_WRITER": writer,
            "VERTEX_BASE_URL": sim.base_url,
            "GEMINI_TIMEOUT_SECONDS": str(TIMEOUT_S),
        }
    )


def logged(caplog) -> list[str]:
    return [logs.JsonFormatter().format(record) for record in caplog.records]


def test_a_valid_answer_is_the_prompt(vertex):
    result = build_prompt(NURSE, settings=settings_for(vertex))
    assert result.writer == "gemini"
    assert result.runway_prompt.startswith("A confident nurse turns from a busy workbench")
    assert "The camera pushes in steadily." in result.runway_prompt
    assert problems(result.runway_prompt, NURSE) == ()


def test_the_request_asks_vertex_for_the_schema_as_the_service_would(vertex):
    build_prompt(NURSE, settings=settings_for(vertex))
    assert vertex.requests == [
        (
            "POST",
            "/v1beta1/projects/demo-project/locations/global/publishers/google/models/gemini-2.5-flash:generateContent",
            200,
        )
    ]
    body = vertex.bodies[0]
    assert body["generationConfig"]["responseMimeType"] == "application/json"
    schema = body["generationConfig"]["responseSchema"]
    assert set(schema["required"]) == {"subject", "setting", "action", "camera", "style"}
    assert "Runway" in json.dumps(body["systemInstruction"])


def test_the_writer_is_told_the_occupation_and_the_camera_sentence(vertex):
    build_prompt(NURSE, "friendly", "pan", 0.1, settings=settings_for(vertex))
    text = vertex.bodies[0]["contents"][0]["parts"][0]["text"]
    assert "Occupation: nurse" in text
    assert "Camera sentence to keep: The camera slowly pans across the scene." in text


@pytest.mark.parametrize(
    ("vertex", "code"),
    [("invalid", "gemini_rejected"), ("malformed", "gemini_unparsable"), ("error", "gemini_error")],
    indirect=["vertex"],
)
def test_a_failed_answer_falls_back_to_the_rules_prompt_with_a_logged_code(vertex, code, caplog):
    caplog.set_level(logging.WARNING)
    result = build_prompt(NURSE, settings=settings_for(vertex))
    assert result.writer == "rules"
    assert result.runway_prompt == build_prompt(NURSE).runway_prompt
    assert [record.code for record in caplog.records] == [code]
    assert not any("Amara" in line or "trained 30" in line for line in logged(caplog))


@pytest.mark.parametrize("vertex", ["slow"], indirect=True)
def test_a_slow_answer_times_out_and_the_rules_prompt_is_used(vertex, caplog):
    caplog.set_level(logging.WARNING)
    result = build_prompt(NURSE, settings=settings_for(vertex))
    assert result.writer == "rules"
    assert [record.code for record in caplog.records] == ["gemini_error"]


def test_the_rules_writer_never_calls_vertex(vertex):
    result = build_prompt(NURSE, settings=settings_for(vertex, writer="rules"))
    assert (result.writer, vertex.requests) == ("rules", [])


def test_the_sdk_is_not_imported_unless_the_gemini_writer_is_on():
    code = (
        "import sys; from providers.prompts import build_prompt; build_prompt('I am a nurse.'); "
        "import main; print('google.genai' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_an_unknown_writer_is_refused_naming_the_variable():
    with pytest.raises(ConfigError, match="PROMPT_WRITER is invalid"):
        load_settings({"GOOGLE_CLOUD_PROJECT": "p", "PROMPT_WRITER": "gpt"})


def test_generate_video_stores_the_prompt_gemini_wrote(vertex, stack_factory):
    stack = stack_factory(PROMPT_WRITER="gemini", VERTEX_BASE_URL=vertex.base_url)
    answer = stack.generate(key="gemini-1", kind="clip", provider="runwayml")
    assert answer.status_code == 202, answer.get_json()
    job = stack.deps.store.get_job(answer.get_json()["jobId"])
    assert job.prompt["writer"] == "gemini"
    assert vertex.bodies  # the SDK really called the simulator
