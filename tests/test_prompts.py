"""CV script -> prompts: occupation and seniority, the composed prompt, checks, score, provider limits."""

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
    VOCABULARY,
    build_prompt,
    extract,
    extract_elements,
    image_prompt,
    problems,
    utf16_len,
)
from providers.prompts.extract import MIN_CONFIDENCE
from tests.conftest import ROOT

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

ELECTRICIAN = "Electrician with fifteen years of experience in residential wiring and fuse boards."
LAWYER = "I'm Sam Baker, a corporate lawyer. I advise clients on mergers and closed 12 deals last year."
HEAD_CHEF = "Head chef. I run a kitchen brigade of 20 and doubled our covers in two years."
BACKEND = (ROOT / "samples" / "cv_script.txt").read_text(encoding="utf-8")
OFFENSIVE = (
    "I am a registered nurse. I run a unit of 14 beds, trained 30 new nurses, and my boss was an idiot."
)

# script, occupation, seniority
EXAMPLES = [
    pytest.param(SOFTWARE_ENGINEER, "software_developer", "senior", id="swe"),
    pytest.param(NURSE, "nurse", "senior", id="nurse"),
    pytest.param(TEACHER, "school_teacher", "lead", id="teacher"),
    pytest.param(DESIGNER, "designer", "junior", id="designer"),
    pytest.param(SALES, "sales_professional", "mid", id="sales"),
    pytest.param(ELECTRICIAN, "electrician", "senior", id="electrician"),
    pytest.param(LAWYER, "lawyer", None, id="lawyer"),
    pytest.param(HEAD_CHEF, "chef", "lead", id="chef"),
    pytest.param(BACKEND, "software_developer", "senior", id="backend"),
]
STYLE_WORDS = [
    ("professional", ("polished", "soft key light")),
    ("friendly", ("warm, cinematic", "golden-hour")),
    ("energetic", ("dynamic, vibrant", "high contrast")),
]
MOTION_WORDS = [
    ("pan", 0.1, "slowly pans across the scene"),
    ("pan", 0.5, "pans smoothly across the scene"),
    ("pan", 0.9, "sweeps across the scene in a fast pan"),
    ("zoom", 0.0, "slowly pushes in"),
    ("tilt", 1.0, "tilts up in a bold, sweeping move"),
    ("static", 0.5, "holds a steady, static frame"),
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
    entry_points = {"build_prompt", "image_prompt", "problems", "PromptResult", "STYLES", "CAMERA_MOTIONS"}
    assert entry_points | {"RUNWAY_PROMPT_LIMIT", "HEYGEN_SCRIPT_LIMIT", "utf16_len"} <= set(prompts.__all__)


def _points(reason: str) -> int:
    return int(reason.split()[0])


# --- Extraction


@pytest.mark.parametrize(("script", "occupation", "seniority"), EXAMPLES)
def test_occupation_is_recognised_with_confidence(script, occupation, seniority):
    elements = extract_elements(script)
    assert elements.occupation.value == occupation
    assert elements.confidence >= 0.7


@pytest.mark.parametrize(("script", "occupation", "seniority"), EXAMPLES)
def test_seniority_comes_from_titles_and_years(script, occupation, seniority):
    found = extract_elements(script).seniority
    assert (found.value if found else None) == seniority


def test_years_written_as_words_count():
    assert extract_elements(ELECTRICIAN).seniority.matched == ("15 years",)


def test_a_name_that_is_also_a_trade_is_not_read_as_a_title():
    assert extract_elements("Hi, I'm Sam Baker, a nurse.").occupation.value == "nurse"


@pytest.mark.parametrize(
    ("script", "occupation"),
    [
        ("Soy enfermera con 10 años de experiencia en urgencias.", "nurse"),
        ("Je suis avocate en droit des affaires.", "lawyer"),
        ("Ich bin Elektriker mit 12 Jahren Erfahrung.", "electrician"),
        ("Chef de projet dans une banque.", "project_manager"),
    ],
)
def test_titles_in_spanish_french_and_german_are_recognised(script, occupation):
    assert extract_elements(script).occupation.value == occupation


@pytest.mark.parametrize("script", ["", "Hello there, nice to meet you.", "I like hiking and good coffee."])
def test_nothing_recognisable_gives_no_occupation(script):
    elements = extract_elements(script)
    assert elements.occupation is None
    assert elements.confidence < MIN_CONFIDENCE


_FINDER_WORDS = [*sorted(extract._TITLE_OWNER)[::7], "nurse", "chef", "lehrer", "head chef", "ab", "a-b"]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(_FINDER_WORDS),
            st.sampled_from(["es", "s", "in", "innen", "inn", "e", "-", "_", "x", "é", "3", "٣"]),
            st.sampled_from([" ", "  ", ", ", ".", "\n", "-", "'", "/"]),
            st.text(max_size=3),
        ),
        max_size=12,
    ).map("".join)
)
def test_the_word_finder_finds_what_the_word_regex_finds(text):
    finder, regex = extract.WordFinder(_FINDER_WORDS), extract._word_regex(_FINDER_WORDS)
    found = [(hit.start, hit.end, hit.word) for hit in finder.finditer(text)]
    assert found == [(m.start(), m.end(), m[1]) for m in regex.finditer(text)]


