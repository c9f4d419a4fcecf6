"""Proof that every chapter's grader is honest.

For each exercise notebook in ``notebooks/exercises`` (one test class per
chapter, so ``pytest -n 2 --dist loadscope`` grades chapters in parallel):

* the student notebook holds no solution and no hidden test;
* points live in the hidden tests: public tests are worth 0, every test case is
  worth whole or half points, and every prompt states its contract;
* the reference solution scores full marks;
* the untouched student notebook scores zero on every question;
* every registered wrong answer (``tests/exercise_mutants``, at least two per
  question) loses at least half of its question, and leaves the other questions
  of its notebook at full marks;
* every registered alternative correct answer (float64, no in-place step,
  prints) keeps full marks and passes the public test too.

Every chapter's notebooks are graded in one call, so the grading server starts
once per run (under pytest-xdist, one worker grades while the other waits).
Chapter 1's grader also shows that a submission that raises, never finishes,
kills its own process or is not a notebook at all is scored, not a crash of the
grader.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

import filelock  # installed with torch
import nbformat
import pytest

from tools.exercises import (
    Assignment,
    Grade,
    assign,
    assign_many,
    grade,
    grade_folder,
    grade_many,
    masters,
    question_of_cells,
    read_test_file,
    replace_answers,
)

pytestmark = pytest.mark.exercises
MUTANTS = Path(__file__).parent / "exercise_mutants"
MIN_WRONG_ANSWERS = 2


def load_answers(name: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """``(WRONG_ANSWERS, ALTERNATIVES)`` of a chapter, question -> list of answer
    cells."""
    path = MUTANTS / f"{name}.py"
    if not path.exists():
        pytest.fail(f"{path} is missing: every exercise needs plausible wrong answers")
    spec = importlib.util.spec_from_file_location(f"mutants_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.WRONG_ANSWERS, getattr(module, "ALTERNATIVES", {})


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


def prompts(master: Path) -> dict[str, str]:
    """Question name -> the markdown prompt that follows its BEGIN QUESTION cell."""
    cells = nbformat.read(master, as_version=4).cells
    out = {}
    for i, cell in enumerate(cells):
        if cell.cell_type == "raw" and cell.source.startswith("# BEGIN QUESTION"):
            name = re.search(r"name:\s*(\S+)", cell.source).group(1)
            out[name] = (
                cells[i + 1].source if cells[i + 1].cell_type == "markdown" else ""
            )
    return out


def variants(answers: dict[str, list[str]]) -> list[dict[str, str]]:
    """Submission i answers every question with its i-th entry (questions are
    independent)."""
    n = max((len(v) for v in answers.values()), default=0)
    return [{q: v[i] for q, v in answers.items() if i < len(v)} for i in range(n)]


def is_half_multiple(x: float) -> bool:
    return abs(2 * x - round(2 * x)) < 1e-9


def _grade_to_json(g: Grade) -> dict:
    return dataclasses.asdict(g)


def _grade_book(root: Path) -> dict:
    """Assign every chapter and grade all its test notebooks in one grading server.

    Under pytest-xdist every worker asks for this; the first computes it under a file
    lock in the directory the workers share, the others read its result.
    """
    out = root / "exercise-grading"
    done = out / "graded.json"
    with filelock.FileLock(str(root / "exercise-grading.lock")):
        if done.exists():
            return json.loads(done.read_text())
        if out.exists():
            shutil.rmtree(out)
        assignments = assign_many(masters(), out / "assignments")
        (out / "submissions").mkdir(parents=True)
        jobs, slots = [], []
        for a in assignments:
            jobs += [(a.solution, a), (a.student, a)]
            slots += [(a.name, "reference", None), (a.name, "student", None)]
            wrong, alternatives = load_answers(a.name)
            for kind, answers in (("wrong", wrong), ("alt", alternatives)):
                for i, chosen in enumerate(variants(answers)):
                    path = out / "submissions" / f"{a.name}-{kind}{i}.ipynb"
                    jobs.append((replace_answers(a.solution, chosen, path), a))
                    slots.append((a.name, kind, chosen))
        book: dict = {
            a.name: {"root": str(a.root), "wrong": [], "alt": []} for a in assignments
        }
        for (name, kind, chosen), g in zip(slots, grade_many(jobs)):
            if chosen is None:
                book[name][kind] = _grade_to_json(g)
            else:
                book[name][kind].append([chosen, _grade_to_json(g)])
        done.write_text(json.dumps(book))
        return book


@pytest.fixture(scope="session")
def graded_book(tmp_path_factory) -> dict:
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return _grade_book(shared)


class ChapterGrader:
    """Tests shared by every chapter; subclasses set ``master``."""

    master: Path

    @pytest.fixture(scope="class")
    @classmethod
    def assignment(cls, graded_book) -> Assignment:
        return Assignment(cls.master.stem, Path(graded_book[cls.master.stem]["root"]))

    @pytest.fixture(scope="class")
    @classmethod
    def graded(cls, graded_book) -> dict:
        """Reference, student, wrong and alternative notebooks of this chapter,
        graded."""
        book = graded_book[cls.master.stem]
        return {
            "reference": Grade(**book["reference"]),
            "student": Grade(**book["student"]),
            "wrong": [(answers, Grade(**g)) for answers, g in book["wrong"]],
            "alt": [(answers, Grade(**g)) for answers, g in book["alt"]],
        }

    def test_student_notebook_has_no_solution_and_no_hidden_test(self, assignment):
        student_text = assignment.student.read_text()
        student = nbformat.read(assignment.student, as_version=4)
        assert (
            "BEGIN SOLUTION" not in student_text and "END SOLUTION" not in student_text
        )
        assert "hidden: true" not in student_text and "hidden=True" not in student_text
        for line in solution_lines(self.master):
            assert line not in student_text, (
                f"solution line leaked to students: {line!r}"
            )
        cases = assignment.cases()
        assert len(cases) >= 3, "each chapter needs at least three exercises"
        public_tests = student.metadata["otter"]["tests"]
        for q, qcases in cases.items():
            for case in qcases:
                if case.hidden:
                    assert case.name not in student_text, (
                        f"hidden test {case.name} of {q} leaked"
                    )
            assert q in public_tests
            _, public_cases = read_test_file(public_tests[q])
            assert public_cases and not any(c.hidden for c in public_cases)

    def test_points_sit_in_hidden_tests_in_whole_or_half_points(self, assignment):
        questions = assignment.questions()
        for q, qcases in assignment.cases().items():
            public = [c for c in qcases if not c.hidden]
            hidden = [c for c in qcases if c.hidden]
            assert public, f"{q} has no public test"
            assert hidden, f"{q} has no hidden test"
            assert all(c.points == 0 for c in public), (
                f"{q}: public tests must be worth 0 points"
            )
            assert all(is_half_multiple(c.points) and c.points > 0 for c in hidden), (
                f"{q}: every hidden test is worth a positive whole or half number of "
                "points"
            )
            assert sum(c.points for c in hidden) == questions[q] > 0, q

    def test_every_prompt_states_its_contract(self, assignment):
        texts = prompts(self.master)
        assert set(texts) == set(assignment.questions())
        for q, text in texts.items():
            assert "**Contract.**" in text, f"the prompt of {q} states no contract"

    def test_reference_solution_scores_full_marks(self, graded):
        result = graded["reference"]
        assert result.status == "ok", result.message
        assert result.scores == result.possible, result.scores
        assert result.total > 0
        for q, passed in result.passed.items():
            assert passed and all(passed), (
                f"the reference fails a test case of {q}: {passed}"
            )

    def test_untouched_student_notebook_scores_zero(self, graded):
        result = graded["student"]
        assert result.status == "ok", result.message
        assert result.total == 0, result.scores
        assert result.max_total > 0
        for q, passed in result.passed.items():
            assert not any(passed), (
                f"the `...` skeleton passes a test case of {q}: {passed}"
            )

    def test_every_question_has_wrong_answers_and_known_alternatives(self, assignment):
        wrong, alternatives = load_answers(assignment.name)
        questions = assignment.questions()
        assert set(wrong) == set(questions), (
            "wrong answers for every exercise, no others"
        )
        for q, answers in wrong.items():
            assert len(answers) >= MIN_WRONG_ANSWERS, (
                f"{q}: register at least {MIN_WRONG_ANSWERS} plausible wrong answers"
            )
        assert set(alternatives) <= set(questions), (
            "alternatives only for existing exercises"
        )

    def test_every_wrong_answer_loses_at_least_half(self, graded):
        assert graded["wrong"], "no wrong answers were graded"
        for i, (answers, result) in enumerate(graded["wrong"]):
            assert result.status == "ok", result.message
            for q, possible in result.possible.items():
                score = result.scores[q]
                assert is_half_multiple(score), (
                    f"{q} scored {score}: not a whole or half point"
                )
                if q in answers:
                    assert score <= possible / 2, (
                        f"wrong answer #{i + 1} to {q} kept "
                        f"{score}/{possible}:\n{answers[q]}"
                    )
                else:
                    assert score == possible, (
                        f"{q} lost points though only others changed"
                    )

    def test_alternative_correct_answers_keep_full_marks(self, graded):
        for i, (answers, result) in enumerate(graded["alt"]):
            assert result.status == "ok", result.message
            for q in answers:
                assert result.scores[q] == result.possible[q], (
                    f"correct alternative #{i + 1} to {q} scored "
                    f"{result.scores[q]}/{result.possible[q]}:\n{answers[q]}"
                )
                # the public test (worth 0) must not tell a correct learner otherwise
                assert all(result.passed[q]), (
                    f"correct alternative #{i + 1} to {q} fails a test case: "
                    f"{result.passed[q]}:\n{answers[q]}"
                )
            assert result.scores == result.possible


for _master in masters():
    _name = "TestExercises_" + _master.stem
    globals()[_name] = type(_name, (ChapterGrader,), {"master": _master})


class TestGraderRobustness:
    """Chapter 1's grader facing submissions that misbehave."""

    @pytest.fixture(scope="class")
    @classmethod
    def assignment(cls, tmp_path_factory) -> Assignment:
        master = next(m for m in masters() if m.stem.startswith("01_"))
        return assign(master, tmp_path_factory.mktemp("robust"))  # also proves assign()

    def test_folder_of_good_raising_dying_and_broken_submissions(
        self, assignment, tmp_path
    ):
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
        replace_answers(
            assignment.solution,
            {first_q: "import os\nos._exit(3)"},
            subs / "dave.ipynb",
        )
        out = tmp_path / "gradebook.csv"
        # relative paths, as `make grade SUBMISSIONS=dir` passes them
        rel = functools.partial(os.path.relpath, start=Path.cwd())
        grades = grade_folder(
            Path(rel(subs)), Path(rel(assignment.root.parent)), out, timeout=240
        )
        by_name = {g.submission: g for g in grades}
        carol_name = f"{assignment.name}_carol.ipynb"
        assert set(by_name) == {"alice.ipynb", "bob.ipynb", carol_name, "dave.ipynb"}
        assert by_name["alice.ipynb"].total == by_name["alice.ipynb"].max_total > 0
        bob = by_name["bob.ipynb"]
        assert bob.status == "ok" and bob.scores[first_q] == 0
        assert bob.total == bob.max_total - assignment.questions()[first_q]
        for name in (carol_name, "dave.ipynb"):
            g = by_name[name]
            assert g.status == "error" and g.total == 0 and g.max_total > 0, g
        rows = list(csv.DictReader(out.open()))
        assert len(rows) == 4
        assert {r["status"] for r in rows} == {"ok", "error"}
        assert (
            float(next(r for r in rows if r["submission"] == "alice.ipynb")["percent"])
            == 100
        )

    def test_submission_that_never_finishes_is_scored_zero(self, assignment, tmp_path):
        nb = nbformat.read(assignment.solution, as_version=4)
        nb.cells.insert(1, nbformat.v4.new_code_cell("import time\ntime.sleep(3600)"))
        path = tmp_path / "slow.ipynb"
        nbformat.write(nb, path)
        result = grade(path, assignment, timeout=8)
        assert result.status == "timeout"
        assert result.total == 0 and result.max_total > 0
        assert "8 s" in result.message


