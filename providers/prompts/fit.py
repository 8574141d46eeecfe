"""Cutting text to a provider's limit without breaking words, surrogate pairs or emoji (pure)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from providers.runwayml.request import utf16_len

_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*(?=\s|$)|[。！？]")
_JOINERS = re.compile(r"[\u200d\u20e3\ufe0e\ufe0f\U0001f3fb-\U0001f3ff\U000e0020-\U000e007f]")


def join(fragments: list[str]) -> str:
    return ". ".join(fragments) + "." if fragments else ""


def fit_prompt(fragments: list[tuple[str, str]], limit: int) -> tuple[str, list[str]]:
    """Drop the least important fragments, then shorten the last one left at a word boundary."""
    kept = [(name, text) for name, text in fragments if text]
    trims = []
    while len(kept) > 1 and utf16_len(join([t for _, t in kept])) > limit:
        trims.append(f"prompt: dropped {kept.pop()[0]}")
    if kept and utf16_len(join([kept[0][1]])) > limit:  # one fragment left: shorten it
        name, text = kept.pop()
        kept = [(name, short)] if (short := fit_words(text, limit - 1, utf16_len)) else []
        trims.append(f"prompt: shortened {name}")
    return join([t for _, t in kept]), trims


def fit_words(text: str, limit: int, measure: Callable[[str], int] = len) -> str:
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


def fit_script(text: str, limit: int) -> str:
    """Cut at the last sentence end if that keeps half the limit, else at a word, else at a grapheme."""
    if len(text) <= limit:
        return text
    head = text[: limit + 1]
    ends = [m.end() for m in _SENTENCE_END.finditer(head) if m.end() <= limit]
    if ends and ends[-1] >= limit // 2:
        return head[: ends[-1]]
    space = head.rfind(" ")
    return head[:space].rstrip() if space > 0 else head[: _grapheme_cut(text, limit)]


def _joins(ch: str) -> bool:
    """True for characters that attach to the one before (marks, ZWJ, variation selectors, tags)."""
    return unicodedata.category(ch) in ("Mn", "Mc", "Me") or bool(_JOINERS.match(ch))


def _grapheme_cut(text: str, n: int) -> int:
    """Move a cut position back so it never separates an emoji, flag or combining mark from its base."""
    while n > 0 and (_joins(text[n]) or text[n - 1] == "\u200d"):
        n -= 1
    run = 0
    while run < n and "\U0001f1e6" <= text[n - 1 - run] <= "\U0001f1ff":
        run += 1
    return n - (run % 2)
