"""Composing the prompts: RunwayML fragments, most important first, fitted to the providers' limits.

`build_prompt` is the entry point (`providers.prompts` documents what it returns and why).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from providers.heygen.mapping import CAPABILITIES as HEYGEN
from providers.prompts.extract import VERBS, Elements, extract_elements, is_quantified, quote, sanitize
from providers.prompts.fit import fit_prompt, fit_script
from providers.prompts.score import score
from providers.prompts.vocabulary import CAMERA_MOTIONS, FIGURES_VISUAL, SETTING_LOOKS, STYLES, USUAL_SETTING
from providers.runwayml.request import CAPABILITIES as RUNWAYML

RUNWAY_PROMPT_LIMIT = RUNWAYML.max_prompt_units  # UTF-16 code units of `promptText`
HEYGEN_SCRIPT_LIMIT = HEYGEN.max_prompt_units  # characters of the spoken script


@dataclass(frozen=True)
class PromptResult:
    """Per-provider prompts for one script, with the extraction and score to store with the job."""

    runway_prompt: str
    heygen_script: str
    elements: Elements
    quality_score: int
    score_reasons: tuple[str, ...]
    style: str
    camera_motion: str
    camera_intensity: float
    trims: tuple[str, ...]  # what had to be cut to fit the limits, e.g. "prompt: dropped highlights"

    def to_dict(self) -> dict[str, object]:
        """The whole result with camelCase keys and lists, as JSON and Firestore take it."""
        return asdict(self, dict_factory=_record)


def _record(items: list[tuple[str, object]]) -> dict[str, object]:
    camel = (re.sub(r"_(\w)", lambda m: m[1].upper(), key) for key, _ in items)
    return {key: list(v) if isinstance(v, tuple) else v for key, (_, v) in zip(camel, items, strict=True)}


def _fragments(el: Elements, style: str, motion: str, intensity: float) -> list[tuple[str, str]]:
    return [
        ("subject", _subject(el)),
        ("setting", f"Setting: {_setting_look(el)}"),
        ("style", ", ".join(STYLES[style].modifiers).capitalize()),
        ("camera", f"Camera: {motion_words(motion, intensity)}"),
        ("skills", f"Details hinting at {', '.join(s.value for s in el.skills[:5])}" if el.skills else ""),
        ("achievements", _achievement_visuals(el)),
        ("highlights", "; ".join(f'"{q}"' for a in el.achievements[:2] if (q := quote(a.value)))),
    ]


def _subject(el: Elements) -> str:
    level = el.seniority.value if el.seniority and el.seniority.value != "mid" else ""
    noun = f"{level} {el.role.value if el.role else 'professional'}".strip()
    article = "An" if noun[0] in "aeiou" else "A"
    industry = el.industry.value if el.industry else ""
    where = f" working in {industry}" if industry and industry not in noun.casefold() else ""
    return f"{article} {noun}{where}, at work and looking confident"


def _setting_look(el: Elements) -> str:
    if el.settings:
        return SETTING_LOOKS[el.settings[0].value]
    return SETTING_LOOKS[USUAL_SETTING[el.industry.value] if el.industry else "office"]


def _achievement_visuals(el: Elements) -> str:
    visuals = [VERBS.owner[verb][0] for a in el.achievements for verb in a.matched if verb in VERBS.owner]
    if any(is_quantified(a) for a in el.achievements):
        visuals.append(FIGURES_VISUAL)
    visuals = list(dict.fromkeys(visuals))[:3]
    return f"Moments of achievement: {', '.join(visuals)}" if visuals else ""


def motion_words(motion: str, intensity: float) -> str:
    """The camera move in words: intensity below 1/3 is gentle, from 2/3 up it is bold."""
    return CAMERA_MOTIONS[motion][min(2, int(intensity * 3))]


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


def build_prompt(
    script: str, style: str = "professional", camera_motion: str | None = None, camera_intensity: float = 0.5
) -> PromptResult:
    """Turn a CV script into the RunwayML prompt, the HeyGen script, the extraction and its score.

    Raises `ValueError` for an unknown style or camera motion, or an intensity outside 0-1.
    """
    if not isinstance(script, str):
        raise TypeError(f"script must be a string, got {type(script).__name__}")
    style = _choose(style, STYLES, "style")
    motion = _choose(
        STYLES[style].motion if camera_motion is None else camera_motion, CAMERA_MOTIONS, "camera motion"
    )
    intensity = _check_intensity(camera_intensity)
    elements = extract_elements(script)
    prompt, trims = fit_prompt(_fragments(elements, style, motion, intensity), RUNWAY_PROMPT_LIMIT)
    spoken = " ".join(sanitize(script).split())
    heygen = fit_script(spoken, HEYGEN_SCRIPT_LIMIT)
    trims += [f"script: trimmed {len(spoken)} to {len(heygen)} characters"] if heygen != spoken else []
    quality, reasons = score(elements, trims)
    return PromptResult(prompt, heygen, elements, quality, reasons, style, motion, intensity, tuple(trims))
