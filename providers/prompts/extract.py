"""What a CV script says about the person: occupation (with a confidence), seniority, achievements (pure).

Occupation: every title and keyword of `occupations.json` found in the folded script counts for its
occupation — a title 4 points (the earliest title 2 more), a distinct keyword 1 (at most 6). The
best occupation wins; its confidence is how far it leads the runner-up::

    best has a title    0.5 + 0.45 x (best - second) / best         (0.5 on a tie, 0.95 alone)
    keywords only       min(0.55, 0.12 x keywords) x (best - second) / best
    below MIN_CONFIDENCE  no occupation: the prompt takes the neutral setting

A title the person left ("former nurse", "ex-chef", "accountant turned teacher") counts 1 point.
A name introduced as "I'm Sam Baker" / "je m'appelle ..." / "ich bin Anna Koch" is not read as a
title. Seniority: a seniority word inside the title or in the three words before it ("head chef",
"senior software engineer"), else a "head of ..." anywhere, else the most years of experience named
("15 years", "fifteen
years", "10 años", "8 ans", "5 Jahre": < 2 junior, < 6 mid, else senior), else mid. Achievements
are cues only (action verbs, figures) — no sentence of the CV is kept for the prompt.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from providers.prompts.vocabulary import LANGUAGES, VOCABULARY, fold

MIN_CONFIDENCE = 0.35
TITLE_POINTS, FIRST_TITLE_POINTS, MAX_KEYWORDS = 4, 2, 6


@dataclass(frozen=True)
class Finding:
    """One extracted element and the words in the script that led to it."""

    value: str
    matched: tuple[str, ...]


@dataclass(frozen=True)
class Elements:
    """Everything `extract_elements` found in a script."""

    occupation: Finding | None  # value: the occupation id in `occupations.json`
    confidence: float  # 0-1, how sure the match is (0 without an occupation)
    seniority: Finding | None  # junior, mid, senior or lead
    achievements: tuple[str, ...]  # cues (verbs, figures) of sentences that report an achievement
    word_count: int


def _alternation(words: list[str]) -> str:
    return "|".join(map(re.escape, sorted(set(words), key=lambda w: (-len(w), w))))


_SUFFIX = r"(?:e?s|in|innen)?"  # plurals and feminine forms: nurses, Lehrerin, Lehrerinnen
_SUFFIXES = ("es", "s", "in", "innen", "")  # at most one of them can end where a word ends


def _word_regex(words: list[str]) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-])({_alternation(words)}){_SUFFIX}(?![\w-])")


class Hit(NamedTuple):
    """A word list's entry found in a text: text[start:end] is `word` and its suffix."""

    start: int
    end: int
    word: str


class WordFinder:
    """`_word_regex(words).finditer(text)`, found by looking words up in a set.

    Compiling a regex of the 1,800 titles took ~35 ms (and the keywords' ~8 ms) at every cold start of
    generate_video; a set costs nothing to build. At each position not preceded by a word character
    or hyphen, the longest entry there wins that, with a suffix or none, is followed by no word
    character or hyphen; the search goes on after it. The tests hold it to the regex."""

    def __init__(self, words: Iterable[str]) -> None:
        self.words = frozenset(words)
        lengths: dict[str, set[int]] = {}
        for word in self.words:
            lengths.setdefault(word[0], set()).add(len(word))
        self.lengths = {first: sorted(ls, reverse=True) for first, ls in lengths.items()}

    def finditer(self, text: str) -> Iterator[Hit]:
        at, size = 0, len(text)
        while at < size:
            hit = None if at and _joins(text[at - 1]) else self._at(text, at)
            if hit is None:
                at += 1
                continue
            yield hit
            at = hit.end

    def _at(self, text: str, at: int) -> Hit | None:
        for length in self.lengths.get(text[at], ()):
            word = text[at : at + length]
            if word not in self.words:
                continue
            for suffix in _SUFFIXES:
                end = at + length + len(suffix)
                if text.startswith(suffix, at + length) and (end == len(text) or not _joins(text[end])):
                    return Hit(at, end, word)
        return None


def _joins(char: str) -> bool:
    """Part of a word for the finder: a word character or a hyphen, as the regex's `[\\w-]`."""
    return char.isalnum() or char in "_-"


