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
autograder tests and writes one CSV gradebook. Each submission runs in its own
process with a time limit. A submission that raises is graded like any other
(cells after the error still run); one that runs past the limit scores zero with
status ``timeout``; an unreadable file, or one that kills its own process,
scores zero with status ``error``. The grader itself never stops half way.

How a submission is graded. ``otter run`` would start a fresh interpreter, a
Jupyter kernel inside it and import otter, nbformat and torch in both: about 13 s
of CPU per submission, almost all of it start-up. Here one *grading server*
process imports those once, then forks a child per submission. The child runs
the notebook's code cells in order in an IPython shell (magics work, errors are
reported and the next cell runs) with otter in grading mode, exactly as otter's
kernel would: each ``grader.check`` runs the question's full test file (public
and hidden cases) at that point of the notebook, and a question never checked is
tested after the last cell. Scores are otter's own (``TestFile.score``: the
per-case ``points`` of the test file). The server always runs in a fresh
interpreter of its own, so forking is safe wherever ``grade`` is called from.

Usage::

    python -m tools.exercises assign --out _build/assignments
    python -m tools.exercises grade --assignments _build/assignments \\
        --submissions submissions --out submissions/gradebook.csv
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MASTERS = ROOT / "notebooks" / "exercises"
SOLUTION_TAG = "otter_assign_solution_cell"
ANSWER_TAG = "otter_answer_cell"
IGNORE_TAG = "otter_ignore"
DEFAULT_TIMEOUT = 120


def _skip_slow_validator() -> None:
    """Keep jsonschema from importing ``rfc3987_syntax`` (2.5 s of CPU per interpreter).

    nbformat imports jsonschema, whose format checker builds a full IRI grammar at
    import time if the optional ``rfc3987_syntax`` package is installed. Notebook
    schemas never use that format, so an interpreter of ours tells Python the
    package is absent. It must run before anything imports jsonschema.
    """
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


_skip_slow_validator()

import nbformat  # noqa: E402 - after the validator is skipped


def default_jobs() -> int:
    """How many submissions to grade at once: one per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def masters() -> list[Path]:
    """Every exercise master notebook, in chapter order."""
    return sorted(p for p in MASTERS.glob("[0-9][0-9]_*.ipynb"))


# ------------------------------------------------------------------ test files as data


@dataclass(frozen=True)
class Case:
    """One test case of a question, read from its exception-based test file."""

    name: str
    points: float
    hidden: bool
    source: str


def read_test_file(source: str) -> tuple[float | None, list[Case]]:
    """The question points and the cases of an otter exception-based test file.

    Reads the file's syntax only (nothing is executed): ``points = ...`` and every
    function decorated with ``@test_case(points=..., hidden=...)``.
    """
    tree = ast.parse(source)
    total = None
    cases = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "points" for t in node.targets
        ):
            total = ast.literal_eval(node.value)
        if isinstance(node, ast.FunctionDef):
            for dec in node.decorator_list:
                if (
                    isinstance(dec, ast.Call)
                    and getattr(dec.func, "id", "") == "test_case"
                ):
                    kw = {k.arg: ast.literal_eval(k.value) for k in dec.keywords}
                    cases.append(
                        Case(
                            node.name,
                            float(kw.get("points") or 0.0),
                            bool(kw.get("hidden", False)),
                            ast.get_source_segment(source, node) or "",
                        )
                    )
    return (None if total is None else float(total)), cases


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
                f"no autograder zip in {self.root / 'autograder'}; run `make "
                "assignments` first"
            )
        return zips[-1]

    def test_files(self) -> dict[str, str]:
        """Question name -> source of its test file (public and hidden cases), from the
        zip."""
        with zipfile.ZipFile(self.autograder_zip) as z:
            return {
                Path(n).stem: z.read(n).decode()
                for n in sorted(z.namelist())
                if n.startswith("tests/") and n.endswith(".py")
            }

    def cases(self) -> dict[str, list[Case]]:
        return {q: read_test_file(src)[1] for q, src in self.test_files().items()}

    def questions(self) -> dict[str, float]:
        """Question name -> points, from the autograder's test files."""
        out = {}
        for q, src in self.test_files().items():
            total, cases = read_test_file(src)
            out[q] = total if total is not None else sum(c.points for c in cases)
        return out


def assign(master: Path, out: Path) -> Assignment:
    """Run ``otter assign`` on one master notebook into ``out/NAME``."""
    return assign_many([master], out)[0]


