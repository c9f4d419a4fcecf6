"""Build and grade the book's exercises with otter-grader, offline and without Docker.

Each chapter's exercises live in one *master* notebook,
``notebooks/exercises/NN_topic.ipynb``, written in otter-grader's assign format
(solutions and hidden tests inside, see ``notebooks/exercises/README.md``).

``assign`` turns every master into

* ``OUT/NN_topic/student/NN_topic.ipynb``: what learners get (no solutions, no
  hidden tests; public tests run with ``grader.check``), and
* ``OUT/NN_topic/autograder/``: the grader zip (public and hidden tests) and the
  reference solution notebook.

``grade`` runs every submitted notebook of a folder against its chapter's
autograder, each in its own process with a time limit, and writes one CSV
gradebook. A submission that raises is graded like any other (cells after the
error still run); one that runs past the limit scores zero with status
``timeout``; an unreadable file scores zero with status ``error``. The grader
itself never stops half way.

Usage::

    python -m tools.exercises assign --out _build/assignments
    python -m tools.exercises grade --assignments _build/assignments \\
        --submissions submissions --out submissions/gradebook.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
MASTERS = ROOT / "notebooks" / "exercises"
SOLUTION_TAG = "otter_assign_solution_cell"
ANSWER_TAG = "otter_answer_cell"
DEFAULT_TIMEOUT = 300


def _bin(name: str) -> str:
    """The executable next to this Python (the project's virtual environment)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def masters() -> list[Path]:
    """Every exercise master notebook, in chapter order."""
    return sorted(p for p in MASTERS.glob("[0-9][0-9]_*.ipynb"))


@dataclass
class Assignment:
    """The files ``otter assign`` produced for one chapter."""

    name: str
    root: Path

    @property
    def student(self) -> Path:
        return self.root / "student" / f"{self.name}.ipynb"

    @property
    def solution(self) -> Path:
        return self.root / "autograder" / f"{self.name}.ipynb"

    @property
    def autograder_zip(self) -> Path:
        zips = sorted((self.root / "autograder").glob("*-autograder_*.zip"))
        if not zips:
            raise FileNotFoundError(
                f"no autograder zip in {self.root / 'autograder'}; run `make assignments` first"
            )
        return zips[-1]

    def questions(self) -> dict[str, float]:
        """Question name -> points, from the autograder notebook's test metadata."""
        nb = nbformat.read(self.solution, as_version=4)
        tests = nb.metadata["otter"]["tests"]
        return {name: float(spec.get("points") or 0.0) for name, spec in tests.items()}


def assign(master: Path, out: Path) -> Assignment:
    """Run ``otter assign`` on one master notebook into ``out/NAME``."""
    master = Path(master).resolve()
    if not master.exists():
        raise FileNotFoundError(f"exercise notebook {master} does not exist")
    name = master.stem
    dest = Path(out).resolve() / name
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # otter assign executes nothing with --no-run-tests; the honesty of each grader is
    # proven by tests/test_exercises.py instead, which is faster and says more.
    proc = subprocess.run(
        [_bin("otter"), "assign", str(master), str(dest), "--no-pdfs", "--no-run-tests"],
        capture_output=True,
        text=True,
        cwd=master.parent,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"otter assign failed for {master.name}:\n{proc.stdout}\n{proc.stderr}")
    result = Assignment(name, dest)
    if not result.student.exists() or not result.solution.exists():
        raise RuntimeError(f"otter assign wrote no notebooks for {master.name} in {dest}")
    result.autograder_zip  # noqa: B018 - raises a clear error if the zip is missing
    return result


def assign_all(out: Path) -> list[Assignment]:
    return [assign(m, out) for m in masters()]


@dataclass
class Grade:
    """The result of grading one submission."""

    submission: str
    assignment: str
    status: str  # "ok", "timeout" or "error"
    scores: dict[str, float] = field(default_factory=dict)
    possible: dict[str, float] = field(default_factory=dict)
    message: str = ""

    @property
    def total(self) -> float:
        return sum(self.scores.values())

    @property
    def max_total(self) -> float:
        return sum(self.possible.values())


def grade(submission: Path, assignment: Assignment, timeout: float = DEFAULT_TIMEOUT) -> Grade:
    """Grade one notebook; never raises for a bad submission."""
    submission = Path(submission).resolve()
    possible = assignment.questions()
    zero = {q: 0.0 for q in possible}
    with tempfile.TemporaryDirectory(prefix="grade-") as tmp:
        # otter runs the notebook in its own folder; copy it so the submission stays untouched
        work = Path(tmp) / f"{assignment.name}.ipynb"
        shutil.copy(submission, work)
        try:
            proc = subprocess.run(
                [
                    _bin("otter"),
                    "run",
                    "-a",
                    str(assignment.autograder_zip),
                    "-o",
                    tmp,
                    "--no-logo",
                    str(work),
                ],
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=tmp,
                env={**os.environ, "MPLBACKEND": "Agg", "PYDEVD_DISABLE_FILE_VALIDATION": "1"},
            )
        except subprocess.TimeoutExpired:
            return Grade(
                submission.name,
                assignment.name,
                "timeout",
                zero,
                possible,
                f"did not finish within {timeout:.0f} s; scored zero",
            )
        results = Path(tmp) / "results.json"
        if not results.exists():
            tail = (proc.stdout + proc.stderr)[-500:]
            return Grade(submission.name, assignment.name, "error", zero, possible, tail)
        data = json.loads(results.read_text())
    scores = dict(zero)
    for test in data.get("tests", []):
        if test.get("name") in scores:
            scores[test["name"]] = float(test.get("score") or 0.0)
    return Grade(submission.name, assignment.name, "ok", scores, possible)


def identify(notebook: Path, names: list[str]) -> str | None:
    """Which assignment a submitted notebook belongs to: by otter metadata, then by file name."""
    try:
        nb = nbformat.read(notebook, as_version=4)
        name = nb.metadata.get("otter", {}).get("assignment_name")
        if name in names:
            return name
    except Exception:  # an unreadable notebook is matched by its name and graded as an error
        pass
    for name in names:
        if notebook.stem.startswith(name) or notebook.stem.startswith(name[:2] + "_"):
            return name
    return None


def grade_folder(
    submissions: Path, assignments: Path, out_csv: Path, timeout: float = DEFAULT_TIMEOUT, jobs=2
) -> list[Grade]:
    """Grade every ``*.ipynb`` under ``submissions`` into one CSV gradebook."""
    submissions, assignments = Path(submissions).resolve(), Path(assignments).resolve()
    if not submissions.is_dir():
        raise FileNotFoundError(f"submissions folder {submissions} does not exist")
    folders = sorted(p for p in assignments.glob("[0-9][0-9]_*") if p.is_dir())
    available = {p.name: Assignment(p.name, p) for p in folders}
    if not available:
        raise FileNotFoundError(f"no assignments in {assignments}; run `make assignments` first")
    notebooks = sorted(
        p for p in submissions.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
    )

    def one(nb: Path) -> Grade:
        name = identify(nb, list(available))
        if name is None:
            return Grade(nb.name, "?", "error", message="cannot tell which chapter this is")
        try:
            return grade(nb, available[name], timeout)
        except Exception as exc:  # keep grading the others
            return Grade(nb.name, name, "error", message=str(exc)[:500])

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        grades = list(pool.map(one, notebooks))
    write_gradebook(grades, out_csv)
    return grades


def write_gradebook(grades: list[Grade], out_csv: Path) -> None:
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with out_csv.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["submission", "assignment", "status", "score", "possible", "percent", "detail"])
        for g in grades:
            detail = "; ".join(f"{q}={g.scores.get(q, 0):g}/{p:g}" for q, p in g.possible.items())
            pct = 100 * g.total / g.max_total if g.max_total else 0.0
            w.writerow(
                [
                    g.submission,
                    g.assignment,
                    g.status,
                    f"{g.total:g}",
                    f"{g.max_total:g}",
                    f"{pct:.1f}",
                    detail + (f" ({g.message})" if g.message else ""),
                ]
            )


