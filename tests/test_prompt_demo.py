"""The demo's closing report shows the prompt the script makes and its score."""

from __future__ import annotations

from local.demo_report import Outcome, report
from providers.prompts import build_prompt

NURSE = "I am a registered nurse with 8 years on a busy ward. I trained 30 new nurses."


def test_the_report_shows_the_prompt_its_image_variant_and_the_score_with_its_reasons():
    prompt = build_prompt(NURSE, "friendly")
    job = {"jobId": "job-1", "status": "completed", "provider": "runwayml", "attempts": []}
    text = report([Outcome(job, 12.0)], total_s=20.0, stop_s=1.0, prompt=prompt)
    assert prompt.runway_prompt in text
    assert prompt.runway_image_prompt in text
    assert f"{prompt.quality_score}/100 (friendly, pan)" in text
    assert all(reason in text for reason in prompt.score_reasons)


def test_without_a_prompt_the_report_is_as_before():
    job = {"jobId": "job-1", "status": "completed", "provider": "runwayml", "attempts": []}
    assert "prompt" not in report([Outcome(job, 12.0)], total_s=20.0, stop_s=1.0)