_TITLE_OWNER = {
    fold(t): occ.id
    for occ in VOCABULARY.occupations.values()
    for lang in LANGUAGES
    for t in occ.titles.get(lang, ())
}
_KEYWORD_OWNERS: dict[str, set[str]] = {}
for _occ in VOCABULARY.occupations.values():
    for _kw in _occ.keywords:
        _KEYWORD_OWNERS.setdefault(fold(_kw), set()).add(_occ.id)
_TITLES = WordFinder(_TITLE_OWNER)
_KEYWORDS = WordFinder(_KEYWORD_OWNERS)
_LEVEL_OF = {word: level for level, words in VOCABULARY.seniority.items() for word in words}
_LEVELS = _word_regex(list(_LEVEL_OF))

_FORMER = {
    "former",
    "ex",
    "ex-",
    "previously",
    "retired",
    "antiguo",
    "antigua",
    "ancien",
    "ancienne",
    "ehemaliger",
    "ehemalige",
}
_HEAD_OF = re.compile(
    r"\b(head of|jefe de|jefa de|responsable de|directeur de|directrice de|leiter der|leiterin der)\b"
)
_NUMBER_WORDS = {
    **dict.fromkeys(("one", "un", "uno", "una", "une", "ein", "eine"), 1),
    **dict.fromkeys(("two", "dos", "deux", "zwei"), 2),
    **dict.fromkeys(("three", "tres", "trois", "drei"), 3),
    **dict.fromkeys(("four", "cuatro", "quatre", "vier"), 4),
    **dict.fromkeys(("five", "cinco", "cinq", "funf"), 5),
    **dict.fromkeys(("six", "seis", "sechs"), 6),
    **dict.fromkeys(("seven", "siete", "sept", "sieben"), 7),
    **dict.fromkeys(("eight", "ocho", "huit", "acht"), 8),
    **dict.fromkeys(("nine", "nueve", "neuf", "neun"), 9),
    **dict.fromkeys(("ten", "diez", "dix", "zehn"), 10),
    "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "doce": 12, "douze": 12, "zwolf": 12,
    "quince": 15, "quinze": 15, "funfzehn": 15,
    **dict.fromkeys(("twenty", "veinte", "vingt", "zwanzig"), 20),
    "twenty-five": 25, "thirty": 30, "treinta": 30, "trente": 30, "dreissig": 30,
}  # fmt: skip
_YEARS = re.compile(
    rf"(?<![\w.,])(\d{{1,2}}|{_alternation(list(_NUMBER_WORDS))})\+?\s*(?:years?|yrs|anos|ans|annees|jahre|jahren)\b"
)
_INTRO = re.compile(
    r"(?i:\b(?:I'm|I am|my name is|me llamo|mi nombre es|je m'appelle|ich bin|ich heisse|ich heiße)\s+)"
    r"((?:(?:Dr|Mr|Ms|Mrs|Mx)\.?\s+)?[A-ZÀ-ÖØ-Þ][\w'’-]*(?:\s+[A-ZÀ-ÖØ-Þ][\w'’-]*){0,2})"
)
_VERBS = re.compile(
    r"\b(led|lead|managed|mentored|coached|trained|supervised|launched|shipped|opened|founded|built|"
    r"created|designed|developed|grew|increased|doubled|tripled|reduced|cut|saved|improved|won|awarded|"
    r"promoted|delivered|completed|published|dirigi|lidere|gestione|forme|cree|aumente|reduje|"
    r"dirige|fonde|ameliore|geleitet|gegrundet|aufgebaut|gesteigert|ausgebildet)\b"
)
_QUANTITY = re.compile(
    r"(?<![\w.,])(?!(?:19|20)\d\d\b)\d[\d.,]*\s?(?:%|percent|k|m|bn|million|billion|x)?(?![\w])"
)
_NOT_ACHIEVEMENT = re.compile(r"^\s*\+?\s*(?:years?|yrs|anos|ans|annees|jahren?|months?|meses|mois|monate)\b")
_SENTENCES = re.compile(r"(?<=[.!?…。！？;])\s+|\n+")


def sanitize(script: str) -> str:
    """Lone surrogates -> U+FFFD, control characters -> spaces (newlines kept), NFC."""
    text = script.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(" " if unicodedata.category(c) == "Cc" and c not in "\n\t" else c for c in text)
    return unicodedata.normalize("NFC", text)


