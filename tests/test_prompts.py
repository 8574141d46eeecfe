"""CV script → prompts: what is extracted and why, style and camera words, provider limits, the rubric."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers import prompts
from providers.prompts import (
    CAMERA_MOTIONS,
    HEYGEN_SCRIPT_LIMIT,
    RUNWAY_PROMPT_LIMIT,
    STYLES,
    build_prompt,
    extract_elements,
    utf16_len,
)

SOFTWARE_ENGINEER = (
    "Hi, I'm Zoë Ñúñez, a senior software engineer building cloud platforms in Python and Kubernetes on "
    "AWS. I led a team of six engineers and launched a payments API used by 2 million customers. "
    "I reduced infrastructure costs by 35% in 2022. I love our open-plan office in Berlin 🚀."
)
NURSE = (
    "My name is Amara and I am a registered nurse with 8 years in acute care at a busy city hospital. "
    "I specialise in triage, wound care and patient care, and I mentored 12 newly qualified nurses. "
    "I improved patient satisfaction scores by 20%."
)
TEACHER = (
    "I'm Mr. Okafor, a secondary school teacher and head of mathematics. I focus on lesson planning, "
    "classroom management and curriculum design. My students' exam pass rate rose to 92% last year."
)
DESIGNER = (
    "Hello! I'm Kai, a junior UX designer. I use Figma and Photoshop for prototyping and UX research, "
    "and I redesigned a banking app that increased retention by 18%."
)
SALES = (
    "I'm Jordan, a sales executive with 4 years in B2B software. I exceeded my quota by 140% and closed "
    "$2.4M in new deals. Salesforce, negotiation and prospecting are my strengths."
)

# script, role, seniority, industry, skills that must be among those found
EXAMPLES = [
    pytest.param(
        SOFTWARE_ENGINEER, "software engineer", "senior", "tech", {"Python", "Kubernetes", "AWS"}, id="swe"
    ),
    pytest.param(NURSE, "registered nurse", "senior", "healthcare", {"triage", "wound care"}, id="nurse"),
    pytest.param(
        TEACHER, "teacher", "lead", "education", {"lesson planning", "curriculum design"}, id="teacher"
    ),
    pytest.param(DESIGNER, "UX designer", "junior", "design", {"Figma", "UX research"}, id="designer"),
    pytest.param(SALES, "sales executive", "mid", "sales", {"Salesforce", "negotiation"}, id="sales"),
]
STYLE_WORDS = [
    ("professional", ("polished", "subtle movement")),
    ("friendly", ("warm, cinematic", "smooth camera")),
    ("energetic", ("dynamic, vibrant", "creative angles")),
]
MOTION_WORDS = [
    ("pan", 0.1, "slow, subtle pan"),
    ("pan", 0.5, "smooth, steady pan"),
    ("pan", 0.9, "sweeping pan"),
    ("zoom", 0.0, "slow, gentle push-in"),
    ("tilt", 1.0, "bold, sweeping tilt"),
    ("static", 0.5, "static camera"),
]
ACCENTED_AND_EMOJI = ["café", "naïve", "Zoë", "résumé", "😀", "👩‍💻", "🇫🇷", "Ångström", "🚀", "señora"]
ANY_CHAR = st.characters(categories=["L", "M", "N", "P", "S", "Z", "Cc", "Cf", "Cs"])  # Cs: lone surrogates
ANY_TEXT = st.text(ANY_CHAR, max_size=400)
LONG_TEXT = st.builds(
    lambda chunk, times: chunk * times, st.text(ANY_CHAR, min_size=10, max_size=80), st.integers(70, 600)
)
WIDE_CHAR = st.sampled_from(["😀", "👩\u200d💻", "🇫🇷", "𝔘", "é", " "])  # several UTF-16 units each
LONG_ACHIEVEMENTS = st.builds(
    lambda chunk, times: f"Led {chunk * times}. Grew {chunk * times} by 40%.",
    st.lists(WIDE_CHAR | ANY_CHAR, min_size=1, max_size=12).map("".join),
    st.integers(1, 150),
)
FEW = settings(max_examples=60, deadline=None)


def test_every_public_name_resolves_and_the_entry_points_are_public():
    assert all(hasattr(prompts, name) for name in prompts.__all__)
    entry_points = {"build_prompt", "utf16_len", "PromptResult", "STYLES", "CAMERA_MOTIONS"}
    assert entry_points | {"RUNWAY_PROMPT_LIMIT", "HEYGEN_SCRIPT_LIMIT"} <= set(prompts.__all__)


def _points(reason: str) -> int:
    return int(reason.split()[0])


# --- Extraction


@pytest.mark.parametrize(("script", "role", "seniority", "industry", "skills"), EXAMPLES)
def test_role_is_the_first_role_named(script, role, seniority, industry, skills):
    assert extract_elements(script).role.value == role


@pytest.mark.parametrize(("script", "role", "seniority", "industry", "skills"), EXAMPLES)
def test_seniority_is_found(script, role, seniority, industry, skills):
    assert extract_elements(script).seniority.value == seniority


@pytest.mark.parametrize(("script", "role", "seniority", "industry", "skills"), EXAMPLES)
def test_industry_is_found(script, role, seniority, industry, skills):
    assert extract_elements(script).industry.value == industry


@pytest.mark.parametrize(("script", "role", "seniority", "industry", "skills"), EXAMPLES)
def test_skills_are_found(script, role, seniority, industry, skills):
    assert skills <= {skill.value for skill in extract_elements(script).skills}


def test_every_finding_records_the_words_that_matched():
    elements = extract_elements(SOFTWARE_ENGINEER)
    assert elements.role.matched == ("software engineer",)
    assert elements.seniority.matched == ("senior",)
    assert "role: software engineer" in elements.industry.matched
    assert "cloud" in elements.industry.matched
    assert elements.settings[0].matched == ("office",)


def test_seniority_falls_back_to_years_of_experience():
    elements = extract_elements(NURSE)
    assert elements.seniority.matched == ("8 years",)


def test_achievements_are_sentences_with_a_quantity_or_an_action_verb():
    achievements = extract_elements(SOFTWARE_ENGINEER).achievements
    assert [a.matched for a in achievements] == [("led", "launched", "2 million"), ("reduced", "35%")]


def test_years_of_experience_and_calendar_years_are_not_achievements():
    assert extract_elements("I have 10 years of experience. I moved here in 2019.").achievements == ()


def test_setting_named_in_the_script_is_used_in_the_prompt():
    assert "hospital ward" in build_prompt(NURSE).runway_prompt


def test_setting_defaults_to_the_industry_usual_place():
    result = build_prompt("I am a teacher.")
    assert result.elements.settings == ()
    assert "classroom" in result.runway_prompt


# --- Styles and camera


@pytest.mark.parametrize(("style", "words"), STYLE_WORDS)
def test_style_words_appear_in_the_prompt(style, words):
    prompt = build_prompt(SOFTWARE_ENGINEER, style).runway_prompt
    assert all(word in prompt.lower() for word in words)


@pytest.mark.parametrize("style", list(STYLES))
def test_style_sets_the_camera_motion_when_none_is_given(style):
    assert build_prompt(NURSE, style).camera_motion == STYLES[style].motion


@pytest.mark.parametrize(("motion", "intensity", "words"), MOTION_WORDS)
def test_camera_intensity_is_rendered_as_words(motion, intensity, words):
    result = build_prompt(DESIGNER, "energetic", motion, intensity)
    assert f"Camera: {words}" in result.runway_prompt
    assert result.camera_motion == motion


def test_unknown_style_is_rejected_listing_the_valid_ones():
    with pytest.raises(ValueError, match="unknown style 'moody'; valid: professional, friendly, energetic"):
        build_prompt(TEACHER, "moody")


def test_unknown_camera_motion_is_rejected_listing_the_valid_ones():
    with pytest.raises(ValueError, match=f"valid: {', '.join(CAMERA_MOTIONS)}"):
        build_prompt(TEACHER, camera_motion="dolly")


@pytest.mark.parametrize("intensity", [-0.1, 1.1, math.nan, math.inf, True, "0.5"])
def test_camera_intensity_outside_zero_to_one_is_rejected(intensity):
    with pytest.raises(ValueError, match="camera_intensity"):
        build_prompt(TEACHER, camera_intensity=intensity)


def test_style_and_motion_names_ignore_case_and_surrounding_spaces():
    result = build_prompt(TEACHER, " Friendly ", "ZOOM")
    assert (result.style, result.camera_motion) == ("friendly", "zoom")


# --- Score


def test_rich_script_scores_higher_than_a_bare_one():
    assert (
        build_prompt(SOFTWARE_ENGINEER).quality_score
        > build_prompt("Hello there, nice to meet you.").quality_score
    )


def test_score_is_seventy_plus_its_reasons_clamped_to_a_hundred():
    for script in (SOFTWARE_ENGINEER, NURSE, TEACHER, DESIGNER, SALES):
        result = build_prompt(script)
        assert result.quality_score == min(100, max(70, 70 + sum(map(_points, result.score_reasons))))


def test_empty_script_scores_the_minimum_and_says_why():
    result = build_prompt("")
    assert result.quality_score == 70
    assert result.score_reasons == ("-5 nothing extractable", "-5 very short script (0 words)")


def test_trimming_the_spoken_script_lowers_the_score():
    long_script = (SOFTWARE_ENGINEER + " ") * 60
    result = build_prompt(long_script)
    assert any(reason.startswith("-5 script: trimmed") for reason in result.score_reasons)


# --- Limits and Unicode


def test_emoji_and_accented_script_stays_within_the_runway_limit():
    words = [ACCENTED_AND_EMOJI[i % len(ACCENTED_AND_EMOJI)] for i in range(3000)]
    script = " ".join(f"Led {w} growth by 40%." if i % 9 == 0 else w for i, w in enumerate(words))
    prompt = build_prompt(script).runway_prompt
    assert utf16_len(prompt) <= RUNWAY_PROMPT_LIMIT
    assert prompt.encode("utf-16-le").decode("utf-16-le") == prompt


def test_quoted_highlights_are_whole_words_of_the_script():
    script = "Led " + " ".join(ACCENTED_AND_EMOJI * 3) + ". Grew revenue 40% with Ångström naïve 👩‍💻 señora."
    prompt = build_prompt(script).runway_prompt
    quoted = " ".join(re.findall(r'"([^"]*)"', prompt)).split()
    assert quoted
    assert set(quoted) <= set(script.replace(".", "").split())


def test_oversized_highlights_are_dropped_before_anything_else():
    script = f"Led {'😀' * 290}. Grew {'é' * 290} by 40%."
    result = build_prompt(script)
    assert result.trims == ("prompt: dropped highlights",)
    assert "-2 prompt: dropped highlights" in result.score_reasons
    assert "Moments of achievement" in result.runway_prompt
    assert utf16_len(result.runway_prompt) <= RUNWAY_PROMPT_LIMIT


def test_long_spoken_script_is_cut_at_a_sentence_end():
    script = "I lead the design team. " * 300
    heygen = build_prompt(script).heygen_script
    assert len(heygen) <= HEYGEN_SCRIPT_LIMIT
    assert heygen.endswith("team.")


def test_long_spoken_script_without_sentence_ends_is_cut_at_a_word():
    script = " ".join(["naïve", "café", "👩‍💻"] * 2000)
    heygen = build_prompt(script).heygen_script
    assert len(heygen) <= HEYGEN_SCRIPT_LIMIT
    assert script.startswith(heygen + " ")


@pytest.mark.parametrize(
    "unit", ["漢", "👩\u200d💻", "🇫🇷", "x\u0301"], ids=["cjk", "zwj-sequence", "flag", "combining-mark"]
)
def test_unbroken_text_is_cut_between_whole_characters(unit):
    heygen = build_prompt(
        "z" + unit * 6000
    ).heygen_script  # "z" puts the limit inside a multi-code-point unit
    assert 0 < len(heygen) <= HEYGEN_SCRIPT_LIMIT
    assert heygen == "z" + unit * ((len(heygen) - 1) // len(unit))


def test_spoken_script_has_its_whitespace_collapsed():
    assert (
        build_prompt("  I am\ta nurse.\r\n\n  Hello\u2028there. ").heygen_script
        == "I am a nurse. Hello there."
    )


def test_lone_surrogates_and_control_characters_are_replaced():
    result = build_prompt("I am a nurse \ud800 at a clinic\x00.")
    assert result.heygen_script == "I am a nurse \ufffd at a clinic ."
    result.heygen_script.encode("utf-16-le")


def test_result_record_is_json_with_camel_case_keys():
    record = json.loads(json.dumps(build_prompt(SALES).to_dict()))
    assert record["elements"]["role"] == {"value": "sales executive", "matched": ["sales executive"]}
    assert {"runwayPrompt", "heygenScript", "qualityScore", "scoreReasons", "cameraMotion"} <= set(record)


# --- Properties


@FEW
@given(
    script=ANY_TEXT | LONG_TEXT | LONG_ACHIEVEMENTS,
    style=st.sampled_from(list(STYLES)),
    motion=st.sampled_from([None, *CAMERA_MOTIONS]),
)
def test_any_text_stays_within_both_limits(script, style, motion):
    result = build_prompt(script, style, motion)
    assert utf16_len(result.runway_prompt) <= RUNWAY_PROMPT_LIMIT
    assert len(result.heygen_script) <= HEYGEN_SCRIPT_LIMIT
    assert result.runway_prompt.encode("utf-16-le").decode("utf-16-le") == result.runway_prompt
    assert result.heygen_script.encode("utf-16-le").decode("utf-16-le") == result.heygen_script


@FEW
@given(script=ANY_TEXT | LONG_TEXT, intensity=st.floats(0, 1))
def test_same_input_gives_the_same_output(script, intensity):
    assert build_prompt(script, camera_intensity=intensity) == build_prompt(
        script, camera_intensity=intensity
    )


@FEW
@given(script=ANY_TEXT | LONG_TEXT | LONG_ACHIEVEMENTS)
def test_score_always_lies_between_70_and_100(script):
    assert 70 <= build_prompt(script).quality_score <= 100


@FEW
@given(style=st.text(max_size=20).filter(lambda s: s.strip().lower() not in STYLES))
def test_any_unknown_style_is_rejected(style):
    with pytest.raises(ValueError, match="valid: professional, friendly, energetic"):
        build_prompt(NURSE, style)