def test_every_master_has_questions_with_answer_cells():
    assert masters(), "no exercise notebooks found"
    for master in masters():
        nb = nbformat.read(master, as_version=4)
        config = nb.cells[0].source
        assert config.startswith("# ASSIGNMENT CONFIG"), master.name
        assert f"name: {master.stem}" in config, (
            f"{master.name}: assignment name must match file"
        )
        assert "ok_format: false" in config, (
            f"{master.name}: tests must be exception-based"
        )
        raw = [c.source for c in nb.cells if c.cell_type == "raw"]
        n_questions = sum(s.startswith("# BEGIN QUESTION") for s in raw)
        assert n_questions >= 3, (
            f"{master.name} has {n_questions} exercises; at least 3"
        )


def test_read_test_file_finds_points_and_cases():
    source = """from otter.test_files import test_case

OK_FORMAT = False

name = "q1"
points = 2

@test_case(points=0, hidden=False)
def test_public(f):
    assert f(1) == 2

@test_case(points=1.5, hidden=True)
def test_hidden(f):
    assert f(2) == 3
"""
    total, cases = read_test_file(source)
    assert total == 2.0
    assert [(c.name, c.points, c.hidden) for c in cases] == [
        ("test_public", 0.0, False),
        ("test_hidden", 1.5, True),
    ]
    assert cases[1].source.startswith("def test_hidden")


def test_replace_answers_rejects_unknown_questions(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "x = 1", metadata={"tags": ["otter_assign_solution_cell"]}
        ),
        nbformat.v4.new_code_cell('grader.check("q1")'),
    ]
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    assert question_of_cells(nbformat.read(path, as_version=4)) == {0: "q1"}
    with pytest.raises(KeyError, match="q9"):
        replace_answers(path, {"q9": "pass"}, tmp_path / "out.ipynb")
    replace_answers(path, {"q1": "x = 2"}, tmp_path / "out.ipynb")
    cell = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0]
    assert cell.source == "x = 2"
