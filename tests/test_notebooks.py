"""The chapter notebooks keep the book's reproducibility rules.

* test plumbing is invisible: nbval markers are cell tags, never ``# NBVAL_...``
  comments;
* every chapter seeds from ``transformer.utils.book_seed()`` (one knob, ``BOOK_SEED``);
* no assertion is about wall time (timings are printed; speed claims live in
  benchmarks/);
* a result stated in the prose is glued from the cell that computed it, never typed:
  percentages, speed-up factors and decimals in markdown must come through
  ``{glue:...}`` (or be mathematics, or code).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]

# Name parts that, inside an assert, mean the assertion is about how long something
# took.
TIME_WORDS = {
    "time",
    "times",
    "timing",
    "timings",
    "seconds",
    "secs",
    "sec",
    "elapsed",
    "ms",
    "wall",
    "speed",
    "speedup",
    "speedups",
    "throughput",
    "duration",
    "durations",
    "timer",
    "perf",
}


def names_in(node: ast.AST) -> set[str]:
    """Lower-case parts of every name, attribute and string key used in an
    expression."""
    parts: set[str] = set()
    for sub in ast.walk(node):
        text = None
        if isinstance(sub, ast.Name):
            text = sub.id
        elif isinstance(sub, ast.Attribute):
            text = sub.attr
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            text = sub.value if sub.value.isidentifier() else None
        if text:
            parts.update(p for p in re.split(r"_+", text.lower()) if p)
    return parts


def cells(path: Path, kind: str) -> list[dict]:
    nb = json.loads(path.read_text())
    return [c for c in nb["cells"] if c["cell_type"] == kind]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def python_of(cell: dict) -> str:
    # IPython magics and shell escapes are not Python
    return "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line
        for line in source(cell).splitlines()
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_nbval_markers_are_tags_not_comments(path):
    for cell in cells(path, "code"):
        assert "NBVAL_" not in source(cell), (
            f"{path.name}: use a cell tag (nbval-ignore-output, ...) instead of a "
            "comment:\n" + source(cell)[:200]
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_every_chapter_seeds_from_book_seed(path):
    code = "\n".join(source(c) for c in cells(path, "code"))
    assert "book_seed()" in code, (
        f"{path.name} never calls transformer.utils.book_seed()"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_assertion_on_wall_time(path):
    for cell in cells(path, "code"):
        tree = ast.parse(python_of(cell))
        for node in ast.walk(tree):
            if isinstance(node, ast.Assert):
                text = ast.unparse(node.test)
                assert not (names_in(node.test) & TIME_WORDS), (
                    f"{path.name}: an assertion about wall time fails on a busy or "
                    f"different machine; print the timing instead: assert {text}"
                )


_STRIP = [
    re.compile(r"\$\$.*?\$\$", re.DOTALL),  # display math
    re.compile(r"\\begin\{(\w+\*?)\}.*?\\end\{\1\}", re.DOTALL),  # amsmath environments
    re.compile(r"```.*?```", re.DOTALL),  # fenced code and directives
    re.compile(r"\$[^$\n]+\$"),  # inline math
    # roles: {glue:text}`k:.1%`, {cite:p}`x`, {doc}`y`
    re.compile(r"\{[\w:-]+\}`[^`]*`"),
    re.compile(r"`[^`\n]*`"),  # inline code
    re.compile(r"\]\([^)]*\)"),  # link targets
    re.compile(r"<[^>\n]+>"),  # html tags
    re.compile(r"^\s*:::.*$", re.MULTILINE),  # colon-fence directive lines
    re.compile(r"^\s*:[\w-]+:.*$", re.MULTILINE),  # directive options
    re.compile(r"^#+ .*$", re.MULTILINE),  # headings (section numbers)
    re.compile(r"\bFigure \d+\.\d+"),  # figure labels ("Figure 10.2"), not results
]
# A percentage, a speed-up factor ("5.3x") or a decimal number typed into the prose.
RESULT_NUMBER = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?\s?%|\d+(?:\.\d+)?\s?[x×](?![\w])|\d+\.\d+)"
)


def test_time_detector():
    assert (
        names_in(ast.parse("speedups[128] > speedups[16]").body[0].value) & TIME_WORDS
    )
    assert names_in(ast.parse("t['seconds'] < 3").body[0].value) & TIME_WORDS
    assert (
        not names_in(ast.parse("sentiment_logits.shape == (B, 2)").body[0].value)
        & TIME_WORDS
    )


def typed_numbers(markdown: str) -> list[str]:
    text = markdown
    for pattern in _STRIP:
        text = pattern.sub(" ", text)
    return RESULT_NUMBER.findall(text)


def test_typed_number_detector():
    assert typed_numbers("accuracy reached 99.2% and 5.3x faster, loss 0.011") == [
        "99.2%",
        "5.3x",
        "0.011",
    ]
    assert (
        typed_numbers("reached {glue:text}`acc:.1%` with $p = 0.1$ and `lr=1e-3`") == []
    )
    assert (
        typed_numbers("## 9.2 Training\nsee {cite:p}`vaswani2017` and figure 3") == []
    )
    assert typed_numbers("$$\\sigma = 0.5$$ and a 4x4 grid") == []
    assert typed_numbers("**Figure 10.2.** Loss 0.25 per token") == ["0.25"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_prose_numbers_are_glued(path):
    offenders = []
    for cell in cells(path, "markdown"):
        found = typed_numbers(source(cell))
        if found:
            offenders.append(f"{found} in: {source(cell)[:120]!r}")
    assert not offenders, (
        f"{path.name}: results in the prose must be glued from the cell that computed "
        "them ({glue:text}`name:.1%`), or written as math/code when they are not "
        "results:\n" + "\n".join(offenders)
    )
