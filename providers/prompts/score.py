"""The prompt quality rubric: 70 plus the items that apply, clamped to 70-100 (pure).

The table of items is in the `providers.prompts` docstring; each item becomes a reason such as
`+8 role: registered nurse`.
"""

from __future__ import annotations

from providers.prompts.extract import Elements, is_quantified


def _content_items(el: Elements) -> list[tuple[int, str]]:
    items = [(8, f"role: {el.role.value}")] if el.role else []
    items += [(3, f"seniority: {el.seniority.value}")] if el.seniority else []
    items += [(5, f"industry: {el.industry.value}")] if el.industry else []
    if el.skills:
        items.append((min(6, 2 * len(el.skills)), f"skills: {', '.join(s.value for s in el.skills)}"))
    items += [(5, "a quantified achievement")] if any(map(is_quantified, el.achievements)) else []
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
