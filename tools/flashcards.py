"""One source, three outputs: each chapter's "Check your understanding" questions.

The questions and their hidden answers are written once, in the chapter notebooks,
under the heading "Check your understanding": a question, then an answer block

    ````{admonition} Answer
    :class: dropdown
    ...
    ````

This tool reads them from there and writes

* ``book/flashcards.md``, a page of the book with every question and its hidden
  answer, chapter by chapter, and
* ``book/_generated/transformer-flashcards.apkg``, an Anki deck (one note per
  question, math typeset by Anki's MathJax), which that page offers as a download.

``make book`` runs it before every build, so the chapter stays the only place to edit
a question. Numbers glued into a question or answer (``{glue:text}`key:.1%```) are
filled in from the notebook's stored outputs, as the chapter shows them.

Usage: ``python -m tools.flashcards`` (from the repository root).
"""

from __future__ import annotations

import argparse
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PAGE = ROOT / "book" / "flashcards.md"
DECK = ROOT / "book" / "_generated" / "transformer-flashcards.apkg"

DECK_ID = 1_734_201_907  # fixed, so a re-imported deck updates instead of duplicating
MODEL_ID = 1_734_201_911
DECK_NAME = "The Transformer from the Ground Up"

_SECTION = re.compile(r"^(#{2,3}) Check your understanding\s*$", re.MULTILINE)
_ANSWER = re.compile(
    r"^(?P<fence>`{3,})\{admonition\} Answer[ \t]*\n"  # ````{admonition} Answer
    r"(?::[\w-]+:[^\n]*\n)*"  # its options (:class: dropdown)
    r"(?P<body>.*?)^(?P=fence)[ \t]*$",  # the answer, up to the closing fence
    re.MULTILINE | re.DOTALL,
)
_NUMBER = re.compile(r"^\s*(?:\*\*(?:\d+|Q)\.\*\*|\d+\.|\*\*Q\d*\.?\*\*)\s*")
_GLUE = re.compile(r"\{glue(?::text|:)?\}`(?P<key>[\w-]+)(?::(?P<spec>[^`]*))?`")
_NUMPY_SCALAR = re.compile(
    r"^(?:np|numpy)\.(?:float|int|uint|bool|complex)\w*\((.*)\)$"
)
_ROLE = re.compile(r"\{(?P<role>[\w:-]+)\}`(?P<text>[^`]*)`")


@dataclass(frozen=True)
class Card:
    chapter: str  # notebook stem, e.g. "03_lstm_gru"
    title: str  # the chapter's title
    number: int
    question: str  # MyST markdown
    answer: str  # MyST markdown


def _markdown_cells(nb: dict) -> list[str]:
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]


def glued_values(nb: dict) -> dict[str, str]:
    """The plain-text value of every ``glue(...)`` record in the stored outputs."""
    values: dict[str, str] = {}
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            text = out.get("data", {}).get("application/papermill.record/text/plain")
            if name and text is not None:
                values[name] = "".join(text) if isinstance(text, list) else text
    return values


def fill_glue(text: str, values: dict[str, str], where: str) -> str:
    """Replace glue roles by their values, formatted as the book formats them."""

    def one(match: re.Match) -> str:
        key, spec = match.group("key"), match.group("spec")
        if key not in values:
            raise KeyError(
                f"{where}: the glued value {key!r} is not in the stored outputs"
            )
        raw = _NUMPY_SCALAR.sub(r"\1", values[key].strip())
        if spec:
            try:
                return format(float(raw), spec)
            except ValueError:
                return format(raw.strip("'\""), spec)
        return raw.strip("'\"")

    return _GLUE.sub(one, text)


