"""CV script → provider prompts: pure, deterministic and explainable (no network, clock or randomness).

`build_prompt` returns a `PromptResult`: the RunwayML `promptText` (≤ 1000 UTF-16 code units), the
HeyGen spoken script (≤ 5000 characters), what was extracted and why, and a quality score with the
rubric items behind it; the limits are each provider's own `Capabilities.max_prompt_units`. Any
Unicode is accepted: lone surrogates become U+FFFD, control characters become spaces, text is
NFC-normalised; cuts fall between words, never inside a surrogate pair or emoji.

What it extracts (keyword tables below; each `Finding` keeps the words that matched)::

    role          the first role named (the longest phrase at that spot), e.g. "registered nurse"
    seniority     the first seniority word (junior/mid/senior/lead/executive), else "N years" of experience
    industry      most keyword hits, the role's own industry counting once; ties follow table order
    skills        known skills in order of first mention (at most 8)
    achievements  sentences with a quantity (40%, $2M, 120 -- not "5 years" or "2019") or an action
                  verb such as led, launched, grew (at most 3)
    settings      workplace cues: office, lab, studio, outdoors, hospital, classroom ... (at most 3);
                  without one the prompt uses the industry's usual setting

Styles (the camera motion defaults to the style's; intensity 0-1 becomes words)::

    style         look                                                   default motion
    professional  clean, polished, soft key light, subtle movement       zoom
    friendly      warm, cinematic, golden tones, smooth camera           pan
    energetic     dynamic, vibrant, bold colour, creative angles         tilt

    intensity     < 1/3 "slow, subtle pan"    < 2/3 "smooth, steady pan"    else "sweeping pan"

Quality rubric: 70 plus the items that apply, clamped to 70-100; `score_reasons` lists each one::

    +8 role found               +3 seniority found           +5 industry found
    +2 per skill (at most +6)   +5 a quantified achievement  +2 two or more achievements
    +3 a setting named          +5 script of 40-400 words
    -5 under 15 words           -5 over 750 words            -5 nothing extractable (no content item)
    -5 spoken script trimmed    -2 per prompt fragment dropped    -1 prompt fragment shortened

RunwayML prompt fragments, most important first (and in that order in the prompt): subject, setting,
style look, camera, skills, achievement visuals, highlights (quoted achievements). Over the limit the
least important fragments are dropped first; one that still does not fit is shortened at a word boundary.
The HeyGen script has its whitespace collapsed; over the limit it ends at the last sentence end that keeps
at least half of it, else at the last space, else (unbroken text such as CJK) between two graphemes.

Modules: `vocabulary` (keyword tables, styles, camera moves), `extract` (CV script -> `Elements`),
`fit` (cutting to the limits), `score` (the rubric), `compose` (fragments, `build_prompt`). The
limits are the providers' own (`Capabilities.max_prompt_units` in `providers/runwayml`, `providers/heygen`).
"""

from __future__ import annotations

from providers.prompts.compose import (
    HEYGEN_SCRIPT_LIMIT,
    RUNWAY_PROMPT_LIMIT,
    PromptResult,
    build_prompt,
    motion_words,
)
from providers.prompts.extract import Elements, Finding, extract_elements
from providers.prompts.score import score
from providers.prompts.vocabulary import CAMERA_MOTIONS, STYLES, StyleTemplate
from providers.runwayml.request import utf16_len

__all__ = [
    "CAMERA_MOTIONS",
    "HEYGEN_SCRIPT_LIMIT",
    "RUNWAY_PROMPT_LIMIT",
    "STYLES",
    "Elements",
    "Finding",
    "PromptResult",
    "StyleTemplate",
    "build_prompt",
    "extract_elements",
    "motion_words",
    "score",
    "utf16_len",
]
