"""The README's example runs as printed (with a shorter training budget here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
MARK = "<!-- readme-example: own data"


def example_source() -> str:
    text = README.read_text()
    start = text.index(MARK)
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert match, "the README's own-data example has no python block after its marker"
    return match.group(1)


def test_readme_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    source = example_source()
    assert "steps=300" in source  # the budget the README promises
    exec(compile(source.replace("steps=300", "steps=20"), "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("exact match on unseen strings: ")
    assert len(out) == 4  # three decoded strings follow
