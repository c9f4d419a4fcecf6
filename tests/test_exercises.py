"""Proof that every chapter's grader is honest.

For each exercise notebook in ``notebooks/exercises`` (one test class per
chapter, so ``pytest -n 2 --dist loadscope`` grades chapters in parallel):

* the student notebook holds no solution and no hidden test;
* the reference solution scores full marks;
* the untouched student notebook scores zero on every question;
* a plausible wrong answer to each question (``tests/exercise_mutants``) loses
  points.

Chapter 1's grader also shows that a submission that raises, never finishes or
is not a notebook at all is scored, not a crash of the grader.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from tools.exercises import (
    Assignment,
    assign,
    grade,
    grade_folder,
    masters,
    question_of_cells,
    replace_answers,
)

pytestmark = pytest.mark.exercises
MUTANTS = Path(__file__).parent / "exercise_mutants"


def load_mutants(name: str) -> dict[str, str]:
    path = MUTANTS / f"{name}.py"
    if not path.exists():
        pytest.fail(f"{path} is missing: every exercise needs a plausible wrong answer")
    spec = importlib.util.spec_from_file_location(f"mutants_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.WRONG_ANSWERS


def solution_lines(master: Path) -> list[str]:
    """The lines between BEGIN/END SOLUTION markers of the master's solution cells."""
    nb = nbformat.read(master, as_version=4)
    lines, inside = [], False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for line in cell.source.splitlines():
            s = line.strip()
            if s.startswith("# BEGIN SOLUTION"):
                inside = True
            elif s.startswith("# END SOLUTION"):
                inside = False
            elif inside and s and s not in ("...", "pass") and not s.startswith("#"):
                lines.append(s)
            elif s.endswith("# SOLUTION"):
                lines.append(s.removesuffix("# SOLUTION").strip())
    return lines


class ChapterGrader:
    """Tests shared by every chapter; subclasses set ``master``."""

    master: Path

    @pytest.fixture(scope="class")
    @classmethod
    def assignment(cls, tmp_path_factory) -> Assignment:
        return assign(cls.master, tmp_path_factory.mktemp(cls.master.stem))

    def test_student_notebook_has_no_solution_and_no_hidden_test(self, assignment):
        student_text = assignment.student.read_text()
        student = nbformat.read(assignment.student, as_version=4)
        assert "BEGIN SOLUTION" not in student_text and "END SOLUTION" not in student_text
        assert "hidden: true" not in student_text
        for line in solution_lines(self.master):
            assert line not in student_text, f"solution line leaked to students: {line!r}"
        solution_tests = nbformat.read(assignment.solution, as_version=4).metadata["otter"]["tests"]
        public_tests = student.metadata["otter"]["tests"]
        assert len(solution_tests) >= 3, "each chapter needs at least three exercises"
        for q, spec in solution_tests.items():
            cases = [c for suite in spec["suites"] for c in suite["cases"]]
            hidden = [c["code"] for c in cases if c["hidden"]]
            assert hidden, f"{q} has no hidden test"
            assert any(not c["hidden"] for c in cases), f"{q} has no public test"
            for code in hidden:
                body = re.sub(r"^>>> |^\.\.\. ", "", code, flags=re.M).strip()
                assert body not in student_text, f"hidden test of {q} leaked"
            assert q in public_tests
            assert all(not c["hidden"] for s in public_tests[q]["suites"] for c in s["cases"])

    def test_reference_solution_scores_full_marks(self, assignment):
        result = grade(assignment.solution, assignment)
        assert result.status == "ok", result.message
        assert result.scores == result.possible, result.scores
        assert result.total > 0

    def test_untouched_student_notebook_scores_zero(self, assignment):
        result = grade(assignment.student, assignment)
        assert result.status == "ok", result.message
        assert result.total == 0, result.scores
        assert result.max_total > 0

    def test_every_wrong_answer_loses_points(self, assignment, tmp_path):
        wrong = load_mutants(assignment.name)
        questions = assignment.questions()
        assert set(wrong) == set(questions), "one wrong answer per exercise, no more, no less"
        submission = replace_answers(assignment.solution, wrong, tmp_path / "wrong.ipynb")
        result = grade(submission, assignment)
        assert result.status == "ok", result.message
        for q, possible in questions.items():
            assert result.scores[q] < possible, f"the wrong answer to {q} kept full marks"


