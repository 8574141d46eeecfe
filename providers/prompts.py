"""CV script → provider prompts: pure, deterministic and explainable (no network, clock or randomness).

`build_prompt` returns a `PromptResult`: the RunwayML `promptText` (≤ 1000 UTF-16 code units), the
HeyGen spoken script (≤ 5000 characters), what was extracted and why, and a quality score with the
rubric items behind it. Any Unicode is accepted: lone surrogates become U+FFFD, control characters
become spaces, text is NFC-normalised; cuts fall between words, never inside a surrogate pair or emoji.

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
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType

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

RUNWAY_PROMPT_LIMIT = 1000
HEYGEN_SCRIPT_LIMIT = 5000
MAX_SKILLS, MAX_ACHIEVEMENTS, MAX_SETTINGS = 8, 3, 3

# Keyword tables: "|" separates keywords, "/" a skill's aliases. Matching is case-insensitive, on whole
# words, tolerant of plurals; at one spot the longest keyword wins.
# fmt: off
ROLES = {  # industry -> role phrases; "general" roles name no industry
    "tech": "software engineer|software developer|developer|programmer|web developer|data scientist|"
        "data analyst|data engineer|machine learning engineer|devops engineer|site reliability engineer|"
        "product manager|QA engineer|security engineer|systems administrator",
    "healthcare": "nurse|registered nurse|nurse practitioner|midwife|doctor|physician|surgeon|pharmacist|"
        "general practitioner|physiotherapist|paramedic|therapist|dentist|healthcare assistant",
    "education": "teacher|lecturer|professor|tutor|teaching assistant|educator|headteacher",
    "design": "designer|UX designer|UI designer|product designer|graphic designer|art director|illustrator|"
        "animator|photographer|creative director",
    "marketing": "marketing manager|marketer|brand manager|content strategist|copywriter|SEO specialist|"
        "social media manager|marketing executive|communications manager",
    "sales": "sales executive|account executive|sales manager|sales representative|account manager|"
        "business development manager|sales director|sales associate",
    "finance": "accountant|financial analyst|auditor|banker|investment analyst|financial controller|"
        "actuary|economist|bookkeeper|trader|finance manager",
    "engineering": "engineer|mechanical engineer|civil engineer|electrical engineer|structural engineer|"
        "chemical engineer|technician",
    "legal": "lawyer|solicitor|attorney|paralegal|barrister|legal counsel|judge|compliance officer",
    "hospitality": "chef|sous chef|hotel manager|restaurant manager|sommelier|barista|concierge|bartender",
    "general": "project manager|program manager|programme manager|consultant|researcher|scientist|analyst",
}
SENIORITY = {
    "junior": "junior|graduate|intern|internship|trainee|apprentice|entry-level|entry level",
    "mid": "mid-level|mid level|intermediate",
    "senior": "senior|experienced|seasoned",
    "lead": "lead|team lead|tech lead|principal|head of|manager|supervisor",
    "executive": "director|vice president|vp|chief|ceo|cto|cfo|coo|cmo|founder|co-founder|c-suite",
}
INDUSTRIES = {  # industry -> keywords; its usual setting is in USUAL_SETTING
    "tech": "software|saas|cloud|startup|api|devops|cybersecurity|machine learning|ai|web|backend|frontend|"
        "database|mobile app|open source",
    "finance": "finance|financial|bank|banking|investment|accounting|audit|fintech|trading|tax|insurance",
    "healthcare": "healthcare|health care|hospital|patient|clinical|clinic|medical|nursing|pharmacy|"
        "surgery|ward|medicine",
    "education": "education|school|teaching|student|pupil|classroom|curriculum|university|college|lesson|"
        "academic|tutoring",
    "design": "design|creative|ux|ui|branding|typography|illustration|figma|adobe|visual identity|"
        "photography|animation",
    "marketing": "marketing|campaign|brand|seo|social media|content strategy|advertising|public relations|"
        "audience|engagement",
    "sales": "sales|quota|pipeline|revenue|client|b2b|deal|crm|salesforce|business development|negotiation|"
        "prospecting",
    "engineering": "engineering|mechanical|civil|electrical|structural|manufacturing|cad|autocad|"
        "solidworks|construction|infrastructure|aerospace|automotive",
    "legal": "legal|law|litigation|contract|compliance|court|regulatory|counsel",
    "hospitality": "hospitality|hotel|restaurant|guest|kitchen|catering|tourism|front desk",
}
USUAL_SETTING = {"tech": "office", "finance": "office", "healthcare": "hospital", "education": "classroom",
                 "design": "studio", "marketing": "studio", "sales": "office", "engineering": "factory",
                 "legal": "courtroom", "hospitality": "restaurant"}
SETTINGS = {  # setting -> keywords; how it looks is in SETTING_LOOKS
    "office": "office|boardroom|headquarters|meeting room|coworking", "studio": "studio|atelier",
    "lab": "lab|laboratory|research facility|clean room",
    "outdoors": "outdoors|outdoor|fieldwork|in the field|construction site|on site",
    "hospital": "hospital|clinic|ward|icu|emergency department|a&e|operating theatre|care home",
    "classroom": "classroom|school|lecture hall|campus|university|college",
    "restaurant": "restaurant|kitchen|hotel|café|cafe|lobby", "courtroom": "court|courtroom|law firm",
    "factory": "factory|workshop|warehouse|production line|manufacturing plant",
    "stage": "stage|conference|keynote|auditorium",
}
SETTING_LOOKS = {
    "office": "a bright modern office with glass walls", "lab": "a clean, well-lit laboratory",
    "studio": "a creative studio with mood boards and large screens", "outdoors": "an open site in daylight",
    "hospital": "a calm, modern hospital ward", "classroom": "a bright, busy classroom",
    "restaurant": "a warmly lit restaurant and hotel lobby", "courtroom": "a stately wood-panelled courtroom",
    "factory": "a modern factory floor with machinery", "stage": "a conference stage under soft spotlights",
}
SKILLS = (
    "Python|Java|JavaScript|TypeScript|Rust|C++|C#|SQL|React|Node.js|AWS|Azure|GCP|Docker|Kubernetes|"
    "Terraform|machine learning|data analysis|Excel|Tableau|Power BI|Figma|Photoshop|Illustrator|InDesign|"
    "UX research|prototyping|typography|branding|SEO|Google Analytics|copywriting|social media|CRM|"
    "Salesforce|HubSpot|negotiation|prospecting|account management|patient care|triage|wound care|"
    "medication administration|phlebotomy|lesson planning|curriculum design|classroom management|"
    "safeguarding|financial modelling/financial modeling|budgeting|forecasting|auditing|AutoCAD|"
    "SolidWorks|project management|Agile|Scrum|leadership|mentoring|public speaking|"
    "stakeholder management|customer service|contract law|litigation|compliance|event planning"
)
ACHIEVEMENT_VISUALS = {  # visual -> the action verbs that call for it
    "a team gathered around a confident leader": "led|managed|mentored|coached|supervised|headed",
    "a product launch moment with an engaged audience": "launched|shipped|released|introduced|rolled out",
    "rising growth charts on a large screen": "grew|increased|doubled|tripled|boosted|raised|exceeded|won",
    "clean dashboards showing efficiency gains":
        "reduced|cut|saved|lowered|streamlined|improved|optimised|optimized|automated",
    "a workspace where something new takes shape": "built|created|designed|developed|founded|established",
    "a moment of recognition and applause": "awarded|recognised|recognized|promoted|certified",
}
FIGURES_VISUAL = "headline figures glowing on a display"
# fmt: on


@dataclass(frozen=True)
class StyleTemplate:
    modifiers: tuple[str, ...]
    motion: str  # the camera motion used when the caller names none


# fmt: off
STYLES = MappingProxyType({
    "professional": StyleTemplate(("clean, polished corporate look", "soft key lighting", "neutral palette",
                                   "sharp focus", "subtle movement"), "zoom"),
    "friendly": StyleTemplate(("warm, cinematic look", "golden-hour tones", "shallow depth of field",
                               "approachable mood", "smooth camera"), "pan"),
    "energetic": StyleTemplate(("dynamic, vibrant look", "bold saturated colour", "high contrast",
                                "creative angles", "upbeat pacing"), "tilt"),
})
CAMERA_MOTIONS = MappingProxyType({  # motion -> words for low (< 1/3), medium and high (>= 2/3) intensity
    "pan": ("slow, subtle pan", "smooth, steady pan", "sweeping pan"),
    "zoom": ("slow, gentle push-in", "steady zoom in", "fast, dramatic zoom"),
    "tilt": ("slight, slow tilt", "smooth tilt up", "bold, sweeping tilt"),
    "static": ("locked-off static shot", "static camera, steady framing", "static, lively subject motion"),
})
# fmt: on


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


# --- Matching


class _Matcher:
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


_ROLES = _Matcher(ROLES)
_SENIORITY = _Matcher(SENIORITY)
_INDUSTRIES = _Matcher(INDUSTRIES)
_SETTINGS = _Matcher(SETTINGS)
_SKILLS = _Matcher({entry.split("/")[0]: entry for entry in SKILLS.split("|")})
_VERBS = _Matcher(ACHIEVEMENT_VISUALS)
_YEARS = re.compile(r"(?<![\d.,])(\d{1,2})\+?\s*(?:years?|yrs)\b")
_QUANTITY = re.compile(
    r"(?<![\w.,])(?!(?:19|20)\d\d(?!\d|%|[.,]\d))[$€£¥]?\d[\d.,]*(?:%|\s?(?:percent|k|m|bn|million|billion|x)\b)?"
    r"(?!\d)(?!\+?\s*(?:years?|yrs|months?)\b)",
    re.IGNORECASE,
)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?…。！？])\s+")
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*(?=\s|$)|[。！？]")
_JOINERS = re.compile(r"[\u200d\u20e3\ufe0e\ufe0f\U0001f3fb-\U0001f3ff\U000e0020-\U000e007f]")


def utf16_len(s: str) -> int:
    """Length in UTF-16 code units, the unit RunwayML counts `promptText` in."""
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


def _sanitize(script: str) -> str:
    """Lone surrogates → U+FFFD, control characters → spaces (newlines kept), NFC."""
    text = script.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(" " if unicodedata.category(c) == "Cc" and c not in "\n\t" else c for c in text)
    return unicodedata.normalize("NFC", text)


def _fold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _quote(sentence: str) -> str:
    return " ".join(sentence.split()[:12]).rstrip(".!?…。！？")


def _joins(ch: str) -> bool:
    """True for characters that attach to the one before (marks, ZWJ, variation selectors, tags)."""
    return unicodedata.category(ch) in ("Mn", "Mc", "Me") or bool(_JOINERS.match(ch))


# --- Extraction


def extract_elements(script: str) -> Elements:
    """Role, seniority, industry, skills, achievements and settings, each with the words behind it."""
    text = _sanitize(script)
    folded = _fold(text)
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
        verbs = [verb for _, verb in _VERBS.find(_fold(sentence))]
        figures = [q.rstrip(".,") for q in _QUANTITY.findall(sentence) if len(q) <= 20]
        if verbs or figures:
            cues = tuple(dict.fromkeys(verbs + figures))[:6]
            found.append(Finding(_fit_words(sentence, 300), cues))
    return found[:MAX_ACHIEVEMENTS]


def _is_quantified(achievement: Finding) -> bool:
    return any(ch.isdigit() for cue in achievement.matched for ch in cue)


# --- Prompt fragments, most important first


def _fragments(el: Elements, style: str, motion: str, intensity: float) -> list[tuple[str, str]]:
    return [
        ("subject", _subject(el)),
        ("setting", f"Setting: {_setting_look(el)}"),
        ("style", ", ".join(STYLES[style].modifiers).capitalize()),
        ("camera", f"Camera: {motion_words(motion, intensity)}"),
        ("skills", f"Details hinting at {', '.join(s.value for s in el.skills[:5])}" if el.skills else ""),
        ("achievements", _achievement_visuals(el)),
        ("highlights", "; ".join(f'"{q}"' for a in el.achievements[:2] if (q := _quote(a.value)))),
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
    visuals = [_VERBS.owner[verb][0] for a in el.achievements for verb in a.matched if verb in _VERBS.owner]
    if any(_is_quantified(a) for a in el.achievements):
        visuals.append(FIGURES_VISUAL)
    visuals = list(dict.fromkeys(visuals))[:3]
    return f"Moments of achievement: {', '.join(visuals)}" if visuals else ""


def motion_words(motion: str, intensity: float) -> str:
    """The camera move in words: intensity below 1/3 is gentle, from 2/3 up it is bold."""
    return CAMERA_MOTIONS[motion][min(2, int(intensity * 3))]


# --- Fitting the limits


def _join(fragments: list[str]) -> str:
    return ". ".join(fragments) + "." if fragments else ""


def _fit_prompt(fragments: list[tuple[str, str]], limit: int) -> tuple[str, list[str]]:
    """Drop the least important fragments, then shorten the last one left at a word boundary."""
    kept = [(name, text) for name, text in fragments if text]
    trims = []
    while len(kept) > 1 and utf16_len(_join([t for _, t in kept])) > limit:
        trims.append(f"prompt: dropped {kept.pop()[0]}")
    if kept and utf16_len(_join([kept[0][1]])) > limit:  # one fragment left: shorten it
        name, text = kept.pop()
        kept = [(name, short)] if (short := _fit_words(text, limit - 1, utf16_len)) else []
        trims.append(f"prompt: shortened {name}")
    return _join([t for _, t in kept]), trims


def _fit_words(text: str, limit: int, measure=len) -> str:
    """The longest run of whole words from the start of `text` that measures at most `limit`."""
    if measure(text) <= limit:
        return text
    words, size = [], -1
    for word in text.split():
        size += measure(word) + 1
        if size > limit:
            break
        words.append(word)
    return " ".join(words)


def _fit_script(text: str, limit: int) -> str:
    """Cut at the last sentence end if that keeps half the limit, else at a word, else at a grapheme."""
    if len(text) <= limit:
        return text
    head = text[: limit + 1]
    ends = [m.end() for m in _SENTENCE_END.finditer(head) if m.end() <= limit]
    if ends and ends[-1] >= limit // 2:
        return head[: ends[-1]]
    space = head.rfind(" ")
    return head[:space].rstrip() if space > 0 else head[: _grapheme_cut(text, limit)]


def _grapheme_cut(text: str, n: int) -> int:
    """Move a cut position back so it never separates an emoji, flag or combining mark from its base."""
    while n > 0 and (_joins(text[n]) or text[n - 1] == "\u200d"):
        n -= 1
    run = 0
    while run < n and "\U0001f1e6" <= text[n - 1 - run] <= "\U0001f1ff":
        run += 1
    return n - (run % 2)


# --- Score and entry point


def _content_items(el: Elements) -> list[tuple[int, str]]:
    items = [(8, f"role: {el.role.value}")] if el.role else []
    items += [(3, f"seniority: {el.seniority.value}")] if el.seniority else []
    items += [(5, f"industry: {el.industry.value}")] if el.industry else []
    if el.skills:
        items.append((min(6, 2 * len(el.skills)), f"skills: {', '.join(s.value for s in el.skills)}"))
    items += [(5, "a quantified achievement")] if any(map(_is_quantified, el.achievements)) else []
    items += [(2, f"{len(el.achievements)} achievements")] if len(el.achievements) >= 2 else []
    items += [(3, f"setting: {el.settings[0].value}")] if el.settings else []
    return items or [(-5, "nothing extractable")]


def _length_items(words: int) -> list[tuple[int, str]]:
    if words < 15:
        return [(-5, f"very short script ({words} words)")]
    if words > 750:
        return [(-5, f"very long script ({words} words)")]
    return [(5, f"script length in range ({words} words)")] if 40 <= words <= 400 else []


def _trim_items(trims: list[str]) -> list[tuple[int, str]]:
    cost = {"dropped": -2, "shortened": -1, "trimmed": -5}
    return [(cost[trim.split()[1]], trim) for trim in trims]


def score(el: Elements, trims: list[str]) -> tuple[int, tuple[str, ...]]:
    """The rubric in the module docstring: 70 plus the items that apply, clamped to 70-100."""
    items = _content_items(el) + _length_items(el.word_count) + _trim_items(trims)
    total = max(70, min(100, 70 + sum(points for points, _ in items)))
    return total, tuple(f"{points:+d} {reason}" for points, reason in items)


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
    prompt, trims = _fit_prompt(_fragments(elements, style, motion, intensity), RUNWAY_PROMPT_LIMIT)
    spoken = " ".join(_sanitize(script).split())
    heygen = _fit_script(spoken, HEYGEN_SCRIPT_LIMIT)
    trims += [f"script: trimmed {len(spoken)} to {len(heygen)} characters"] if heygen != spoken else []
    quality, reasons = score(elements, trims)
    return PromptResult(prompt, heygen, elements, quality, reasons, style, motion, intensity, tuple(trims))
