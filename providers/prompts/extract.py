"""What a CV script says: role, seniority, industry, skills, achievements, settings (pure).

Each `Finding` keeps the words that led to it; the tables are in `vocabulary`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from providers.prompts.fit import fit_words
from providers.prompts.vocabulary import ACHIEVEMENT_VISUALS, INDUSTRIES, ROLES, SENIORITY, SETTINGS, SKILLS

MAX_SKILLS, MAX_ACHIEVEMENTS, MAX_SETTINGS = 8, 3, 3


@dataclass(frozen=True)
class Finding:
    """One extracted element and the words in the script that led to it."""

    value: str
    matched: tuple[str, ...]


@dataclass(frozen=True)
class Elements:
    """Everything `extract_elements` found in a script."""

    role: Finding | None
    seniority: Finding | None
    industry: Finding | None
    skills: tuple[Finding, ...]
    achievements: tuple[Finding, ...]
    settings: tuple[Finding, ...]
    word_count: int


class Matcher:
    """Finds the keywords of a table of groups in folded text, left to right, longest first at a spot."""

    def __init__(self, groups: dict[str, str]) -> None:
        self.owner: dict[str, tuple[str, str]] = {}  # folded keyword -> (group, spelling in the table)
        for group, spec in groups.items():
            for keyword in re.split(r"[|/]", spec):
                self.owner.setdefault(keyword.casefold(), (group, keyword))
        alternatives = sorted(self.owner, key=lambda k: (-len(k), k))
        self.regex = re.compile(rf"(?<!\w)({'|'.join(map(re.escape, alternatives))})(?:e?s)?(?!\w)")

    def find(self, folded: str) -> list[tuple[str, str]]:
        """(group, keyword as spelled in the table) for every hit, in order."""
        return [self.owner[m.group(1)] for m in self.regex.finditer(folded)]


_ROLES = Matcher(ROLES)
_SENIORITY = Matcher(SENIORITY)
_INDUSTRIES = Matcher(INDUSTRIES)
_SETTINGS = Matcher(SETTINGS)
_SKILLS = Matcher({entry.split("/")[0]: entry for entry in SKILLS.split("|")})
VERBS = Matcher(ACHIEVEMENT_VISUALS)
_YEARS = re.compile(r"(?<![\d.,])(\d{1,2})\+?\s*(?:years?|yrs)\b")
_QUANTITY = re.compile(
    r"(?<![\w.,])(?!(?:19|20)\d\d(?!\d|%|[.,]\d))[$€£¥]?\d[\d.,]*(?:%|\s?(?:percent|k|m|bn|million|billion|x)\b)?"
    r"(?!\d)(?!\+?\s*(?:years?|yrs|months?)\b)",
    re.IGNORECASE,
)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?…。！？])\s+")


def sanitize(script: str) -> str:
    """Lone surrogates → U+FFFD, control characters → spaces (newlines kept), NFC."""
    text = script.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(" " if unicodedata.category(c) == "Cc" and c not in "\n\t" else c for c in text)
    return unicodedata.normalize("NFC", text)


def fold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def quote(sentence: str) -> str:
    return " ".join(sentence.split()[:12]).rstrip(".!?…。！？")


# --- Extraction


def extract_elements(script: str) -> Elements:
    """Role, seniority, industry, skills, achievements and settings, each with the words behind it."""
    text = sanitize(script)
    folded = fold(text)
    role = _role(folded)
    return Elements(
        role=role[0] if role else None,
        seniority=_seniority(folded),
        industry=_industry(folded, role),
        skills=_unique(_SKILLS.find(folded), MAX_SKILLS),
        achievements=tuple(_achievements(text)),
        settings=_unique(_SETTINGS.find(folded), MAX_SETTINGS),
        word_count=len(text.split()),
    )


def _role(folded: str) -> tuple[Finding, str] | None:
    hits = _ROLES.find(folded)
    if not hits:
        return None
    industry, phrase = hits[0]
    return Finding(phrase, (phrase.casefold(),)), industry


def _seniority(folded: str) -> Finding | None:
    hits = _SENIORITY.find(folded)
    if hits:
        return Finding(hits[0][0], (hits[0][1],))
    years = [int(y) for y in _YEARS.findall(folded)]
    if not years:
        return None
    level = "junior" if max(years) < 2 else "mid" if max(years) < 6 else "senior"
    return Finding(level, (f"{max(years)} years",))


def _industry(folded: str, role: tuple[Finding, str] | None) -> Finding | None:
    matched: dict[str, list[str]] = {name: [] for name in INDUSTRIES}
    if role and role[1] in matched:
        matched[role[1]].append(f"role: {role[0].value}")
    for industry, keyword in _INDUSTRIES.find(folded):
        matched[industry].append(keyword)
    best = max(matched, key=lambda name: len(matched[name]))  # the first of equals wins
    words = tuple(dict.fromkeys(matched[best]))[:8]
    return Finding(best, words) if words else None


def _unique(hits: list[tuple[str, str]], limit: int) -> tuple[Finding, ...]:
    found: dict[str, str] = {}
    for group, keyword in hits:
        found.setdefault(group, keyword)
    return tuple(Finding(group, (keyword,)) for group, keyword in list(found.items())[:limit])


def _achievements(text: str) -> list[Finding]:
    found = []
    for part in (p for line in text.split("\n") for p in _SENTENCE_SPLIT.split(line)):
        sentence = " ".join(part.strip(" -*•·\t").split())
        verbs = [verb for _, verb in VERBS.find(fold(sentence))]
        figures = [q.rstrip(".,") for q in _QUANTITY.findall(sentence) if len(q) <= 20]
        if verbs or figures:
            cues = tuple(dict.fromkeys(verbs + figures))[:6]
            found.append(Finding(fit_words(sentence, 300), cues))
    return found[:MAX_ACHIEVEMENTS]


def is_quantified(achievement: Finding) -> bool:
    return any(ch.isdigit() for cue in achievement.matched for ch in cue)
