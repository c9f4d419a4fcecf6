"""The flashcards page and the Anki deck hold every chapter's questions with their
answers."""

from __future__ import annotations

import json
import re
import sqlite3
import zipfile
from pathlib import Path

import pytest

from tools import flashcards

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def answer_blocks(path: Path) -> int:
    """Answer blocks in the chapter's "Check your understanding" section, counted
    raw."""
    text = "\n\n".join(
        "".join(c["source"])
        for c in json.loads(path.read_text())["cells"]
        if c["cell_type"] == "markdown"
    )
    start = re.search(r"^#{2,3} Check your understanding", text, re.MULTILINE)
    assert start, f"{path.name} has no 'Check your understanding' section"
    rest = text[start.end() :]
    end = re.search(r"^#{1,2} ", rest, re.MULTILINE)
    return (rest[: end.start()] if end else rest).count("{admonition} Answer")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("cards")
    cards = flashcards.all_cards()
    deck = flashcards.write_deck(cards, out / "deck.apkg")
    page = flashcards.write_page(cards, out / "flashcards.md", deck)
    with zipfile.ZipFile(deck) as z:
        z.extract("collection.anki2", out)
    with sqlite3.connect(out / "collection.anki2") as db:
        notes = [row[0].split("\x1f") for row in db.execute("select flds from notes")]
    return cards, page.read_text(), notes


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_question_of_every_chapter_is_a_card(built, path):
    cards, _, _ = built
    mine = [c for c in cards if c.chapter == path.stem]
    assert len(mine) >= 3, (
        f"{path.name} has {len(mine)} check-your-understanding questions"
    )
    assert len(mine) == answer_blocks(path)
    for card in mine:
        assert card.question and card.answer, card
        assert "{admonition}" not in card.question and "{glue" not in card.answer


def test_the_deck_holds_each_question_with_its_answer_and_math(built):
    cards, _, notes = built
    assert len(notes) == len(cards)
    by_label = {n[2]: n for n in notes}
    for card in cards:
        question, answer, _ = by_label[f"{card.title}, question {card.number}"]
        assert words(card.question) <= words(question), card.question
        assert words(card.answer) <= words(answer), card.answer
        for text, field in ((card.question, question), (card.answer, answer)):
            inline = re.findall(r"(?<!\$)\$([^$\n]+)\$(?!\$)", text)
            for tex in inline:  # inline math reaches Anki's MathJax delimiters intact
                assert (
                    r"\("
                    + tex.strip()
                    .replace("&", "&amp;")
                    .replace("<", "&lt;")
                    .replace(">", "&gt;")
                    + r"\)"
                    in field
                ), tex
            assert "$" not in re.sub(
                r"\\\(.*?\\\)|\\\[.*?\\\]", "", field, flags=re.DOTALL
            )
    assert any(r"\(" in n[0] + n[1] for n in notes), "no card has math at all?"


def test_the_page_lists_every_question_with_a_hidden_answer(built):
    cards, page, _ = built
    assert page.count("{admonition} Answer") == len(cards)
    assert page.count(":class: dropdown") == len(cards)
    assert "{download}`" in page and ".apkg" in page
    for card in cards:
        assert card.question.split("\n")[0][:60] in page


def test_a_question_without_an_answer_is_an_error(tmp_path):
    nb = {
        "cells": [
            {
                "cell_type": "markdown",
                "source": ["# Chapter 0\n\n## Check your understanding\n"],
            },
            {"cell_type": "markdown", "source": ["**1.** Unanswered?"]},
        ]
    }
    path = tmp_path / "00_demo.ipynb"
    path.write_text(json.dumps(nb))
    with pytest.raises(ValueError, match="without an answer"):
        flashcards.cards_of(path)


def test_glued_numbers_are_filled_in():
    values = {"acc": "0.9234", "name": "'beam'", "np": "np.float64(0.5)"}
    text = "reached {glue:text}`acc:.1%` with {glue:}`name`, {glue:text}`np:.2f`"
    assert flashcards.fill_glue(text, values, "x") == "reached 92.3% with beam, 0.50"
    with pytest.raises(KeyError, match="missing"):
        flashcards.fill_glue("{glue:text}`missing`", values, "x")


def words(markdown: str) -> set[str]:
    """The plain words of a markdown text (no math, no markup), to compare with HTML."""
    text = re.sub(r"\$\$.*?\$\$|\$[^$\n]*\$", " ", markdown, flags=re.DOTALL)
    text = re.sub(r"\{[\w:-]+\}`([^`<]*)[^`]*`", r"\1", text)
    return {w for w in re.findall(r"[A-Za-z]{4,}", text)}
