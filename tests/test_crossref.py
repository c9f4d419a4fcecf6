"""The chapters link every chapter and section they mention, and each glossary term at
its first use (``tools/crossref.py``)."""

from __future__ import annotations

import json
from pathlib import Path

from tools.crossref import (
    TermLinker,
    glossary_entries,
    process,
    rewrite,
    section_anchors,
    slug,
    split_prose,
)

FILES = {1: Path("01_intro.ipynb"), 2: Path("02_rnn.ipynb"), 3: Path("03_lstm.ipynb")}
ANCHORS = {2: {1: "1-a-cell", 5: "5-gradients"}, 3: {4: "4-the-gru"}}


def _link(
    text: str, own: int = 2, terms: TermLinker | None = None
) -> tuple[str, list[str]]:
    return rewrite(text, own, FILES, ANCHORS, terms)


def test_every_chapter_is_linked_and_no_mention_is_left_plain() -> None:
    """Run ``python -m tools.crossref`` after writing a chapter if this fails."""
    assert process(check=True) == []


def test_chapter_and_section_mentions_become_links() -> None:
    new, problems = _link(
        "As chapter 3 showed (section 5), and chapters 1 and 3 agree."
    )
    assert problems == []
    assert new == (
        "As {doc}`chapter 3 <03_lstm>` showed ([section 5](#5-gradients)), and "
        "{doc}`chapters 1 <01_intro>` and 3 agree."
    )


def test_sections_of_other_chapters_link_into_that_page() -> None:
    new, _ = _link("See section 4 of chapter 3, or chapter 3's section 4.")
    assert new == (
        "See [section 4 of chapter 3](03_lstm.ipynb#4-the-gru), or "
        "[chapter 3's section 4](03_lstm.ipynb#4-the-gru)."
    )


def test_own_chapter_and_chapters_not_yet_written_stay_text() -> None:
    assert _link("This is chapter 2; chapter 14 will scale it.")[0] == (
        "This is chapter 2; chapter 14 will scale it."
    )


def test_a_missing_section_is_reported_not_guessed() -> None:
    new, problems = _link("as section 9 explains")
    assert new == "as section 9 explains"
    assert problems and "no section 9" in problems[0]


def test_math_code_roles_links_headings_and_code_blocks_are_left_alone() -> None:
    text = "\n".join(
        [
            "## 5. What chapter 3 did",
            "`chapter 3` and $\\text{chapter } 3$ and {glue:text}`chapter 3`",
            "[chapter 3](https://example.org) and {doc}`chapter 3 <03_lstm>`",
            "```python",
            "# chapter 3",
            "```",
            "```{note}",
            "A note about chapter 3.",
            "```",
        ]
    )
    new, _ = _link(text)
    lines = new.split("\n")
    assert lines[:6] == text.split("\n")[:6]
    # a directive holds prose
    assert lines[7] == "A note about {doc}`chapter 3 <03_lstm>`."


def test_questions_and_exercises_are_not_rewritten() -> None:
    prose, rest = split_prose(
        "Summary of chapter 3.\n## Check your understanding\nchapter 3?"
    )
    assert prose == "Summary of chapter 3.\n"
    assert rest is not None and rest.startswith("## Check your understanding")


def test_terms_are_linked_at_their_first_use_only() -> None:
    terms = TermLinker(
        [("teacher forcing",), ("GRU",), ("self-attention",), ("attention",)]
    )
    first, _ = _link(
        "Teacher forcing feeds the truth; teacher forcing again.", terms=terms
    )
    assert first == (
        "{term}`Teacher forcing <teacher forcing>` feeds the truth; teacher forcing "
        "again."
    )
    second, _ = _link("A gru is not a GRU; self-attention is attention.", terms=terms)
    # acronyms match their case only; the longer term wins where two overlap
    assert second == (
        "A gru is not a {term}`GRU`; {term}`self-attention` is {term}`attention`."
    )
    third, _ = _link("Teacher forcing and the GRU, once more.", terms=terms)
    assert third == "Teacher forcing and the GRU, once more."


def test_a_term_already_linked_by_hand_is_not_linked_again() -> None:
    terms = TermLinker([("KV cache", "key/value cache")])
    new, _ = _link("The {term}`key/value cache` is a KV cache.", terms=terms)
    assert new == "The {term}`key/value cache` is a KV cache."


def test_the_glossary_is_read_with_every_name_of_an_entry() -> None:
    entries = glossary_entries()
    assert ("KV cache", "key/value cache") in entries
    assert all(
        entry and all(name.strip() == name for name in entry) for entry in entries
    )


def test_section_anchors_follow_the_numbered_headings(tmp_path: Path) -> None:
    nb = {
        "cells": [{"cell_type": "markdown", "source": ["## 2. Unrolling: the graph\n"]}]
    }
    assert section_anchors(nb) == {2: "2-unrolling-the-graph"}
    assert slug("5. Why divide by $\\sqrt{d}$?") == "5-why-divide-by-sqrtd"
    path = tmp_path / "01_x.ipynb"
    path.write_text(json.dumps({"cells": [], "metadata": {}}))
    assert process(check=True, folder=tmp_path) == []


def _markdown(path: Path) -> str:
    nb = json.loads(path.read_text())
    return "\n".join(
        "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"
    )


def test_key_equations_are_numbered_and_referenced_on_their_page() -> None:
    """Each chapter labels its key display equations (``$$ ... $$ (eq-name)``), refers
    to them with ``{eq}``, and refers to no equation of another page (the numbers
    would not tell the reader where to look)."""
    import re

    pages = sorted(Path("notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert pages
    labels_seen: set[str] = set()
    for page in pages:
        text = _markdown(page)
        labels = re.findall(r"\$\$ \((eq-[\w-]+)\)", text)
        refs = set(re.findall(r"\{eq\}`(eq-[\w-]+)`", text))
        assert labels, f"{page.name} numbers none of its equations"
        assert len(labels) == len(set(labels)) and not labels_seen & set(labels), (
            page.name
        )
        labels_seen |= set(labels)
        assert refs <= set(labels), (
            f"{page.name} refers to {sorted(refs - set(labels))}"
        )
        unreferenced = set(labels) - refs
        assert len(unreferenced) <= len(labels) // 2, (
            f"{page.name}: {sorted(unreferenced)}"
        )


def test_prose_after_a_directive_and_inside_nested_fences_is_handled() -> None:
    text = "\n".join(
        [
            "```{note}",
            "chapter 3 a",
            "```",
            "chapter 3 b",
            "````{admonition} x",
            "```python",
            "chapter 3 c",
            "```",
            "chapter 3 d",
            "````",
            "$$",
            r"\text{chapter 3}",
            "$$",
            "chapter 3 e",
        ]
    )
    new = _link(text)[0].split("\n")
    linked = "{doc}`chapter 3 <03_lstm>`"
    assert [new[i] for i in (1, 3, 8, 13)] == [f"{linked} {c}" for c in "abde"]
    assert new[6] == "chapter 3 c" and new[11] == r"\text{chapter 3}"