def assign_many(master_paths: list[Path], out: Path) -> list[Assignment]:
    """Run ``otter assign`` on several masters in one interpreter (otter loads once)."""
    out = Path(out).resolve()
    jobs = []
    for master in master_paths:
        master = Path(master).resolve()
        if not master.exists():
            raise FileNotFoundError(f"exercise notebook {master} does not exist")
        jobs.append([str(master), str(out / master.stem)])
    # otter assign executes nothing with --no-run-tests; the honesty of each grader is
    # proven by tests/test_exercises.py instead, which is faster and says more.
    proc = subprocess.run(
        [sys.executable, "-m", "tools.exercises", "_assign"],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"otter assign failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    results = []
    for master, dest in jobs:
        result = Assignment(Path(master).stem, Path(dest))
        if not result.student.exists() or not result.solution.exists():
            raise RuntimeError(
                f"otter assign wrote no notebooks for {master} in {dest}"
            )
        result.autograder_zip  # noqa: B018 - raises a clear error if the zip is missing
        results.append(result)
    return results


def assign_all(out: Path) -> list[Assignment]:
    return assign_many(masters(), out)


def _assign_server() -> int:
    """Child process of ``assign_many``: run otter assign for each (master, dest) on
    stdin."""
    import logging

    from otter.assign import main as otter_assign

    logging.disable(logging.WARNING)  # otter warns about every raw cell it passes over
    for master, dest in json.load(sys.stdin):
        if Path(dest).exists():
            shutil.rmtree(dest)
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        otter_assign(master, dest, no_pdfs=True, no_run_tests=True)
    return 0


# ----------------------------------------------------------------------------- grading


@dataclass
class Grade:
    """The result of grading one submission."""

    submission: str
    assignment: str
    status: str  # "ok", "timeout" or "error"
    scores: dict[str, float] = field(default_factory=dict)
    possible: dict[str, float] = field(default_factory=dict)
    message: str = ""
    seconds: float = 0.0
    # per test case, in file order
    passed: dict[str, list[bool]] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.scores.values())

    @property
    def max_total(self) -> float:
        return sum(self.possible.values())


def grade(
    submission: Path, assignment: Assignment, timeout: float = DEFAULT_TIMEOUT
) -> Grade:
    """Grade one notebook; never raises for a bad submission."""
    return grade_many([(submission, assignment)], timeout=timeout)[0]


def grade_many(
    jobs: list[tuple[Path, Assignment]],
    timeout: float = DEFAULT_TIMEOUT,
    workers: int = 0,
) -> list[Grade]:
    """Grade many notebooks in one grading server; results in the order of ``jobs``."""
    if not jobs:
        return []
    spec = {
        "timeout": timeout,
        "workers": workers or default_jobs(),
        "assignments": {a.name: str(a.autograder_zip) for _, a in jobs},
        "jobs": [[str(Path(s).resolve()), a.name] for s, a in jobs],
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tools.exercises", "_serve"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "MPLBACKEND": "Agg", "PYDEVD_DISABLE_FILE_VALIDATION": "1"},
    )
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    by_index = {r["index"]: r for r in lines}
    grades = []
    for i, (sub, a) in enumerate(jobs):
        r = by_index.get(i)
        if r is None:
            tail = (proc.stdout + proc.stderr)[-500:]
            grades.append(
                Grade(Path(sub).name, a.name, "error", message=f"grader failed: {tail}")
            )
            continue
        grades.append(
            Grade(
                Path(sub).name,
                a.name,
                r["status"],
                r["scores"],
                r["possible"],
                r.get("message", ""),
                r.get("seconds", 0.0),
                r.get("passed", {}),
            )
        )
    return grades


def _preload(sources: list[str]) -> None:
    """Import, once in the server, every module the chapters' import-only cells name."""
    for src in sources:
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        if tree.body and all(
            isinstance(n, ast.Import | ast.ImportFrom) for n in tree.body
        ):
            try:
                exec(compile(tree, "<preload>", "exec"), {})
            except Exception:  # the submission will report it
                pass


