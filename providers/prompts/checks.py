"""The checks every video prompt must pass, whoever wrote it (the rules composer or Gemini) (pure).

code           what it catches
quotes         quotation marks: a video model renders quoted words as on-screen text
on_screen_text words that ask for rendered text (caption, subtitle, logo, sign, ...)
verbatim       a run of VERBATIM_RUN words copied from the CV script
negative       negative phrasing (no, not, never, without, ...): video models read it as a cue
too_short      fewer words than the mode's range (text: 20-60, image: 8-40)
too_long       more words than the mode's range
camera_moves   not exactly one sentence that moves the camera
"""

from __future__ import annotations

import re

from providers.prompts.vocabulary import fold

TEXT_WORDS, IMAGE_WORDS = (20, 60), (8, 40)
VERBATIM_RUN = 6
_QUOTES = re.compile(r"[\"“”„«»‹›`]|(?<![\w])['‘’]|['‘’](?![\w])")
_ON_SCREEN = re.compile(
    r"\b(captions?|subtitles?|logos?|signs? (?:that )?reads?|title cards?|on-screen text|lettering"
    r"|the words)\b"
)
_NEGATIVE = re.compile(r"\b(no|not|never|without|don't|doesn't|avoid|nothing|none)\b")
_CAMERA = re.compile(
    r"\b(camera|pans?|panning|zooms?|zooming|tilts?|tilting|dolly|push(?:es)?[- ]in|tracking shot|orbits?"
    r"|crane shot)\b"
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def words_in(text: str) -> list[str]:
    return re.findall(r"[\w'-]+", fold(text))


def camera_sentences(prompt: str) -> int:
    """How many sentences of the prompt move the camera."""
    return sum(1 for sentence in _SENTENCE.split(prompt) if _CAMERA.search(fold(sentence)))


def _copied(prompt: str, script: str) -> bool:
    said = words_in(script)
    runs = {tuple(said[i : i + VERBATIM_RUN]) for i in range(len(said) - VERBATIM_RUN + 1)}
    wrote = words_in(prompt)
    return any(tuple(wrote[i : i + VERBATIM_RUN]) in runs for i in range(len(wrote) - VERBATIM_RUN + 1))


def problems(prompt: str, script: str, image: bool = False) -> tuple[str, ...]:
    """The codes of the module docstring that apply to `prompt` (empty when it passes)."""
    low, high = IMAGE_WORDS if image else TEXT_WORDS
    count, folded = len(words_in(prompt)), fold(prompt)
    found = [
        ("quotes", bool(_QUOTES.search(prompt))),
        ("on_screen_text", bool(_ON_SCREEN.search(folded))),
        ("verbatim", _copied(prompt, script)),
        ("negative", bool(_NEGATIVE.search(folded))),
        (f"too_short ({count} words)", count < low),
        (f"too_long ({count} words)", count > high),
        (f"camera_moves ({camera_sentences(prompt)})", camera_sentences(prompt) != 1),
    ]
    return tuple(code for code, hit in found if hit)
