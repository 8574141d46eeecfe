"""CV script -> provider prompts that fit the person: pure, deterministic and explainable.

`build_prompt` returns a `PromptResult`: the RunwayML text-to-video prompt (`runway_prompt`) and
image-to-video prompt (`runway_image_prompt`, motion and camera only: the image fixes the look), both
within the RunwayML limit (1000 UTF-16 code units); the HeyGen spoken script (<= 5000 characters);
what was extracted; a quality score of the prompt with the reasons behind it; `writer` (rules or
gemini). Any Unicode is accepted: lone surrogates become U+FFFD, control characters spaces, text is
NFC-normalised; cuts fall between words, never inside a surrogate pair or emoji.

The prompt follows Runway's Gen-4 prompting guide: subject in general terms (no name, gender or
ethnicity), one action, the setting, exactly one camera move, scene motion, style; positive phrasing,
no quotation marks, nothing of the CV verbatim (achievements become visuals of the person's field).

Styles (the camera motion defaults to the style's; intensity 0-1 becomes words)::

    style         look                                                   default motion
    professional  clean, polished look, soft key light, neutral palette  zoom
    friendly      warm, cinematic look, golden-hour tones                pan
    energetic     dynamic, vibrant look, bold saturated colour           tilt

Modules: `occupations.json` (ISCO-08 occupations: titles, keywords, settings, actions, props,
milestones), `vocabulary` (loads it once; styles, camera moves), `extract` (CV script -> `Elements`:
occupation and confidence, seniority, achievement cues), `compose` (`build_prompt`), `checks` (what
every prompt must pass), `score` (the rubric), `fit` (cutting to the limits), `gemini` (the optional
Gemini writer, PROMPT_WRITER=gemini; imported only then). docs/PROMPTS.md has the details.
"""

from __future__ import annotations

from providers.prompts.checks import problems
from providers.prompts.compose import (
    HEYGEN_SCRIPT_LIMIT,
    RUNWAY_PROMPT_LIMIT,
    PromptResult,
    build_prompt,
    image_prompt,
    motion_words,
)
from providers.prompts.extract import Elements, Finding, extract_elements
from providers.prompts.score import score
from providers.prompts.vocabulary import CAMERA_MOTIONS, STYLES, VOCABULARY, StyleTemplate
from providers.runwayml.request import utf16_len

__all__ = [
    "CAMERA_MOTIONS",
    "HEYGEN_SCRIPT_LIMIT",
    "RUNWAY_PROMPT_LIMIT",
    "STYLES",
    "VOCABULARY",
    "Elements",
    "Finding",
    "PromptResult",
    "StyleTemplate",
    "build_prompt",
    "extract_elements",
    "image_prompt",
    "motion_words",
    "problems",
    "score",
    "utf16_len",
]