def _run_submission(notebook: Path, name: str, tests_dir: Path, work: Path) -> dict:
    """In the forked child: run one notebook's cells and its tests; scores and case
    results."""
    import torch
    from IPython.core.interactiveshell import InteractiveShell
    from otter import Notebook
    from otter.execute import Checker
    from traitlets.config import Config

    torch.set_num_threads(1)  # the server runs one child per CPU
    nb = nbformat.read(notebook, as_version=4)
    # otter.Notebook("NN_topic.ipynb") reads it
    shutil.copy(notebook, work / f"{name}.ipynb")
    os.chdir(work)
    tests_dir_str = str(tests_dir)
    Notebook.init_grading_mode(tests_dir_str)
    config = Config()
    config.HistoryManager.enabled = False  # no history database shared by the children
    shell = InteractiveShell.instance(config=config)
    for cell in nb.cells:
        meta = cell.get("metadata", {})
        if cell.cell_type != "code" or IGNORE_TAG in meta.get("tags", []):
            continue
        if meta.get("otter", {}).get("ignore", False):
            continue
        shell.run_cell(cell.source, store_history=False)
    for test in sorted(tests_dir.glob("*.py")):
        Checker.check_if_not_already_checked(
            os.path.join(tests_dir_str, test.name), shell.user_ns
        )
    # the last check of each counts
    results = {tf.name: tf for tf in Checker.get_results()}
    return {
        "scores": {q: float(tf.score) for q, tf in results.items()},
        "passed": {
            q: [r.passed for r in tf.test_case_results] for q, tf in results.items()
        },
    }


def _grading_server() -> int:
    """Child process of ``grade_many``: fork one grader per submission, print JSON
    lines."""
    spec = json.load(sys.stdin)
    timeout, workers = float(spec["timeout"]), int(spec["workers"])
    root = Path(tempfile.mkdtemp(prefix="grade-"))
    try:
        import torch  # noqa: F401 - imported once here, shared by every child
        from IPython.core.interactiveshell import InteractiveShell  # noqa: F401
        from otter import Notebook  # noqa: F401
        from otter.execute import Checker  # noqa: F401
        from otter.test_files import create_test_file  # noqa: F401

        tests, possible = {}, {}
        for name, zip_path in spec["assignments"].items():
            dest = root / "tests" / name
            with zipfile.ZipFile(zip_path) as z:
                for member in z.namelist():
                    if member.startswith("tests/") and member.endswith(".py"):
                        (dest / Path(member).name).parent.mkdir(
                            parents=True, exist_ok=True
                        )
                        (dest / Path(member).name).write_bytes(z.read(member))
            tests[name] = dest
            possible[name] = {}
            for path in sorted(dest.glob("*.py")):
                total, cases = read_test_file(path.read_text())
                possible[name][path.stem] = (
                    total if total is not None else sum(c.points for c in cases)
                )
            solution = Path(zip_path).parent / f"{name}.ipynb"
            if solution.exists():
                _preload(
                    [c.source for c in nbformat.read(solution, as_version=4).cells]
                )

        pending = list(enumerate(spec["jobs"]))
        # pid -> (index, start, work dir)
        running: dict[int, tuple[int, float, Path]] = {}

        def report(
            index: int,
            status: str,
            scores: dict,
            message: str,
            seconds: float,
            passed=None,
        ) -> None:
            name = spec["jobs"][index][1]
            zero = {q: 0.0 for q in possible[name]}
            full = {**zero, **{q: s for q, s in scores.items() if q in zero}}
            line = {
                "index": index,
                "status": status,
                "scores": full if status == "ok" else zero,
                "possible": possible[name],
                "message": message,
                "seconds": round(seconds, 3),
                "passed": passed or {},
            }
            print(json.dumps(line), flush=True)

        while pending or running:
            while pending and len(running) < workers:
                index, (notebook, name) = pending.pop(0)
                work = root / f"sub{index}"
                work.mkdir()
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:  # the child: never returns
                    code = 1
                    try:
                        os.setpgid(0, 0)
                        # input() fails, not hangs
                        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                        log = os.open(
                            work / "output.txt", os.O_WRONLY | os.O_CREAT, 0o644
                        )
                        os.dup2(log, 1)
                        os.dup2(log, 2)
                        try:
                            result = _run_submission(
                                Path(notebook), name, tests[name], work
                            )
                        except Exception as exc:
                            result = {"error": f"{type(exc).__name__}: {exc}"[:500]}
                        (work / "result.json").write_text(json.dumps(result))
                        code = 0
                    finally:
                        os._exit(code)
                running[pid] = (index, time.monotonic(), work)
            time.sleep(0.01)
            for pid, (index, start, work) in list(running.items()):
                done, status = os.waitpid(pid, os.WNOHANG)
                elapsed = time.monotonic() - start
                if done == 0 and elapsed <= timeout:
                    continue
                if done == 0:  # past the limit: stop the child and whatever it started
                    for kill in (os.killpg, os.kill):
                        try:
                            kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    os.waitpid(pid, 0)
                    msg = f"did not finish within {timeout:.0f} s; scored zero"
                    report(index, "timeout", {}, msg, elapsed)
                else:
                    result_file = work / "result.json"
                    result = (
                        json.loads(result_file.read_text())
                        if result_file.exists()
                        else {}
                    )
                    if "scores" in result:
                        report(
                            index, "ok", result["scores"], "", elapsed, result["passed"]
                        )
                    else:
                        why = (
                            result.get("error")
                            or f"the grading process died ({status})"
                        )
                        report(index, "error", {}, why, elapsed)
                del running[pid]
                shutil.rmtree(work, ignore_errors=True)
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


