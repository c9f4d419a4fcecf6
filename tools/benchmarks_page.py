"""Write the tables of the benchmarks appendix from the stored results.

``make bench`` stores its measurements in ``benchmarks/results/*.md``, one file per
benchmark script, each a paragraph about the run (library versions, threads,
machine, load) and one or more markdown tables. The appendix, ``book/benchmarks.md``,
explains each comparison in prose and includes the fragments this tool writes into
``book/_generated/benchmarks/``: the run paragraph and the tables, cut into the parts
the page discusses one at a time, typeset for a reader (``1024^3`` as math, ``0.95x``
as 0.95×, code names in code font) and followed by a list of which goals the stored
run met. ``make book`` runs this before every build, so the page always shows what is
stored, and its prose never has to repeat a number.

Usage: ``python -m tools.benchmarks_page`` (from the repository root).
"""

from __future__ import annotations

import argparse
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "book" / "_generated" / "benchmarks"


@dataclass(frozen=True)
class Part:
    """One table fragment of the page: rows of one stored table.

    Args:
        slug: the fragment's name, ``<results file>-<slug>.md``.
        table: which table of the results file (0 = the first).
        rows: a regular expression on a row's first cell; empty takes every row of
            the table that no earlier part with a pattern has taken.
    """

    slug: str
    table: int = 0
    rows: str = ""


# What the page discusses, per results file, in the order of the page's sections.
PARTS: dict[str, tuple[Part, ...]] = {
    "attention": (Part("modules", 0), Part("floor", 1)),
    "transformer": (
        Part("training", 0),
        Part("decoding", 0, r"KV cache"),
        Part("reversal", 0, r"reversal|time ratio"),
    ),
    "gpt": (Part("training", 0), Part("generation", 0, r"generation")),
    "llama": (Part("generation", 0, r"generation"), Part("norms", 0, r"RMSNorm")),
}

Table = tuple[list[str], list[list[str]]]  # header cells, rows of cells


@dataclass(frozen=True)
class Results:
    """A parsed results file: its title, its paragraph about the run, its tables."""

    title: str
    run: str
    tables: list[Table]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse(text: str, name: str = "results") -> Results:
    """Split a results file into title, run paragraph and tables.

    Raises:
        ValueError: if the file has no markdown table.
    """
    lines = text.splitlines()
    title = next((ln[2:].strip() for ln in lines if ln.startswith("# ")), name)
    paragraph: list[str] = []
    for line in lines:
        if line.startswith("#") and not paragraph:
            continue
        if not line.strip() or line.startswith(("|", "#")):
            if paragraph:
                break
            continue
        paragraph.append(line.strip())
    tables: list[Table] = []
    block: list[str] = []
    for line in [*lines, ""]:
        if line.lstrip().startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2 and set(block[1].replace("|", "").strip()) <= set("-: "):
            tables.append((_cells(block[0]), [_cells(b) for b in block[2:]]))
        block = []
    if not tables:
        raise ValueError(
            f"{name} has no markdown table: is it a file written by `make bench`?"
        )
    # A measured rate stated in the prose below the tables (the attention benchmark's
    # matrix-product peak) belongs with the run: the tables' percentages refer to it.
    prose = " ".join(
        ln.strip() for ln in lines if ln.strip() and not ln.startswith(("|", "#"))
    )
    known = " ".join(paragraph)
    sentences = re.split(r"(?<=\.)\s+(?=[A-Z])", prose)
    rates = [s for s in sentences if "GFLOP/s" in s and s not in known]
    return Results(title, " ".join([*paragraph, *rates]), tables)


# ------------------------------------------------------------------- typesetting
_PROTECTED = re.compile(r"(`[^`]*`|\$[^$]*\$)")
_KEEP_AS_WORDS = {"AdamW", "PyTorch", "CPUs", "GPUs"}


def _outside(text: str, fn: Callable[[str], str]) -> str:
    """Apply ``fn`` to the parts of ``text`` that are not code spans or math."""
    parts = _PROTECTED.split(text)
    return "".join(p if i % 2 else fn(p) for i, p in enumerate(parts))


def _code(match: re.Match) -> str:
    word = match.group(0)
    return word if word in _KEEP_AS_WORDS else f"`{word}`"


