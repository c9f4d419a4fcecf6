"""The helper that prints the package's source on the page that teaches it."""

from __future__ import annotations

import ast

import pytest
import torch

from transformer.source import WIDTH, fit_column, show, source


def _sample(a: int, b: int = 2) -> int:
    """A docstring the page leaves out.

    It has two paragraphs.
    """
    total = a + b  # first marker
    total = total * 2
    return total  # last marker


class _Sample:
    """Class docstring."""

    def method(self, x: float) -> float:
        """Method docstring."""
        return x + 1.0


def test_signature_kept_and_docstring_left_out():
    text = source(_sample)
    assert text.splitlines()[0] == "def _sample(a: int, b: int = 2) -> int:"
    assert "docstring" not in text and "paragraphs" not in text
    assert text.splitlines()[-1].strip() == "return total  # last marker"
    ast.parse(text)  # still valid Python


def test_line_range_marks_what_is_skipped():
    text = source(_sample, first="total * 2", last="return total")
    lines = text.splitlines()
    assert lines[0].startswith("def _sample(")
    assert lines[1] == "    ..."
    assert lines[2].strip() == "total = total * 2"
    assert len(lines) == 4
    # starting at the first body line skips nothing, so no ellipsis
    assert "..." not in source(_sample, first="first marker", last="first marker")
    last_line = source(_sample, last="first marker").splitlines()[-1]
    assert last_line.endswith("first marker")


def test_methods_and_classes():
    text = source(_Sample.method)
    assert text.splitlines()[0] == "def method(self, x: float) -> float:"
    assert "Method docstring" not in text and "return x + 1.0" in text
    text = source(_Sample)
    assert "Class docstring" not in text and "def method" in text


def test_package_objects_fit_the_column():
    from transformer.attention import scaled_dot_product_attention
    from transformer.seq2seq import Seq2Seq

    for obj in (scaled_dot_product_attention, Seq2Seq.forward):
        text = source(obj)
        assert max(map(len, text.splitlines())) <= WIDTH
        assert ast.parse(textwrap_body(text)) is not None


def textwrap_body(text: str) -> str:
    return text.replace("\n    ...\n", "\n    pass\n")


def test_show_prints_the_source(capsys):
    show(_sample, first="total * 2")
    out = capsys.readouterr().out
    assert "total = total * 2" in out and "first marker" not in out


def test_fit_column_breaks_after_a_comma_inside_brackets():
    args = ", ".join(f"argument_{i}" for i in range(12))
    line = "    result = function_name(" + args + ")"
    assert len(line) > WIDTH
    pieces = fit_column(line)
    assert len(pieces) > 1 and all(len(p) <= WIDTH for p in pieces)
    joined = "".join(p.strip() + (" " if p.endswith(",") else "") for p in pieces)
    assert joined == line.strip()
    assert pieces[1].startswith(" " * 8)  # continuation indented four more
    ast.parse("\n".join(p[4:] if i == 0 else p for i, p in enumerate(pieces)).strip())


def test_fit_column_never_breaks_inside_a_string_or_outside_brackets():
    inside = "x = f('" + "a, " * 40 + "')"
    assert fit_column(inside) == [inside]
    bare = ", ".join(f"name_{i}" for i in range(20)) + " = values"
    assert fit_column(bare) == [bare]
    assert fit_column("short, line") == ["short, line"]


def test_a_line_that_cannot_fit_is_refused(tmp_path, monkeypatch):
    words = " ".join(["word"] * 25)  # a string literal: nowhere to break it
    module = f'def long_line():\n    return "{words}"\n'
    (tmp_path / "long_module.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    import long_module

    with pytest.raises(ValueError, match="characters"):
        source(long_module.long_line)
    assert "return" in source(long_module.long_line, width=200)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="first marker 'no such line'"):
        source(_sample, first="no such line")
    with pytest.raises(ValueError, match="last marker"):
        source(_sample, first="total * 2", last="first marker")  # last before first
    with pytest.raises(TypeError, match="no source"):
        source(len)
    with pytest.raises(TypeError, match="no source"):
        source(torch.zeros(2))


def test_a_long_trailing_comment_moves_above_the_code():
    code = "    value = compute(first_argument, second_argument)"
    line = code + "  # " + "a comment that makes the line far too long " * 2
    assert len(code) <= WIDTH < len(line)
    pieces = fit_column(line)
    assert pieces == ["    " + line[len(code) + 2 :], code]
    # a '#' inside a string is not a comment
    text = "    s = f('" + "#" * 90 + "', x)"
    assert fit_column(text)[0].startswith("    s = f(")


def test_formatter_pragmas_are_left_out(tmp_path, monkeypatch):
    module = (
        "def kept_wide(a, b):\n"
        "    total = (\n"
        "        a + b\n"
        "    )  # fmt: skip\n"
        "    return total  # the sum # fmt: skip\n"
    )
    (tmp_path / "pragma_module.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    import pragma_module

    shown = source(pragma_module.kept_wide)
    assert "fmt: skip" not in shown
    assert "    )" in shown.splitlines() and "    return total  # the sum" in shown