def cards_of(path: Path) -> list[Card]:
    """Every question of one chapter's "Check your understanding" section, in order."""
    nb = json.loads(path.read_text())
    text = "\n\n".join(_markdown_cells(nb))
    title_match = re.search(r"^# (.+)$", text, re.MULTILINE)
    title = title_match.group(1).strip() if title_match else path.stem
    section = _SECTION.search(text)
    if section is None:
        return []
    level = len(section.group(1))
    rest = text[section.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    body = rest[: end.start()] if end else rest
    values = glued_values(nb)
    cards: list[Card] = []
    start = 0
    for match in _ANSWER.finditer(body):
        question = body[start : match.start()].strip()
        start = match.end()
        question = _NUMBER.sub("", question, count=1).strip()
        answer = match.group("body").strip()
        if not question:
            raise ValueError(
                f"{path.name}: an answer block without a question before it"
            )
        where = f"{path.name}, question {len(cards) + 1}"
        cards.append(
            Card(
                path.stem,
                title,
                len(cards) + 1,
                fill_glue(question, values, where),
                fill_glue(answer, values, where),
            )
        )
    if body[start:].strip():
        leftover = body[start:].strip()[:80]
        raise ValueError(
            f"{path.name}: a question without an answer block: {leftover!r}"
        )
    return cards


def all_cards(notebooks: Path = NOTEBOOKS) -> list[Card]:
    cards: list[Card] = []
    for path in sorted(notebooks.glob("[0-9][0-9]_*.ipynb")):
        cards += cards_of(path)
    return cards


# ------------------------------------------------------------------ the book page
def _for_page(text: str) -> str:
    """A question's markdown as it may appear on another page of the book."""
    # {term}, {cite:p}, {doc} and math work anywhere; a chapter-local {ref} or {numref}
    # label would not resolve here, so it is shown as its text.
    return _ROLE.sub(
        lambda m: (
            m.group("text")
            if m.group("role") in ("ref", "numref", "eq")
            else m.group(0)
        ),
        text,
    )


def write_page(cards: list[Card], path: Path = PAGE, deck: Path = DECK) -> Path:
    deck_link = Path("_generated") / deck.name
    lines = [
        "# Flashcards",
        "",
        "Every chapter ends with questions to check your understanding. They are "
        "collected",
        "here, chapter by chapter, with their answers hidden until you open them, and "
        "as an",
        f"Anki deck for spaced repetition: {{download}}`{deck.name} "
        f"<{deck_link.as_posix()}>`",
        f"({len(cards)} cards; in Anki, *File > Import*). Both are made from the "
        "chapters",
        "themselves every time the book is built, so they always match the chapters.",
        "",
    ]
    chapter = None
    for card in cards:
        if card.chapter != chapter:
            chapter = card.chapter
            lines += [
                f"## {card.title}",
                "",
                f"From {{doc}}`../notebooks/{card.chapter}`.",
                "",
            ]
        lines += [
            f"**{card.number}.** {_for_page(card.question)}",
            "",
            "````{admonition} Answer",
            ":class: dropdown",
            _for_page(card.answer),
            "````",
            "",
        ]
    path.write_text("\n".join(lines))
    return path


# ------------------------------------------------------------------ the Anki deck
_MATH = re.compile(r"\$\$(?P<display>.+?)\$\$|\$(?P<inline>[^$\n]+?)\$", re.DOTALL)


def to_anki_html(text: str) -> str:
    """MyST markdown to the HTML of an Anki field; math goes to MathJax's delimiters."""
    from markdown_it import MarkdownIt

    maths: list[str] = []

    def keep(match: re.Match) -> str:
        if match.group("display") is not None:
            maths.append(
                r"\[" + html.escape(match.group("display").strip(), quote=False) + r"\]"
            )
        else:
            maths.append(
                r"\(" + html.escape(match.group("inline").strip(), quote=False) + r"\)"
            )
        return f"MATH{len(maths) - 1}END"

    text = _MATH.sub(keep, text)
    text = _ROLE.sub(lambda m: m.group("text").split("<")[0].strip(), text)
    rendered = MarkdownIt("commonmark").render(text).strip()
    return re.sub(r"MATH(\d+)END", lambda m: maths[int(m.group(1))], rendered)


def write_deck(cards: list[Card], path: Path = DECK) -> Path:
    import genanki

    model = genanki.Model(
        MODEL_ID,
        "Transformer book question",
        fields=[{"name": "Question"}, {"name": "Answer"}, {"name": "Chapter"}],
        templates=[
            {
                "name": "Card 1",
                "qfmt": '<div class="chapter">{{Chapter}}</div>{{Question}}',
                "afmt": '{{FrontSide}}<hr id="answer">{{Answer}}',
            }
        ],
        css=".card { font-family: sans-serif; font-size: 18px; text-align: left; }"
        " .chapter { font-size: 13px; color: #666; margin-bottom: 8px; }",
    )
    deck = genanki.Deck(DECK_ID, DECK_NAME)
    for card in cards:
        deck.add_note(
            genanki.Note(
                model=model,
                fields=[
                    to_anki_html(card.question),
                    to_anki_html(card.answer),
                    html.escape(f"{card.title}, question {card.number}"),
                ],
                guid=genanki.guid_for(card.chapter, card.number),
                tags=[card.chapter],
            )
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    genanki.Package(deck).write_to_file(str(path))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--page", type=Path, default=PAGE)
    parser.add_argument("--deck", type=Path, default=DECK)
    args = parser.parse_args(argv)
    cards = all_cards()
    write_deck(cards, args.deck)
    write_page(cards, args.page, args.deck)
    chapters = len({c.chapter for c in cards})
    print(
        f"flashcards: {len(cards)} questions from {chapters} chapters -> "
        f"{args.page.name}, {args.deck.name}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