def typeset(text: str) -> str:
    """A cell or sentence of a results file as a reader should see it.

    ``1 thread(s)`` becomes ``1 thread``; ``B=32`` and ``1024^3`` become math;
    ``need_weights=False`` and dotted, CamelCase and snake_case names become code;
    ``>=`` becomes ≥ and a ratio ``0.95x`` becomes 0.95×.
    """
    text = re.sub(r"\b1 thread\(s\)", "1 thread", text)
    text = text.replace("thread(s)", "threads")
    steps: list[tuple[str, Callable[[re.Match], str] | str]] = [
        (r"\b([A-Z])=(\d+)\b", r"$\1 = \2$"),  # B=32
        (r"\b[A-Za-z_]\w*=[\w.]+", _code),  # need_weights=False, d_model=128
        (r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?:\(\))?", _code),  # torch.nn.Transformer
        # FastDropout
        (r"\b(?=[A-Za-z]\w*[a-z])(?=\w*[A-Z]\w*[A-Z])[A-Za-z]\w*", _code),
        (r"\b[a-z]+(?:_[a-z0-9]+)+\b", _code),  # no_grad
        (r"\b(\d+)\^(\d+)\b", r"$\1^{\2}$"),  # 1024^3
    ]
    for pattern, repl in steps:
        text = _outside(text, functools.partial(re.sub, pattern, repl))

    def symbols(s: str) -> str:
        s = s.replace(">=", "≥").replace("<=", "≤")
        s = re.sub(r"(\d) x (\d)", r"\1 × \2", s)
        return re.sub(r"(?<![\w.])(\d+(?:\.\d+)?)x\b", r"\1×", s)

    return _outside(text, symbols)


def _header(cell: str) -> str:
    return f"${cell}$" if re.fullmatch(r"[A-Za-z]", cell) else typeset(cell)


def render_table(table: Table, rows: list[list[str]]) -> str:
    """A markdown table of ``rows`` under the table's header, typeset."""
    header, _ = table
    lines = [
        "| " + " | ".join(_header(c) for c in header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(typeset(c) for c in row) + " |" for row in rows),
    ]
    return "\n".join(lines)


_GOAL = re.compile(r"goal\s*>=\s*(\d+(?:\.\d+)?)x", re.IGNORECASE)
_RATIO = re.compile(r"^\W*(\d+(?:\.\d+)?)x\W*$")


def goals(rows: list[list[str]]) -> list[str]:
    """One sentence per row that states a goal (``goal >= 1.3x``) and a ratio value."""
    out = []
    for row in rows:
        goal = next((m for c in row if (m := _GOAL.search(c))), None)
        ratio = _RATIO.match(row[1]) if len(row) > 1 else None
        if goal is None or ratio is None:
            continue
        met = float(ratio.group(1)) >= float(goal.group(1))
        label = typeset(row[0].replace("**", ""))
        label = label[:1].upper() + label[1:]
        out.append(
            f"{label}: {float(ratio.group(1)):g}× against a goal of "
            f"{float(goal.group(1)):g}×, {'**met**' if met else '**not met**'}."
        )
    return out


def split_rows(results: Results, parts: tuple[Part, ...]) -> dict[str, list[list[str]]]:
    """The rows of each part: a part with a pattern takes its rows first."""
    taken: dict[str, list[list[str]]] = {p.slug: [] for p in parts}
    for index, (_, rows) in enumerate(results.tables):
        mine = [p for p in parts if p.table == index]
        for row in rows:
            owner = next(
                (p for p in mine if p.rows and re.search(p.rows, row[0])), None
            )
            owner = owner or next((p for p in mine if not p.rows), None)
            if owner is not None:
                taken[owner.slug].append(row)
    return taken


def fragments(name: str, text: str) -> dict[str, str]:
    """The page fragments of one results file, by file name."""
    results = parse(text, f"benchmarks/results/{name}.md")
    parts = PARTS.get(name, (Part("table", 0),))
    out = {f"{name}-run.md": f"*The stored run:* {typeset(results.run)}\n"}
    for part, rows in split_rows(results, parts).items():
        spec = next(p for p in parts if p.slug == part)
        if not rows or spec.table >= len(results.tables):
            body = "*Not in the stored results: `make bench` writes this table.*"
        else:
            body = render_table(results.tables[spec.table], rows)
            met = goals(rows)
            if met:
                body += "\n\nIn the stored run:\n\n" + "\n".join(f"- {g}" for g in met)
        out[f"{name}-{part}.md"] = body + "\n"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    written = 0
    for name in PARTS:
        path = args.results / f"{name}.md"
        if not path.exists():
            raise SystemExit(f"{path} is missing: `make bench` writes it")
        for file, body in fragments(name, path.read_text(encoding="utf-8")).items():
            (args.out / file).write_text(body, encoding="utf-8")
            written += 1
    print(f"wrote {written} benchmark fragments into {args.out}")


if __name__ == "__main__":
    main()