def test_the_word_finder_takes_the_longest_entry_and_a_suffix_only_before_a_word_end():
    finder = extract.WordFinder(["head chef", "head", "chef", "lehrer"])
    assert [h.word for h in finder.finditer("head chefs, lehrerinnen, chefx, xchef")] == [
        "head chef",
        "lehrer",
    ]


def test_keywords_alone_give_a_lower_confidence_than_a_title():
    by_keywords = extract_elements("Wiring, fuse boards and rewiring of old houses, plus solar panels.")
    assert by_keywords.occupation.value == "electrician"
    assert by_keywords.confidence < extract_elements(ELECTRICIAN).confidence


def test_achievements_are_cues_not_sentences():
    cues = extract_elements(SOFTWARE_ENGINEER).achievements
    assert {"led", "launched", "reduced", "35%"} <= set(cues)
    assert all(len(cue.split()) <= 2 for cue in cues)


def test_years_of_experience_and_calendar_years_are_not_achievements():
    assert extract_elements("I have 10 years of experience. I moved here in 2019.").achievements == ()


def test_every_occupation_has_an_isco_group_and_one_action_per_style():
    for occupation in VOCABULARY.occupations.values():
        assert occupation.isco.startswith(occupation.sub_major)
        assert occupation.sub_major.startswith(occupation.major)
        assert {occupation.sub_major, occupation.major} <= set(VOCABULARY.groups)
        assert len(occupation.actions) >= len(STYLES)


# --- The composed prompt


@pytest.mark.parametrize(
    ("script", "wanted", "wrong"),
    [
        (DESIGNER, "design studio", ("factory", "machinery")),
        (ELECTRICIAN, "seasoned electrician", ("junior", "early-career")),
        (LAWYER, "law", ("sales", "factory")),
        (HEAD_CHEF, "kitchen", ("hotel lobby", "dashboard")),
        (BACKEND, "tech office", ("classroom",)),
    ],
)
def test_the_setting_fits_the_occupation(script, wanted, wrong):
    prompt = build_prompt(script).runway_prompt
    assert wanted in prompt
    assert not any(word in prompt.lower() for word in wrong)


def test_no_occupation_gives_the_neutral_setting_and_a_low_score():
    result = build_prompt("I like hiking and good coffee.")
    assert "A professional" in result.runway_prompt
    assert result.quality_score <= 30


def test_the_prompt_quotes_nothing_and_copies_no_cv_sentence():
    result = build_prompt(OFFENSIVE)
    assert not re.search(r"[\"“”]", result.runway_prompt)
    assert "idiot" not in result.runway_prompt
    assert "14 beds" not in result.runway_prompt
    assert problems(result.runway_prompt, OFFENSIVE) == ()


@pytest.mark.parametrize("style", list(STYLES))
@pytest.mark.parametrize("motion", list(CAMERA_MOTIONS))
def test_the_prompt_has_exactly_one_camera_sentence(style, motion):
    prompt = build_prompt(NURSE, style, motion).runway_prompt
    assert prompt.count("camera") == 1
    assert "Camera" not in prompt


@pytest.mark.parametrize("script", [SOFTWARE_ENGINEER, NURSE, "", "x " * 3000, BACKEND])
def test_the_text_prompt_is_20_to_60_words(script):
    assert 20 <= len(build_prompt(script).runway_prompt.split()) <= 60


def test_the_subject_is_general_without_name_or_gender():
    prompt = build_prompt(SOFTWARE_ENGINEER).runway_prompt
    assert not re.search(r"\b(Zoë|Ñúñez|she|he|her|his|woman|man)\b", prompt, re.IGNORECASE)


def test_achievements_become_a_visual_of_the_field():
    assert "restaurant service" in build_prompt(HEAD_CHEF).runway_prompt
    assert "restaurant service" not in build_prompt("Head chef in a small bistro.").runway_prompt


def test_the_image_prompt_describes_motion_and_camera_only():
    result = build_prompt(NURSE, "friendly", "pan", 0.1)
    assert result.runway_image_prompt == image_prompt("friendly", "pan", 0.1)
    assert result.runway_image_prompt.startswith("The subject smiles")
    assert "hospital" not in result.runway_image_prompt
    assert problems(result.runway_image_prompt, NURSE, image=True) == ()