for _master in masters():
    _name = "TestExercises_" + _master.stem
    globals()[_name] = type(_name, (ChapterGrader,), {"master": _master})


class TestGraderRobustness:
    """Chapter 1's grader facing submissions that misbehave."""

    @pytest.fixture(scope="class")
    @classmethod
    def assignment(cls, tmp_path_factory) -> Assignment:
        master = next(m for m in masters() if m.stem.startswith("01_"))
        return assign(master, tmp_path_factory.mktemp("robust"))

    def test_folder_of_good_raising_and_broken_submissions(self, assignment, tmp_path):
        subs = tmp_path / "subs"
        subs.mkdir()
        shutil.copy(assignment.solution, subs / "alice.ipynb")
        first_q = next(iter(assignment.questions()))
        replace_answers(
            assignment.solution,
            {first_q: 'raise RuntimeError("I gave up")'},
            subs / "bob.ipynb",
        )
        (subs / f"{assignment.name}_carol.ipynb").write_text("this is not a notebook")
        out = tmp_path / "gradebook.csv"
        # relative paths, as `make grade SUBMISSIONS=dir` passes them
        rel = functools.partial(os.path.relpath, start=Path.cwd())
        grades = grade_folder(Path(rel(subs)), Path(rel(assignment.root.parent)), out, timeout=240)
        by_name = {g.submission: g for g in grades}
        assert set(by_name) == {"alice.ipynb", "bob.ipynb", f"{assignment.name}_carol.ipynb"}
        assert by_name["alice.ipynb"].total == by_name["alice.ipynb"].max_total > 0
        bob = by_name["bob.ipynb"]
        assert bob.status == "ok" and bob.scores[first_q] == 0
        assert bob.total == bob.max_total - assignment.questions()[first_q]
        carol = by_name[f"{assignment.name}_carol.ipynb"]
        assert carol.status == "error" and carol.total == 0
        rows = list(csv.DictReader(out.open()))
        assert len(rows) == 3
        assert {r["status"] for r in rows} == {"ok", "error"}
        assert float(next(r for r in rows if r["submission"] == "alice.ipynb")["percent"]) == 100

    def test_submission_that_never_finishes_is_scored_zero(self, assignment, tmp_path):
        nb = nbformat.read(assignment.solution, as_version=4)
        nb.cells.insert(1, nbformat.v4.new_code_cell("import time\ntime.sleep(3600)"))
        path = tmp_path / "slow.ipynb"
        nbformat.write(nb, path)
        result = grade(path, assignment, timeout=10)
        assert result.status == "timeout"
        assert result.total == 0 and result.max_total > 0
        assert "10 s" in result.message


def test_every_master_has_questions_with_answer_cells():
    assert masters(), "no exercise notebooks found"
    for master in masters():
        nb = nbformat.read(master, as_version=4)
        config = nb.cells[0].source
        assert config.startswith("# ASSIGNMENT CONFIG"), master.name
        assert f"name: {master.stem}" in config, f"{master.name}: assignment name must match file"
        raw = [c.source for c in nb.cells if c.cell_type == "raw"]
        n_questions = sum(s.startswith("# BEGIN QUESTION") for s in raw)
        assert n_questions >= 3, f"{master.name} has {n_questions} exercises; at least 3"


def test_replace_answers_rejects_unknown_questions(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["otter_assign_solution_cell"]}),
        nbformat.v4.new_code_cell('grader.check("q1")'),
    ]
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    assert question_of_cells(nbformat.read(path, as_version=4)) == {0: "q1"}
    with pytest.raises(KeyError, match="q9"):
        replace_answers(path, {"q9": "pass"}, tmp_path / "out.ipynb")
    replace_answers(path, {"q1": "x = 2"}, tmp_path / "out.ipynb")
    cell = json.loads((tmp_path / "out.ipynb").read_text())["cells"][0]
    assert "".join(cell["source"]) == "x = 2"
