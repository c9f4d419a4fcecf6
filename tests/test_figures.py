"""Every figure a chapter draws is a numbered, captioned figure with alt text, and the
prose refers to it by number.

myst-nb turns a code cell's image output into a figure through the cell's metadata:
``"mystnb": {"figure": {"caption": ..., "name": ...}, "image": {"alt": ...}}``; the
name is the label that ``{numref}`` in the prose points at ("Fig. 3"), and the alt text
is what a screen reader says instead of the picture.
"""

from __future__ import annotations

import base64
import io
import json
import re
import struct
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IDS = [p.stem for p in CHAPTERS]

NAME = re.compile(r"fig-(\d\d)-[a-z0-9]+(?:-[a-z0-9]+)*")
NUMREF = re.compile(r"\{numref\}`(?:[^`<]*<)?([^`>]+)>?`")


def image_cells(nb: dict) -> list[dict]:
    """Code cells with at least one image among their outputs."""
    return [
        c
        for c in nb["cells"]
        if c["cell_type"] == "code"
        and any(
            k.startswith("image/")
            for o in c.get("outputs", [])
            for k in o.get("data", {})
        )
    ]


def figure_problems(nb: dict, chapter: str) -> list[str]:
    """What keeps the figures of one chapter from being numbered, captioned, described
    and referred to; empty when nothing does."""
    problems, names = [], []
    for cell in image_cells(nb):
        where = f"cell {cell.get('id', '?')}"
        opts = cell["metadata"].get("mystnb", {})
        figure, image = opts.get("figure", {}), opts.get("image", {})
        name = str(figure.get("name", ""))
        if not str(figure.get("caption", "")).strip():
            problems.append(f"{where}: no mystnb.figure.caption")
        if not str(image.get("alt", "")).strip():
            problems.append(f"{where}: no mystnb.image.alt")
        match = NAME.fullmatch(name)
        if not match:
            problems.append(
                f"{where}: figure name {name!r} is not fig-<chapter>-<short>"
            )
        elif match.group(1) != chapter:
            problems.append(
                f"{where}: figure name {name!r} does not carry chapter {chapter}"
            )
        if name:
            names.append(name)
        # the figure options wrap every displayed output of the cell; a second one
        # would be a second figure with the same label
        shown = [
            o
            for o in cell.get("outputs", [])
            if o["output_type"] in ("display_data", "execute_result")
            and not o.get("metadata", {}).get("scrapbook", {}).get("mime_prefix")
        ]
        if len(shown) > 1:
            problems.append(
                f"{where}: {len(shown)} displayed outputs share one figure label"
            )
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"figure name {name!r} is used by {names.count(name)} cells")
    prose = "\n".join(
        "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"
    )
    referred = set(NUMREF.findall(prose))
    for name in names:
        if name not in referred:
            problems.append(f"{name} is never referred to with {{numref}} in the prose")
    for name in sorted(referred - set(names)):
        problems.append(f"{{numref}}`{name}` points at no figure of this chapter")
    return problems


@pytest.mark.parametrize("path", CHAPTERS, ids=IDS)
def test_every_figure_is_numbered_captioned_described_and_referenced(path):
    nb = json.loads(path.read_text())
    assert image_cells(nb), f"{path.name} draws no figure"
    problems = figure_problems(nb, path.name[:2])
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def test_names_are_unique_across_the_book():
    names = []
    for path in CHAPTERS:
        for cell in image_cells(json.loads(path.read_text())):
            names.append(
                cell["metadata"].get("mystnb", {}).get("figure", {}).get("name")
            )
    assert len(names) == len(set(names))


def _nb(cells: list[dict]) -> dict:
    return {"cells": cells}


def _fig(meta: dict, n_outputs: int = 1) -> dict:
    out = {"output_type": "display_data", "data": {"image/png": "", "text/plain": ""}}
    return {
        "cell_type": "code",
        "id": "x",
        "metadata": meta,
        "outputs": [out] * n_outputs,
    }


def _md(text: str) -> dict:
    return {"cell_type": "markdown", "source": [text]}


GOOD = {
    "mystnb": {
        "figure": {"caption": "What it shows.", "name": "fig-02-decay"},
        "image": {"alt": "A falling line."},
    }
}