# --- Styles and camera


@pytest.mark.parametrize(("style", "words"), STYLE_WORDS)
def test_style_words_appear_in_the_prompt(style, words):
    prompt = build_prompt(SOFTWARE_ENGINEER, style).runway_prompt
    assert all(word in prompt.lower() for word in words)


def test_the_three_styles_give_three_different_prompts():
    assert len({build_prompt(NURSE, style).runway_prompt for style in STYLES}) == 3


@pytest.mark.parametrize("style", list(STYLES))
def test_style_sets_the_camera_motion_when_none_is_given(style):
    assert build_prompt(NURSE, style).camera_motion == STYLES[style].motion


@pytest.mark.parametrize(("motion", "intensity", "words"), MOTION_WORDS)
def test_camera_intensity_is_rendered_as_words(motion, intensity, words):
    result = build_prompt(DESIGNER, "energetic", motion, intensity)
    assert f"The camera {words}." in result.runway_prompt
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


# --- Checks and score


@pytest.mark.parametrize(
    ("prompt", "code"),
    [
        (
            'A nurse holds a sign reading "hello" in a ward. The camera pushes in. Soft light, calm.',
            "quotes",
        ),
        (
            "A nurse works in a ward with no patients. The camera pushes in. Warm look, soft light.",
            "negative",
        ),
        (
            "A nurse in a ward. The camera pushes in. The camera pans left. Warm look, soft light, calm.",
            "camera_moves (2)",
        ),
        ("A nurse works in a ward.", "too_short (6 words)"),
        (
            "A nurse works in a ward under a caption naming the unit. The camera pushes in. Soft light.",
            "on_screen_text",
        ),
    ],
)
def test_the_checks_catch_what_a_video_model_gets_wrong(prompt, code):
    assert code in problems(prompt, "")


def test_copying_a_run_of_the_script_is_caught():
    script = "I coordinate a unit of fourteen beds on the ward"
    prompt = (
        "A nurse coordinate a unit of fourteen beds on the ward at night. The camera pushes in. Soft light."
    )
    assert "verbatim" in problems(prompt, script)


def test_a_sure_match_scores_higher_than_a_guess_and_a_guess_higher_than_nothing():
    sure = build_prompt(ELECTRICIAN).quality_score
    guess = build_prompt("Wiring, fuse boards and rewiring of old houses, plus solar panels.").quality_score
    nothing = build_prompt("Hello there, nice to meet you.").quality_score
    assert sure > guess > nothing


def test_score_is_the_sum_of_its_reasons():
    for script in (SOFTWARE_ENGINEER, NURSE, TEACHER, DESIGNER, SALES, ""):
        result = build_prompt(script)
        assert result.quality_score == max(0, min(100, sum(map(_points, result.score_reasons))))


def test_empty_script_scores_low_and_says_why():
    result = build_prompt("")
    assert result.quality_score == 30
    assert result.score_reasons[0] == "+0 no occupation recognised (confidence 0.00): neutral setting"


def test_trimming_the_spoken_script_lowers_the_score():
    long_script = (SOFTWARE_ENGINEER + " ") * 60
    result = build_prompt(long_script)
    assert any(reason.startswith("-10 script: trimmed") for reason in result.score_reasons)
    assert result.quality_score < build_prompt(SOFTWARE_ENGINEER).quality_score


# --- Limits and Unicode


def test_emoji_and_accented_script_stays_within_the_runway_limit():
    words = [ACCENTED_AND_EMOJI[i % len(ACCENTED_AND_EMOJI)] for i in range(3000)]
    script = " ".join(f"Led {w} growth by 40%." if i % 9 == 0 else w for i, w in enumerate(words))
    prompt = build_prompt(script).runway_prompt
    assert utf16_len(prompt) <= RUNWAY_PROMPT_LIMIT
    assert prompt.encode("utf-16-le").decode("utf-16-le") == prompt


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
    assert record["elements"]["occupation"]["value"] == "sales_professional"
    assert "sales executive" in record["elements"]["occupation"]["matched"]
    keys = {
        "runwayPrompt",
        "runwayImagePrompt",
        "heygenScript",
        "qualityScore",
        "scoreReasons",
        "cameraMotion",
        "writer",
    }
    assert keys <= set(record)


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
def test_score_always_lies_between_0_and_100(script):
    assert 0 <= build_prompt(script).quality_score <= 100


@FEW
@given(style=st.text(max_size=20).filter(lambda s: s.strip().lower() not in STYLES))
def test_any_unknown_style_is_rejected(style):
    with pytest.raises(ValueError, match="valid: professional, friendly, energetic"):
        build_prompt(NURSE, style)
