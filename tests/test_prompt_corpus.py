"""The prompt composer over a corpus of CV scripts (tests/corpus/cvs/corpus.jsonl), in every style.

Each entry names the occupation it should be recognised as (or none), the words of which at least one
must appear in the prompt (settings a viewer would accept) and words that would be plainly wrong.
`python -m tests.test_prompt_corpus` prints the summary table of docs/PROMPTS.md.
"""

from __future__ import annotations

import json
from collections import defaultdict
from statistics import mean
from typing import Any

import pytest

from providers.prompts import STYLES, VOCABULARY, build_prompt, problems
from tests.conftest import ROOT

CORPUS = ROOT / "tests" / "corpus" / "cvs" / "corpus.jsonl"
ENTRIES = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def verdict(entry: dict[str, Any], style: str) -> dict[str, Any]:
    """What the composer did with one entry in one style, and whether each expectation holds."""
    result = build_prompt(entry["script"], style)
    prompt = result.runway_prompt.lower()
    found = result.elements.occupation.value if result.elements.occupation else None
    return {
        "result": result,
        "occupation": found == entry["occupation"],
        "accepted": any(word.lower() in prompt for word in entry["accept"]),
        "wrong": [word for word in entry["reject"] if word.lower() in prompt],
        "problems": problems(result.runway_prompt, entry["script"]),
    }


def test_the_corpus_is_broad():
    words = [len(entry["script"].split()) for entry in ENTRIES]
    majors = {VOCABULARY.occupations[e["occupation"]].major for e in ENTRIES if e["occupation"]}
    assert len(ENTRIES) >= 40
    assert min(words) <= 3
    assert max(words) >= 1900
    assert {entry["lang"] for entry in ENTRIES} >= {"en", "es", "fr", "de"}
    assert len(majors) >= 7
    assert any(entry["occupation"] is None for entry in ENTRIES)


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry["id"] for entry in ENTRIES])
@pytest.mark.parametrize("style", list(STYLES))
def test_every_prompt_fits_the_person_and_passes_the_checks(entry, style):
    found = verdict(entry, style)
    assert found["occupation"], found["result"].elements
    assert found["accepted"], found["result"].runway_prompt
    assert found["wrong"] == []
    assert found["problems"] == ()


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry["id"] for entry in ENTRIES])
def test_the_three_styles_differ_and_seniority_is_read(entry):
    results = [build_prompt(entry["script"], style) for style in STYLES]
    assert len({result.runway_prompt for result in results}) == len(STYLES)
    if entry["seniority"] is not None:
        assert results[0].elements.seniority.value == entry["seniority"]


def test_a_recognised_occupation_scores_well_and_the_neutral_setting_scores_low():
    scores = defaultdict(list)
    for entry in ENTRIES:
        scores[entry["occupation"] is None].append(build_prompt(entry["script"]).quality_score)
    assert min(scores[False]) >= 60
    assert max(scores[True]) <= 35


def table() -> str:
    """The markdown summary of the corpus over the three styles, by ISCO-08 major group."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in ENTRIES:
        occupation = entry["occupation"]
        group = VOCABULARY.occupations[occupation].major if occupation else "-"
        name = VOCABULARY.groups[group] if occupation else "nothing fits (neutral)"
        rows[f"{group} {name}"] += [verdict(entry, style) for style in STYLES]
    lines = [
        "| ISCO-08 major group | prompts | occupation right | accepted setting | wrong words | checks passed "
        "| mean score |",
        "|---|---|---|---|---|---|---|",
    ]
    everything = [v for verdicts in rows.values() for v in verdicts]
    for label, verdicts in [*sorted(rows.items()), ("all", everything)]:
        lines.append(
            f"| {label} | {len(verdicts)} | {sum(v['occupation'] for v in verdicts)} "
            f"| {sum(v['accepted'] for v in verdicts)} | {sum(bool(v['wrong']) for v in verdicts)} "
            f"| {sum(not v['problems'] for v in verdicts)} "
            f"| {mean(v['result'].quality_score for v in verdicts):.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(f"{len(ENTRIES)} CV scripts x {len(STYLES)} styles\n")
    print(table())
