"""The benchmarks appendix shows every stored results table, typeset, and quotes no
number.

``tools/benchmarks_page.py`` cuts ``benchmarks/results/*.md`` into the fragments that
``book/benchmarks.md`` includes; these tests hold both to that.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from tools import benchmarks_page as bp

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "book" / "benchmarks.md"
BUILT = ROOT / "_build" / "html" / "book" / "benchmarks.html"
STORED = {
    name: (bp.RESULTS / f"{name}.md").read_text(encoding="utf-8") for name in bp.PARTS
}


def _table_rows(fragment: str) -> list[str]:
    return [
        ln for ln in fragment.splitlines() if ln.startswith("| ") and "---" not in ln
    ]


@pytest.mark.parametrize("name", list(bp.PARTS))
def test_every_stored_row_appears_in_exactly_one_fragment(name):
    results = bp.parse(STORED[name], name)
    frags = bp.fragments(name, STORED[name])
    stored_rows = [row for _, rows in results.tables for row in rows]
    assert stored_rows, f"{name}.md has no table rows"
    for row in stored_rows:
        line = "| " + " | ".join(bp.typeset(c) for c in row) + " |"
        holders = [f for f, body in frags.items() if line in _table_rows(body)]
        assert len(holders) == 1, f"{row[0]!r} of {name}.md is in {holders}"
    # and no part of the page is left empty by the stored files
    empty = [f for f, body in frags.items() if "Not in the stored results" in body]
    assert not empty, f"{empty} found no rows in {name}.md"


def test_the_page_includes_every_fragment_and_nothing_else():
    included = set(
        re.findall(r"```\{include\} _generated/benchmarks/(\S+)", PAGE.read_text())
    )
    written = {f for name in bp.PARTS for f in bp.fragments(name, STORED[name])}
    assert included == written


def test_the_prose_quotes_no_measured_number():
    """Numbers change with every `make bench`; the page's own text must not repeat
    them."""
    prose = PAGE.read_text(encoding="utf-8")
    assert not re.search(r"\d(?:\.\d+)?(?:x|×)(?!\w)", prose), (
        "a ratio is typed into the page"
    )
    for name, text in STORED.items():
        for _, rows in bp.parse(text, name).tables:
            for row in rows:
                for cell in row[1:]:
                    for number in re.findall(r"\d+\.\d+|\d{1,3}(?:,\d{3})+", cell):
                        assert not re.search(
                            rf"(?<![\d.,]){re.escape(number)}(?![\d,]|\.\d)", prose
                        ), f"the page quotes {number} from {name}.md"


RESULTS_TEXT = """# Something (chapter 99)

torch 9.9, 1 thread(s), x86_64, 2 cores; full run.

| measurement | value | notes |
|---|---|---|
| **speed-up, batch 1** | **{ratio}x** | goal >= 1.3x |
| tokens/s | 1,234 | no goal |
"""


@pytest.mark.parametrize(
    "ratio, verdict", [("0.95", "**not met**"), ("1.31", "**met**")]
)
def test_goals_are_judged_from_the_stored_numbers(ratio, verdict):
    text = RESULTS_TEXT.format(ratio=ratio)
    rows = bp.parse(text).tables[0][1]
    (goal,) = bp.goals(rows)  # the row without a goal gives no line
    assert goal.startswith("Speed-up, batch 1:") and goal.endswith(verdict + ".")
    assert f"{float(ratio):g}×" in goal and "1.3×" in goal


def test_the_run_paragraph_and_a_measured_rate_are_kept():
    text = (
        RESULTS_TEXT.format(ratio="1.0")
        + "\nThis thread's peak (1024^3): 82 GFLOP/s.\n"
    )
    run = bp.fragments("other", text)["other-run.md"]
    assert "1 thread," in run and "thread(s)" not in run
    assert "$1024^{3}$): 82 GFLOP/s." in run


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("24 B T C^2 and (1024^3)", "24 B T C^2 and ($1024^{3}$)"),
        ("B=32, d_model=128", "$B = 32$, `d_model=128`"),
        ("torch.nn.Transformer, nn.Dropout", "`torch.nn.Transformer`, `nn.Dropout`"),
        ("GPT2LMHeadModel and AdamW", "`GPT2LMHeadModel` and AdamW"),
        ("(no_grad) x86_64, 2.13.0+cpu", "(`no_grad`) x86_64, 2.13.0+cpu"),
        ("**0.95x**; goal >= 2x; 16 x 128", "**0.95×**; goal ≥ 2×; 16 × 128"),
        ("`need_weights=True` stays", "`need_weights=True` stays"),
        ("2 threads; 1 thread(s); 2 thread(s)", "2 threads; 1 thread; 2 threads"),
    ],
)
def test_typeset(raw, shown):
    assert bp.typeset(raw) == shown


def test_a_single_letter_header_is_math():
    table = (["T", "ours"], [["32", "1.0x"]])
    assert bp.render_table(table, table[1]).splitlines()[0] == "| $T$ | ours |"


def test_a_file_without_a_table_is_refused():
    with pytest.raises(ValueError, match="broken.md has no markdown table"):
        bp.parse("# Title\n\nJust prose.\n", "broken.md")


def test_a_missing_table_says_so_instead_of_failing_the_build():
    one_table = STORED["attention"].split("## ")[0]  # the first table only
    frags = bp.fragments("attention", one_table)
    assert "Not in the stored results" in frags["attention-floor.md"]
    assert "| 32 |" in frags["attention-modules.md"]


def test_the_built_page_shows_every_stored_row():
    """On a build newer than the stored results, every row's cells are on the page."""
    newest = max(p.stat().st_mtime for p in [*bp.RESULTS.glob("*.md"), PAGE])
    if not BUILT.exists() or BUILT.stat().st_mtime < newest:
        pytest.skip("no book built since the results were stored; run `make book`")
    text = html.unescape(re.sub(r"<[^>]+>", " ", BUILT.read_text(encoding="utf-8")))
    text = " ".join(text.split())
    for name, stored in STORED.items():
        for _, rows in bp.parse(stored, name).tables:
            for row in rows:
                for number in re.findall(r"\d[\d,.]*\d|\d", " ".join(row[1:])):
                    assert number in text, (
                        f"{number} of {name}.md is not on the built page"
                    )
