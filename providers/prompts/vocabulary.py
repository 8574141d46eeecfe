"""The vocabulary the prompt composer matches and writes: occupations (data), styles, camera moves.

`occupations.json` (in this package, loaded once and validated) holds the occupations grouped as
ISCO-08 groups them — major group > sub-major group > occupation with its ISCO-08 code — each with
the titles and keywords that identify it (English, Spanish, French, German) and the settings,
actions, props and milestones a video of that person may show; plus the seniority words and the
neutral wording used when no occupation fits. Matching is on folded text (`fold`: NFKC, casefolded,
accents removed), whole words, tolerant of plurals and German feminine forms.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field

DATA = Path(__file__).with_name("occupations.json")
LANGUAGES = ("en", "es", "fr", "de")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Occupation(_Strict):
    """One occupation: what identifies it and what a video of it may show."""

    id: str
    isco: str = Field(pattern=r"^\d{4}$")
    noun: str  # the subject in general terms: "nurse", "electrician"
    titles: dict[str, tuple[str, ...]]
    keywords: tuple[str, ...]
    settings: tuple[str, ...] = Field(min_length=1)
    actions: tuple[str, ...] = Field(min_length=3)  # one per style, in `STYLES` order
    props: tuple[str, ...]
    milestones: tuple[str, ...] = Field(min_length=1)  # achievements as visuals, whole clauses
    major: str = ""  # ISCO-08 major group code, filled in by the loader
    sub_major: str = ""


class _SubMajor(_Strict):
    code: str = Field(pattern=r"^\d{2}$")
    name: str
    occupations: tuple[Occupation, ...]


class _Major(_Strict):
    major: str = Field(pattern=r"^\d$")
    name: str
    sub_major: tuple[_SubMajor, ...]


class Neutral(_Strict):
    noun: str
    settings: tuple[str, ...]
    actions: tuple[str, ...]
    props: tuple[str, ...]


class _Vocabulary(_Strict):
    about: str
    seniority: dict[str, tuple[str, ...]]
    neutral: Neutral
    groups: tuple[_Major, ...]


def fold(text: str) -> str:
    """Text as it is matched: NFKC, casefolded, accents removed, whitespace collapsed."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.replace("ß", "ss").replace("’", "'").split())


@dataclass(frozen=True)
class Vocabulary:
    occupations: MappingProxyType[str, Occupation]  # id -> occupation, in ISCO-08 order
    groups: MappingProxyType[str, str]  # ISCO-08 major and sub-major code -> name
    seniority: MappingProxyType[str, tuple[str, ...]]  # level -> folded words
    neutral: Neutral


def load(path: Path = DATA) -> Vocabulary:
    """Read and validate the vocabulary; every title must name exactly one occupation."""
    raw = _Vocabulary.model_validate(json.loads(path.read_text(encoding="utf-8")))
    occupations: dict[str, Occupation] = {}
    groups: dict[str, str] = {}
    owner: dict[str, str] = {}
    for major in raw.groups:
        groups[major.major] = major.name
        for sub in major.sub_major:
            groups[sub.code] = sub.name
            for occ in sub.occupations:
                if (
                    not occ.isco.startswith(sub.code)
                    or not sub.code.startswith(major.major)
                    or occ.id in occupations
                ):
                    raise ValueError(f"{path.name}: {occ.id} is misplaced or repeated")
                for title in {fold(t) for lang in LANGUAGES for t in occ.titles.get(lang, ())}:
                    if owner.setdefault(title, occ.id) != occ.id:
                        raise ValueError(f"{path.name}: title {title!r} names {owner[title]} and {occ.id}")
                occupations[occ.id] = occ.model_copy(update={"major": major.major, "sub_major": sub.code})
    seniority = {level: tuple(fold(w) for w in words) for level, words in raw.seniority.items()}
    return Vocabulary(
        MappingProxyType(occupations), MappingProxyType(groups), MappingProxyType(seniority), raw.neutral
    )


VOCABULARY = load()


@dataclass(frozen=True)
class StyleTemplate:
    """A style: its look (one sentence of descriptors), its calm scene motion, its default camera."""

    modifiers: tuple[str, ...]
    scene: str  # scene motion when no achievement calls for a milestone
    gesture: str  # the subject's motion when an image fixes the look (image-to-video)
    motion: str  # the camera motion used when the caller names none


# fmt: off
STYLES = MappingProxyType({
    "professional": StyleTemplate(
        ("clean, polished look", "soft key light", "neutral palette", "sharp focus"),
        "Soft daylight drifts slowly across the room",
        "looks into the lens and speaks calmly with small, measured gestures", "zoom"),
    "friendly": StyleTemplate(
        ("warm, cinematic look", "golden-hour tones", "shallow depth of field"),
        "Warm light glows as people pass gently in the background",
        "smiles warmly and nods while speaking in a relaxed way", "pan"),
    "energetic": StyleTemplate(
        ("dynamic, vibrant look", "bold saturated colour", "high contrast"),
        "The space around them hums with quick, purposeful activity",
        "speaks with lively hand gestures and a bright smile", "tilt"),
})
CAMERA_MOTIONS = MappingProxyType({  # motion -> the move for low (< 1/3), medium and high (>= 2/3) intensity
    "pan": ("slowly pans across the scene", "pans smoothly across the scene",
            "sweeps across the scene in a fast pan"),
    "zoom": ("slowly pushes in", "pushes in steadily", "zooms in quickly and dramatically"),
    "tilt": ("tilts up slowly", "tilts up smoothly", "tilts up in a bold, sweeping move"),
    "static": ("holds a locked-off frame", "holds a steady, static frame",
               "holds still as the scene moves briskly"),
})
# fmt: on