def identify(notebook: Path, names: list[str]) -> str | None:
    """Which assignment a submitted notebook belongs to: by otter metadata, then by file
    name."""
    try:
        nb = nbformat.read(notebook, as_version=4)
        name = nb.metadata.get("otter", {}).get("assignment_name")
        if name in names:
            return name
    # an unreadable notebook is matched by its name and graded as an error
    except Exception:
        pass
    for name in names:
        if notebook.stem.startswith(name) or notebook.stem.startswith(name[:2] + "_"):
            return name
    return None


def grade_folder(
    submissions: Path,
    assignments: Path,
    out_csv: Path,
    timeout: float = DEFAULT_TIMEOUT,
    jobs: int = 0,
) -> list[Grade]:
    """Grade every ``*.ipynb`` under ``submissions`` into one CSV gradebook."""
    submissions, assignments = Path(submissions).resolve(), Path(assignments).resolve()
    if not submissions.is_dir():
        raise FileNotFoundError(f"submissions folder {submissions} does not exist")
    folders = sorted(p for p in assignments.glob("[0-9][0-9]_*") if p.is_dir())
    available = {p.name: Assignment(p.name, p) for p in folders}
    if not available:
        raise FileNotFoundError(
            f"no assignments in {assignments}; run `make assignments` first"
        )
    notebooks = sorted(
        p for p in submissions.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
    )
    grades: list[Grade | None] = [None] * len(notebooks)
    todo = []
    for i, nb in enumerate(notebooks):
        name = identify(nb, list(available))
        if name is None:
            grades[i] = Grade(
                nb.name, "?", "error", message="cannot tell which chapter this is"
            )
        else:
            todo.append((i, nb, available[name]))
    graded = grade_many([(nb, a) for _, nb, a in todo], timeout=timeout, workers=jobs)
    for (i, _, _), g in zip(todo, graded):
        grades[i] = g
    result = [g for g in grades if g is not None]
    write_gradebook(result, out_csv)
    return result


def write_gradebook(grades: list[Grade], out_csv: Path) -> None:
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with out_csv.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "submission",
                "assignment",
                "status",
                "score",
                "possible",
                "percent",
                "detail",
            ]
        )
        for g in grades:
            detail = "; ".join(
                f"{q}={g.scores.get(q, 0):g}/{p:g}" for q, p in g.possible.items()
            )
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


# ------------------------------------------------------------------- submissions for
# tests


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
    g = sub.add_parser(
        "grade", help="grade a folder of submissions into a CSV gradebook"
    )
    g.add_argument("--assignments", type=Path, default=ROOT / "_build" / "assignments")
    g.add_argument("--submissions", type=Path, required=True)
    g.add_argument("--out", type=Path, required=True)
    g.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per submission"
    )
    g.add_argument(
        "--jobs", type=int, default=0, help="submissions at once (default: one per CPU)"
    )
    sub.add_parser("_assign", help=argparse.SUPPRESS)
    sub.add_parser("_serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cmd == "_assign":
        return _assign_server()
    if args.cmd == "_serve":
        return _grading_server()
    if args.cmd == "assign":
        for result in assign_all(args.out):
            print(f"{result.name}: {result.student.relative_to(args.out.resolve())}")
        print(f"Student notebooks and autograders are in {args.out}")
        return 0
    start = time.monotonic()
    grades = grade_folder(
        args.submissions, args.assignments, args.out, args.timeout, args.jobs
    )
    for gr in grades:
        score = f"{gr.total:g}/{gr.max_total:g}"
        print(f"{gr.submission:40s} {gr.assignment:24s} {gr.status:8s} {score}")
    print(f"Graded {len(grades)} notebooks in {time.monotonic() - start:.1f} s")
    print(f"Gradebook: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
