"""Composing the prompts from the extraction, the style and the camera move (pure, except the writer).

Text-to-video (gen4.5, veo3.1), in the order Runway's prompting guide asks for::

    <Subject> <one action> in <setting>, <props> close at hand. subject in general terms, no name
    The camera <one move>.                                     the only camera sentence
    <Scene motion>.                                            an achievement as a visual of the field,
                                                               else the style's calm scene motion
    <Style descriptors>.

Image-to-video (an input image fixes the look): `The subject <gesture>. The camera <move>. <Scene>.`
`build_prompt` is the entry point (`providers.prompts` documents what it returns).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from providers.heygen.mapping import CAPABILITIES as HEYGEN
from providers.prompts import checks
from providers.prompts.extract import Elements, extract_elements, sanitize
from providers.prompts.fit import fit_prompt, fit_script
from providers.prompts.score import score
from providers.prompts.vocabulary import CAMERA_MOTIONS, STYLES, VOCABULARY
from providers.runwayml.request import CAPABILITIES as RUNWAYML

if TYPE_CHECKING:
    from config import Settings

RUNWAY_PROMPT_LIMIT = RUNWAYML.max_prompt_units  # UTF-16 code units of `promptText`
HEYGEN_SCRIPT_LIMIT = HEYGEN.max_prompt_units  # characters of the spoken script
MODIFIER = {"junior": "early-career", "mid": "", "senior": "seasoned", "lead": "senior"}


@dataclass(frozen=True)
class Parts:
    """A text-to-video prompt in pieces (also the structured answer asked of Gemini)."""

    subject: str
    action: str
    setting: str
    camera: str
    style: str
    scene: str = ""
    props: str = ""


@dataclass(frozen=True)
class PromptResult:
    """Per-provider prompts for one script, with the extraction and score to store with the job."""

    runway_prompt: str  # text-to-video
    heygen_script: str
    elements: Elements
    quality_score: int
    score_reasons: tuple[str, ...]
    style: str
    camera_motion: str
    camera_intensity: float
    trims: tuple[str, ...]  # what had to be cut to fit the limits, e.g. "script: trimmed ..."
    runway_image_prompt: str = ""  # image-to-video: motion and camera only
    writer: str = "rules"  # who wrote `runway_prompt`: rules, or gemini when its answer passed the checks

    def to_dict(self) -> dict[str, object]:
        """The whole result with camelCase keys and lists, as JSON and Firestore take it."""
        return asdict(self, dict_factory=_record)


def _record(items: list[tuple[str, object]]) -> dict[str, object]:
    camel = (re.sub(r"_(\w)", lambda m: m[1].upper(), key) for key, _ in items)
    return {key: list(v) if isinstance(v, tuple) else v for key, (_, v) in zip(camel, items, strict=True)}


def motion_words(motion: str, intensity: float) -> str:
    """The camera move in words: intensity below 1/3 is gentle, from 2/3 up it is bold."""
    return CAMERA_MOTIONS[motion][min(2, int(intensity * 3))]


def camera_sentence(motion: str, intensity: float) -> str:
    return f"The camera {motion_words(motion, intensity)}"


def style_sentence(style: str) -> str:
    return ", ".join(STYLES[style].modifiers).capitalize()


def _subject(el: Elements, noun: str) -> str:
    level = MODIFIER[el.seniority.value] if el.seniority else ""
    phrase = f"{level} {noun}".strip()
    return f"{'An' if phrase[0].lower() in 'aeiou' else 'A'} {phrase}"


def rules_parts(el: Elements, style: str, motion: str, intensity: float) -> Parts:
    """The rules composer: the occupation's setting, action, props and milestone for this style."""
    index = list(STYLES).index(style)
    occupation = VOCABULARY.occupations[el.occupation.value] if el.occupation else None
    source = occupation or VOCABULARY.neutral
    scene = STYLES[style].scene
    if occupation and el.achievements:
        scene = occupation.milestones[index % len(occupation.milestones)]
    action = source.actions[index % len(source.actions)]
    setting = source.settings[index % len(source.settings)]
    return Parts(
        subject=_subject(el, source.noun),
        action=action,
        setting=setting,
        camera=camera_sentence(motion, intensity),
        style=style_sentence(style),
        scene=scene,
        props=" and ".join(_fresh(source.props, action + setting)),
    )