def _without_names(text: str) -> str:
    """The script with a name after "I'm" / "ich bin" / ... blanked, unless the words are a title."""

    def blank(match: re.Match[str]) -> str:
        words = fold(match[1])
        keep = words in _TITLE_OWNER or words.split()[0] in _LEVEL_OF
        return match[0] if keep else match[0][: match.start(1) - match.start(0)] + " "

    return _INTRO.sub(blank, text)


def extract_elements(script: str) -> Elements:
    """Occupation and its confidence, seniority and achievement cues, each with the words behind it."""
    text = sanitize(script)
    folded = fold(_without_names(text))
    occupation, confidence, first_title = _occupation(folded)
    return Elements(
        occupation=occupation,
        confidence=confidence,
        seniority=_seniority(folded, first_title),
        achievements=_achievements(text),
        word_count=len(text.split()),
    )


def _occupation(folded: str) -> tuple[Finding | None, float, Hit | None]:
    titles: dict[str, list[str]] = {}
    first: dict[str, Hit] = {}
    past: dict[str, int] = {}
    for hit in _TITLES.finditer(folded):
        owner = _TITLE_OWNER[hit.word]
        titles.setdefault(owner, []).append(hit.word)
        if _is_past(folded, hit):
            past[owner] = past.get(owner, 0) + 1
        else:
            first.setdefault(owner, hit)
    keywords: dict[str, set[str]] = {}
    for hit in _KEYWORDS.finditer(folded):
        for owner in _KEYWORD_OWNERS[hit.word]:
            keywords.setdefault(owner, set()).add(hit.word)
    earliest = min(first, key=lambda o: first[o].start) if first else None
    points = {
        occ: TITLE_POINTS * min(3, len(titles.get(occ, ())) - past.get(occ, 0))
        + past.get(occ, 0)
        + FIRST_TITLE_POINTS * (occ == earliest)
        + min(MAX_KEYWORDS, len(keywords.get(occ, ())))
        for occ in set(titles) | set(keywords)
    }
    if not points:
        return None, 0.0, None
    ranked = sorted(points, key=lambda o: (-points[o], first[o].start if o in first else len(folded), o))
    best = ranked[0]
    second = points[ranked[1]] if len(ranked) > 1 else 0
    lead = (points[best] - second) / points[best]
    by_keywords = min(0.55, 0.12 * len(keywords.get(best, ()))) * lead
    confidence = 0.5 + 0.45 * lead if best in titles else by_keywords
    if confidence < MIN_CONFIDENCE:
        return None, round(confidence, 2), None
    matched = tuple(dict.fromkeys(titles.get(best, []))) + tuple(sorted(keywords.get(best, ())))
    return Finding(best, matched[:8]), round(confidence, 2), first.get(best)


def _is_past(folded: str, title: Hit) -> bool:
    """A title the person left: "former nurse", "ex-chef", "accountant turned teacher"."""
    before = folded[max(0, title.start - 24) : title.start].split()[-2:]
    after = folded[title.end : title.end + 12].split()[:1]
    return bool(set(before) & _FORMER) or after == ["turned"]


def _seniority(folded: str, title: Hit | None) -> Finding | None:
    if title is not None:
        before = folded[: title.start].split()[-3:]
        window = " ".join([*before, folded[title.start : title.end]])
        levels = list(_LEVELS.finditer(window))
        if levels:
            word = levels[-1][1]
            return Finding(_LEVEL_OF[word], (word,))
    if head := _HEAD_OF.search(folded):
        return Finding("lead", (head[1],))
    years = [int(n) if n.isdigit() else _NUMBER_WORDS[n] for n in _YEARS.findall(folded)]
    if not years:
        return None
    most = max(years)
    level = "junior" if most < 2 else "mid" if most < 6 else "senior"
    return Finding(level, (f"{most} years",))


def _achievements(text: str) -> tuple[str, ...]:
    cues: list[str] = []
    for sentence in _SENTENCES.split(text):
        folded = fold(sentence)
        verbs = _VERBS.findall(folded)
        figures = [
            m[0].strip() for m in _QUANTITY.finditer(folded) if not _NOT_ACHIEVEMENT.match(folded[m.end() :])
        ]
        cues += verbs + figures
    return tuple(dict.fromkeys(cues))[:6]
