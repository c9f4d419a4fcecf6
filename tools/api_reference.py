"""Write the book's API reference appendix from the package's own docstrings.

``book/api.md`` gets one section per chapter, in reading order, and in it one
``automodule`` per module of :data:`transformer.CHAPTER_OF_MODULE`; Sphinx's
autodoc reads the docstrings at build time (napoleon renders their ``Args:``,
``Returns:`` and ``Shape:`` sections). ``make book`` runs this before every
build, so a new module appears in the reference without anyone editing a page.

Usage: ``python -m tools.api_reference`` (from the repository root).
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from transformer import CHAPTER_OF_MODULE

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "book" / "api.md"

CHAPTER_TITLES = {
    1: "Sequence tasks and data",
    2: "Recurrent networks",
    3: "LSTM and GRU",
    4: "Sequence to sequence",
    5: "Attention",
    6: "Self-attention and multi-head attention",
    7: "Positional encodings",
    8: "The Transformer block",
    9: "The full Transformer",
    10: "Decoder-only language models",
    11: "The modern decoder",
    12: "Encoder-only models and vision",
    13: "Efficient attention",
    14: "Scaling up",
}


def summary(module: str) -> str:
    """The first line of a module's docstring."""
    doc = importlib.import_module(f"transformer.{module}").__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def render() -> str:
    lines = [
        "# API reference",
        "",
        "Every public class and function of the package `transformer`, with the",
        "docstring it carries in the code, module by module in the order the chapters",
        "introduce them. `help(transformer.model.Transformer)` in a notebook shows the",
        "same text. This page is written from the package at every build.",
        "",
    ]
    by_chapter: dict[int, list[str]] = {}
    for module, chapter in CHAPTER_OF_MODULE.items():
        by_chapter.setdefault(chapter, []).append(module)
    for chapter in sorted(by_chapter):
        title = CHAPTER_TITLES.get(chapter, f"Chapter {chapter}")
        lines += [f"## Chapter {chapter}: {title}", ""]
        for module in by_chapter[chapter]:
            lines += [
                f"### `transformer.{module}`",
                "",
                "```{eval-rst}",
                f".. automodule:: transformer.{module}",
                "   :members:",
                "   :member-order: bysource",
                "```",
                "",
            ]
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PAGE)
    args = parser.parse_args()
    args.out.write_text(render())
    print(f"wrote {args.out.relative_to(ROOT)} ({len(CHAPTER_OF_MODULE)} modules)")


if __name__ == "__main__":
    main()