def _fresh(props: tuple[str, ...], said: str) -> list[str]:
    """The props (at most two) that the action and setting do not already name."""
    return [prop for prop in props if not any(len(w) > 4 and w in said for w in prop.split())][:2]


def render(parts: Parts) -> list[tuple[str, str]]:
    """The prompt's sentences, most important first (as `fit.fit_prompt` takes them)."""
    props = f", {parts.props} close at hand" if parts.props else ""
    return [
        ("subject", f"{parts.subject} {parts.action} in {parts.setting}{props}"),
        ("camera", parts.camera.rstrip(".")),
        ("scene", parts.scene.rstrip(".")),
        ("style", parts.style.rstrip(".")),
    ]


def image_prompt(style: str, motion: str, intensity: float) -> str:
    """Image-to-video: the image fixes the look, so the prompt is the subject's motion and the camera."""
    template = STYLES[style]
    return f"The subject {template.gesture}. {camera_sentence(motion, intensity)}. {template.scene}."


def _choose(value: str, valid: Mapping[str, object], what: str) -> str:
    name = value.strip().lower() if isinstance(value, str) else ""
    if name not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return name


def _check_intensity(intensity: float) -> float:
    ok = isinstance(intensity, int | float) and not isinstance(intensity, bool) and math.isfinite(intensity)
    if not ok or not 0 <= intensity <= 1:
        raise ValueError(f"camera_intensity must be a number from 0 to 1, got {intensity!r}")
    return float(intensity)


def _written(script: str, el: Elements, rules: Parts, settings: Settings | None) -> tuple[Parts, str]:
    """Gemini's parts when PROMPT_WRITER=gemini and its answer passes every check, else the rules'."""
    if settings is None or settings.prompt_writer != "gemini":
        return rules, "rules"
    from providers.prompts import gemini  # the SDK is loaded only when the writer is on

    parts = gemini.write(script, el, rules, settings)
    return (parts, "gemini") if parts is not None else (rules, "rules")


def build_prompt(
    script: str,
    style: str = "professional",
    camera_motion: str | None = None,
    camera_intensity: float = 0.5,
    *,
    settings: Settings | None = None,
) -> PromptResult:
    """Turn a CV script into the RunwayML prompts, the HeyGen script, the extraction and its score.

    With `settings` and PROMPT_WRITER=gemini, Gemini writes the text-to-video prompt; any failure
    falls back to the rules composer. Raises `ValueError` for an unknown style or camera motion, or
    an intensity outside 0-1.
    """
    if not isinstance(script, str):
        raise TypeError(f"script must be a string, got {type(script).__name__}")
    style = _choose(style, STYLES, "style")
    motion = _choose(
        STYLES[style].motion if camera_motion is None else camera_motion, CAMERA_MOTIONS, "camera motion"
    )
    intensity = _check_intensity(camera_intensity)
    elements = extract_elements(script)
    rules = rules_parts(elements, style, motion, intensity)
    parts, writer = _written(script, elements, rules, settings)
    prompt, trims = fit_prompt(render(parts), RUNWAY_PROMPT_LIMIT)
    spoken = " ".join(sanitize(script).split())
    heygen = fit_script(spoken, HEYGEN_SCRIPT_LIMIT)
    trims += [f"script: trimmed {len(spoken)} to {len(heygen)} characters"] if heygen != spoken else []
    milestone = parts.scene != STYLES[style].scene if writer == "rules" else bool(elements.achievements)
    quality, reasons = score(elements, checks.problems(prompt, script), tuple(trims), milestone)
    return PromptResult(
        prompt,
        heygen,
        elements,
        quality,
        reasons,
        style,
        motion,
        intensity,
        tuple(trims),
        image_prompt(style, motion, intensity),
        writer,
    )
