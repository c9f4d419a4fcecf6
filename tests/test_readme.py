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


COMMANDS = "<!-- readme-commands: training script"


def readme_training_commands() -> list[list[str]]:
    """The README's training commands, continuation lines joined, split into words."""
    text = README.read_text()
    start = text.index(COMMANDS)
    match = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert match, "the README's training section has no bash block after its marker"
    joined = match.group(1).replace("\\\n", " ")
    return [
        line.split()
        for line in joined.splitlines()
        if line and not line.startswith("#")
    ]


def test_readme_training_commands_parse(tmp_path: Path) -> None:
    from transformer.train import parse_args

    config_file = tmp_path / "run.json"
    config_file.write_text('{"d_model": 32, "steps": 10}')
    commands = readme_training_commands()
    assert len(commands) == 5
    assert sum(c[0] == "torchrun" for c in commands) == 2
    for words in commands:
        assert words[0] in ("python", "torchrun"), words
        flags = words[words.index("transformer.train") + 1 :]
        flags = [str(config_file) if w == "run.json" else w for w in flags]
        config = parse_args(flags)  # every flag exists and every value is valid
        assert config.out is not None and config.steps >= 10
