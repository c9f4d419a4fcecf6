"""The package reads like the book: nothing is used before the chapter that introduces
it.

* every module of ``transformer`` is registered in ``CHAPTER_OF_MODULE``;
* a module imports only modules of its own or earlier chapters;
* notebook ``NN_topic`` (and its exercises) imports only modules of chapters <= NN;
* every chapter notebook is in the table of contents, and the table lists no missing
  file.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from transformer import CHAPTER_OF_MODULE

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "transformer"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXERCISES = sorted((ROOT / "notebooks" / "exercises").glob("[0-9][0-9]_*.ipynb"))


def imported_modules(source: str, relative_to_package: bool = False) -> set[str]:
    """Names X of ``transformer.X`` that ``source`` imports (absolute or relative)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "transformer" and len(parts) > 1:
                    found.add(parts[1])
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level and relative_to_package:
                if mod:
                    found.add(mod.split(".")[0])
                else:  # from . import x
                    found.update(a.name for a in node.names)
            elif mod == "transformer":
                found.update(a.name for a in node.names if a.name in CHAPTER_OF_MODULE)
            elif mod.startswith("transformer."):
                found.add(mod.split(".")[1])
    return found


def notebook_source(path: Path) -> str:
    nb = json.loads(path.read_text())
    lines = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        for line in "".join(cell["source"]).splitlines():
            # IPython magics and shell escapes are not Python
            lines.append("" if line.lstrip().startswith(("%", "!")) else line)
    return "\n".join(lines)


def test_every_module_has_a_chapter():
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert modules <= set(CHAPTER_OF_MODULE), modules - set(CHAPTER_OF_MODULE)


@pytest.mark.parametrize("module", sorted(p.stem for p in PACKAGE.glob("[a-z]*.py")))
def test_module_imports_only_earlier_chapters(module):
    chapter = CHAPTER_OF_MODULE[module]
    source = (PACKAGE / f"{module}.py").read_text()
    for dep in imported_modules(source, relative_to_package=True):
        assert dep in CHAPTER_OF_MODULE, f"{module} imports unknown module {dep}"
        assert CHAPTER_OF_MODULE[dep] <= chapter, (
            f"transformer.{module} (chapter {chapter}) imports transformer.{dep} "
            f"(chapter {CHAPTER_OF_MODULE[dep]}), which the reader has not met yet"
        )


@pytest.mark.parametrize(
    "path", NOTEBOOKS + EXERCISES, ids=lambda p: p.parent.name + "/" + p.name
)
def test_notebook_imports_only_chapters_up_to_its_own(path):
    chapter = int(path.name[:2])
    for dep in imported_modules(notebook_source(path)):
        assert dep in CHAPTER_OF_MODULE, (
            f"{path.name} imports unknown module transformer.{dep}"
        )
        assert CHAPTER_OF_MODULE[dep] <= chapter, (
            f"{path.name} imports transformer.{dep}, introduced in chapter "
            f"{CHAPTER_OF_MODULE[dep]}"
        )


def test_checker_catches_a_forward_import():
    src = "from transformer.model import Transformer\nimport transformer.masks as m\n"
    assert imported_modules(src) == {"model", "masks"}
    assert imported_modules("from .attention import x", relative_to_package=True) == {
        "attention"
    }


# Pages that `make book` writes before each build (and git ignores), with their writer.
GENERATED_PAGES = {
    "book/flashcards": ROOT / "tools" / "flashcards.py",
    "book/api": ROOT / "tools" / "api_reference.py",
}


def test_table_of_contents_matches_the_notebooks():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [
        c["file"] for part in toc["parts"] for c in part["chapters"]
    ]
    for f in files:
        if f in GENERATED_PAGES:
            assert GENERATED_PAGES[f].exists(), (
                f"{f} is generated, but its writer is missing"
            )
            continue
        stem = ROOT / f
        exists = [
            p
            for p in (stem.with_suffix(".md"), stem.with_suffix(".ipynb"))
            if p.exists()
        ]
        assert len(exists) == 1, (
            f"_toc.yml lists {f}, which needs exactly one .md or .ipynb"
        )
    listed = {f for f in files if f.startswith("notebooks/")}
    for nb in NOTEBOOKS:
        assert f"notebooks/{nb.stem}" in listed, f"{nb.name} is not in _toc.yml"
    chapters = [
        int(re.match(r"notebooks/(\d\d)_", f).group(1)) for f in files if f in listed
    ]
    assert chapters == sorted(chapters), "chapters must appear in reading order"


#: "About 450 lines": a module a reader can hold in mind, with room for docstrings.
MAX_MODULE_LINES = 500


@pytest.mark.parametrize("module", sorted(p.stem for p in PACKAGE.glob("[a-z]*.py")))
def test_module_is_short_enough_to_read(module):
    lines = (PACKAGE / f"{module}.py").read_text().count("\n")
    assert lines <= MAX_MODULE_LINES, (
        f"transformer/{module}.py has {lines} lines; split it by concept "
        f"(at most {MAX_MODULE_LINES})"
    )


def test_teaching_modules_never_import_the_fast_paths():
    for path in PACKAGE.glob("[a-z]*.py"):
        if path.stem == "fast":
            continue
        deps = imported_modules(path.read_text(), relative_to_package=True)
        assert "fast" not in deps, f"{path.name} imports transformer.fast"