# ------------------------------------------------------------------- submissions for tests


def question_of_cells(nb: nbformat.NotebookNode) -> dict[int, str]:
    """Map the index of each answer/solution cell to the question it answers.

    Otter places a ``grader.check("name")`` cell after each question's answer.
    """
    owner: dict[int, str] = {}
    pending: list[int] = []
    for i, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "code" and (SOLUTION_TAG in tags or ANSWER_TAG in tags):
            pending.append(i)
        src = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        if cell.cell_type == "code" and src.startswith("grader.check("):
            name = src.split('"')[1]
            for j in pending:
                owner[j] = name
            pending = []
    return owner


def replace_answers(solution: Path, replacements: dict[str, str], dest: Path) -> Path:
    """Copy the reference solution with the answer cells of some questions replaced."""
    nb = nbformat.read(solution, as_version=4)
    owner = question_of_cells(nb)
    missing = set(replacements) - set(owner.values())
    if missing:
        raise KeyError(f"{solution.name} has no answer cell for {sorted(missing)}")
    done: set[str] = set()
    for i, q in owner.items():
        if q in replacements:
            nb.cells[i].source = replacements[q] if q not in done else ""
            done.add(q)
    nbformat.write(nb, dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("assign", help="write student notebooks and autograders")
    a.add_argument("--out", type=Path, default=ROOT / "_build" / "assignments")
    g = sub.add_parser("grade", help="grade a folder of submissions into a CSV gradebook")
    g.add_argument("--assignments", type=Path, default=ROOT / "_build" / "assignments")
    g.add_argument("--submissions", type=Path, required=True)
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    g.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    if args.cmd == "assign":
        for result in assign_all(args.out):
            print(f"{result.name}: {result.student.relative_to(args.out.resolve())}")
        print(f"Student notebooks and autograders are in {args.out}")
        return 0
    grades = grade_folder(args.submissions, args.assignments, args.out, args.timeout, args.jobs)
    for gr in grades:
        score = f"{gr.total:g}/{gr.max_total:g}"
        print(f"{gr.submission:40s} {gr.assignment:24s} {gr.status:8s} {score}")
    print(f"Gradebook: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