def test_the_checker_accepts_a_complete_figure():
    assert (
        figure_problems(_nb([_md("See {numref}`fig-02-decay`."), _fig(GOOD)]), "02")
        == []
    )
    explicit = _md("See {numref}`Figure %s <fig-02-decay>`.")
    assert figure_problems(_nb([explicit, _fig(GOOD)]), "02") == []


@pytest.mark.parametrize(
    "meta, prose, expected",
    [
        ({}, "", "no mystnb.figure.caption"),
        (
            {"mystnb": {"figure": GOOD["mystnb"]["figure"]}},
            "{numref}`fig-02-decay`",
            "alt",
        ),
        (GOOD, "the plot below", "never referred to"),
        (
            GOOD,
            "{numref}`fig-02-other` and {numref}`fig-02-decay`",
            "points at no figure",
        ),
        (
            {"mystnb": {**GOOD["mystnb"], "figure": {"caption": "c", "name": "decay"}}},
            "{numref}`decay`",
            "not fig-<chapter>-<short>",
        ),
        (
            {
                "mystnb": {
                    **GOOD["mystnb"],
                    "figure": {"caption": "c", "name": "fig-03-decay"},
                }
            },
            "{numref}`fig-03-decay`",
            "does not carry chapter 02",
        ),
    ],
)
def test_the_checker_reports_what_is_missing(meta, prose, expected):
    problems = figure_problems(_nb([_md(prose), _fig(meta)]), "02")
    assert any(expected in p for p in problems), problems


def test_the_checker_reports_duplicate_names_and_shared_labels():
    problems = figure_problems(
        _nb([_md("{numref}`fig-02-decay`"), _fig(GOOD), _fig(GOOD)]), "02"
    )
    assert any("used by 2 cells" in p for p in problems), problems
    problems = figure_problems(
        _nb([_md("{numref}`fig-02-decay`"), _fig(GOOD, 2)]), "02"
    )
    assert any("share one figure label" in p for p in problems), problems


# Sharp and legible. The book's text column is 688 CSS pixels wide on a desktop; a
# figure wider than that is shrunk to fit, so its text shrinks with it. At most 9.5
# inches wide, 10-point text (the book's font size) stays above 10 pixels and 8-point
# annotations above 8 at the column width.
MIN_DPI = 150
MAX_WIDTH_INCHES = 9.5


def png_size_and_dpi(data: bytes) -> tuple[int, int, float | None]:
    """Width and height in pixels and the dots per inch a PNG records (its pHYs
    chunk), or None for the dpi when it records none."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    at = 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        if kind == b"pHYs":
            per_metre, _, unit = struct.unpack(">IIB", data[at + 8 : at + 17])
            return width, height, per_metre * 0.0254 if unit == 1 else None
        if kind == b"IDAT":
            break
        at += 12 + length
    return width, height, None


def resolution_problems(nb: dict) -> list[str]:
    """Images of a notebook below MIN_DPI or wider than MAX_WIDTH_INCHES."""
    problems = []
    for cell in image_cells(nb):
        name = cell["metadata"].get("mystnb", {}).get("figure", {}).get("name", "?")
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/svg+xml" in data or "image/png" not in data:
                continue
            width, _, dpi = png_size_and_dpi(base64.b64decode(data["image/png"]))
            if dpi is None or dpi < MIN_DPI - 0.5:
                problems.append(f"{name}: {dpi or 'no'} dpi, below {MIN_DPI}")
            elif width / dpi > MAX_WIDTH_INCHES:
                problems.append(
                    f"{name}: {width / dpi:.1f} inches wide; at most "
                    f"{MAX_WIDTH_INCHES} keeps its text legible in the column"
                )
    return problems


@pytest.mark.parametrize("path", CHAPTERS, ids=IDS)
def test_every_figure_is_sharp_and_legible_at_the_column_width(path):
    problems = resolution_problems(json.loads(path.read_text()))
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def _png(width_inches: float, dpi: int) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(width_inches, 2), dpi=dpi)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize(
    "width, dpi, expected",
    [(6, 150, None), (6, 90, "below 150"), (12, 150, "inches wide")],
)
def test_the_resolution_checker_measures_the_png_itself(width, dpi, expected):
    cell = _fig(GOOD)
    cell["outputs"] = [
        {"output_type": "display_data", "data": {"image/png": _png(width, dpi)}}
    ]
    problems = resolution_problems(_nb([cell]))
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and expected in problems[0], problems
