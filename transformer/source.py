"""Print the package's own code on the page that teaches it.

The book promises that nothing it relies on is hidden in a helper the reader has not
met. When a chapter uses a function or class of the package, it shows the source
with :func:`show`: the signature, optionally only the lines from one marker to
another, without the docstring (the prose around the cell explains instead), and
with long lines broken after a comma so that they fit the book's column of
:data:`WIDTH` characters.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Any

#: The width of the book's code column, in characters.
WIDTH = 88


def _cut_points(line: str, width: int, depth: int = 0) -> list[tuple[int, int]]:
    """Where a line may be broken: just after a ``", "`` inside brackets, outside
    strings and comments, within ``width``; each with the bracket depth there."""
    cuts: list[tuple[int, int]] = []
    quote = ""
    for i, ch in enumerate(line[:width]):
        if quote:
            if ch == quote and line[i - 1] != "\\":
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            break  # a comment: never break inside it
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth > 0 and line[i + 1 : i + 2] == " ":
            cuts.append((i + 1, depth))
    return cuts


def _split_comment(line: str) -> tuple[str, str]:
    """A line's code and its trailing ``# comment`` (empty if none), found outside
    strings; the code loses its trailing spaces."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote and line[i - 1] != "\\":
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            return line[:i].rstrip(), line[i:]
    return line, ""


def fit_column(line: str, width: int = WIDTH, depth: int = 0) -> list[str]:
    """Break a line of code that is too long after a comma inside brackets.

    A trailing comment that makes the line too long moves to a line of its own above
    the code. Otherwise the pieces are the same code (Python continues a line inside
    brackets), the continuation indented four spaces more. A line with no such comma
    comes back whole, even if it is too long; :func:`source` refuses to show it.

    Args:
        line: one line of code.
        width: the most characters a piece may have.
        depth: how many brackets are open where the line starts.
    """
    if len(line) <= width:
        return [line]
    code, comment = _split_comment(line)
    if comment and len(code) <= width:  # the comment moves to a line of its own above
        indent = " " * (len(line) - len(line.lstrip()))
        return [indent + comment, code]
    cuts = _cut_points(line, width, depth)
    if not cuts:
        return [line]
    cut, open_brackets = cuts[-1]
    indent = " " * (len(line) - len(line.lstrip()) + 4)
    return [line[:cut], *fit_column(indent + line[cut:].lstrip(), width, open_brackets)]


def _docstring_lines(lines: list[str]) -> range:
    """The 0-based line indices of the object's own docstring (empty if none)."""
    tree = ast.parse("\n".join(lines))
    node = tree.body[0] if tree.body else None
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return range(0)
    first = node.body[0] if node.body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        end = first.end_lineno if first.end_lineno is not None else first.lineno
        return range(first.lineno - 1, end)
    return range(0)


def _find(lines: list[str], marker: str, after: int, what: str, name: str) -> int:
    for i in range(after, len(lines)):
        if marker in lines[i]:
            return i
    raise ValueError(f"{what} marker {marker!r} is not in the source of {name}")


def source(
    obj: Any,
    first: str | None = None,
    last: str | None = None,
    width: int = WIDTH,
) -> str:
    """The source of a function, method or class as the book prints it.

    The signature comes first (every line up to the one that ends with ``:``), the
    docstring and ``# fmt: skip`` pragmas are left out, and when ``first`` or
    ``last`` is given only the lines from the first one containing ``first`` to the
    first one after it containing ``last`` are kept, an ``...`` line marking what
    was skipped after the signature.

    Args:
        obj: a function, method or class defined in a source file.
        first: text of the first line to show; ``None`` starts after the docstring.
        last: text of the last line to show; ``None`` runs to the end.
        width: the column width every printed line must fit.

    Raises:
        TypeError: ``obj`` has no source code (a built-in, an instance).
        ValueError: a marker is not found, or a line cannot be broken to fit.
    """
    name = getattr(obj, "__qualname__", repr(obj))
    try:
        raw = inspect.getsource(obj)
    except (TypeError, OSError) as err:
        raise TypeError(f"cannot show {name}: it has no source code ({err})") from None
    lines = textwrap.dedent(raw).splitlines()
    # a formatter's pragma says nothing about what the code does
    pragma = "# fmt: skip"
    lines = [s.removesuffix(pragma).rstrip() for s in lines]
    doc = _docstring_lines(lines)
    code = [s.split("#")[0].rstrip() for s in lines]  # comments off
    n_header = next(i for i, s in enumerate(code) if s.endswith(":"))
    header = lines[: n_header + 1]
    body_start = doc.stop if len(doc) else n_header + 1
    start = _find(lines, first, body_start, "first", name) if first else body_start
    end = _find(lines, last, start, "last", name) + 1 if last else len(lines)
    skipped = any(s.strip() for s in lines[body_start:start])
    shown = header + (["    ..."] if skipped else []) + lines[start:end]
    shown = [part for line in shown for part in fit_column(line, width)]
    too_long = [s for s in shown if len(s) > width]
    if too_long:
        raise ValueError(
            f"a line of {name} has {len(too_long[0])} characters and no comma to break "
            f"it at to fit {width}: {too_long[0].strip()[:40]!r}..."
        )
    return "\n".join(shown)


def show(obj: Any, first: str | None = None, last: str | None = None) -> None:
    """Print :func:`source` of ``obj``: the package's code, on the page that uses it.

    Args:
        obj: a function, method or class of the package.
        first: text of the first line to show (after the signature).
        last: text of the last line to show.
    """
    print(source(obj, first, last))
