"""The prompt quality score: what the prompt is worth to a video model, 0-100 (pure).

It measures the prompt, not the CV. Items (each becomes a reason such as `+38 setting fits nurse
(confidence 0.95)`)::

    fit            40 x confidence of the occupation match; 0 with the neutral setting
    specificity    up to 30, scaled by the confidence: 15 field props and actions, 5 seniority
                   known, 10 an achievement shown as a visual of the field
    length         10 when the word count is in the mode's range (`checks`)
    camera         10 for exactly one camera move
    wording        10 without quotes, on-screen text, verbatim CV text or negative phrasing
    trims          -10 for each thing dropped or cut to fit a provider's limit

A generic prompt (no occupation recognised) scores at most 30; a guessed one (low confidence) less
than a sure one.
"""

from __future__ import annotations

from providers.prompts.extract import Elements

WORDING = ("quotes", "on_screen_text", "verbatim", "negative")


def score(
    el: Elements, problems: tuple[str, ...], trims: tuple[str, ...], milestone: bool
) -> tuple[int, tuple[str, ...]]:
    """The rubric in the module docstring: (score, reasons)."""
    confidence = el.confidence if el.occupation else 0.0
    items = [_fit(el, confidence), *_specificity(el, confidence, milestone)]
    items.append((10, "length in range") if not _has(problems, "too_") else (0, _first(problems, "too_")))
    camera = _first(problems, "camera_moves")
    items.append((10, "exactly one camera move") if not camera else (0, camera))
    wording = [p for p in problems if p in WORDING]
    items.append((10, "clean wording") if not wording else (0, "wording: " + ", ".join(wording)))
    items += [(-10, trim) for trim in trims]
    total = max(0, min(100, sum(points for points, _ in items)))
    return total, tuple(f"{points:+d} {reason}" for points, reason in items)


def _fit(el: Elements, confidence: float) -> tuple[int, str]:
    if el.occupation is None:
        return 0, f"no occupation recognised (confidence {el.confidence:.2f}): neutral setting"
    return round(40 * confidence), f"setting fits {el.occupation.value} (confidence {confidence:.2f})"


def _specificity(el: Elements, confidence: float, milestone: bool) -> list[tuple[int, str]]:
    if el.occupation is None:
        return [(0, "generic subject and setting")]
    items = [(round(15 * confidence), "props and action of the field")]
    items += [(round(5 * confidence), f"seniority: {el.seniority.value}")] if el.seniority else []
    items += [(round(10 * confidence), "achievement shown as a visual")] if milestone else []
    return items


def _has(problems: tuple[str, ...], prefix: str) -> bool:
    return any(p.startswith(prefix) for p in problems)


def _first(problems: tuple[str, ...], prefix: str) -> str:
    return next((p for p in problems if p.startswith(prefix)), "")
