"""Grade a submitted notebook: run it, and say for each exercise whether it passed, failed or was not attempted.

The grader executes the whole notebook in a fresh kernel, cell by cell, carrying on after errors,
and looks at each exercise cell (tag ``exercise:NN.K``):

* **not attempted**: the cell raised ``NotImplementedError`` (the stub is still there);
* **failed**: it raised anything else (the check's ``AssertionError``, a ``NameError``...);
* **passed**: it ran to the end and executed its asserts.

The checks come from the course's own notebook of the same name when it is found (``checks_dir``,
by default the ``tutorials/`` folder beside this package): the student's code between the solution
markers is run with the official check after it, so editing a check does not change the grade.
"""
from __future__ import annotations

import copy
import json
import pathlib
from dataclasses import asdict, dataclass

from .editions import (BEGIN_SOLUTION, END_SOLUTION, CourseFormatError, course_notebooks, exercise_name,
                       split_exercise)
from .execute import execute_notebook

PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted"
TUTORIALS_DIR = pathlib.Path(__file__).resolve().parents[2] / "tutorials"


@dataclass
class ExerciseGrade:
    name: str
    status: str
    detail: str = ""


@dataclass
class NotebookGrade:
    notebook: str
    exercises: list
    checks_from: str

    @property
    def passed(self) -> int:
        return sum(grade.status == PASSED for grade in self.exercises)

    def as_dict(self) -> dict:
        return {"notebook": self.notebook, "checks_from": self.checks_from, "passed": self.passed,
                "total": len(self.exercises), "exercises": [asdict(grade) for grade in self.exercises]}


def with_official_checks(submission, official):
    """A copy of ``submission`` whose exercise cells end with ``official``'s checks; also the format
    problems found (exercise name -> message), for cells whose solution markers were removed."""
    checks = {exercise_name(cell): split_exercise(cell.source, exercise_name(cell))[2]
              for cell in official.cells if cell.cell_type == "code" and exercise_name(cell)}
    graded, problems = copy.deepcopy(submission), {}
    for cell in graded.cells:
        name = exercise_name(cell) if cell.cell_type == "code" else None
        if name not in checks:
            continue
        try:
            prefix, answer, _ = split_exercise(cell.source, name)
        except CourseFormatError as problem:
            problems[name] = str(problem)
            continue
        cell.source = "\n".join(prefix + [BEGIN_SOLUTION] + answer + [END_SOLUTION] + checks[name])
    return graded, problems


def status_of(run) -> tuple[str, str]:
    if run.error is None:
        return (PASSED, "") if run.asserts else (FAILED, "the check executed no assert")
    name, message = run.error
    if name == "NotImplementedError":
        return NOT_ATTEMPTED, ""
    first_line = (message or "").strip().splitlines()[0] if (message or "").strip() else ""
    return FAILED, f"{name}: {first_line}" if first_line else name


def grade_notebook(path, checks_dir=TUTORIALS_DIR, timeout: float = 120) -> NotebookGrade:
    """Execute the notebook at ``path`` and grade each of its exercises (see the module docstring)."""
    import nbformat

    path = pathlib.Path(path)
    submission = nbformat.read(path, as_version=4)
    official_path = pathlib.Path(checks_dir) / path.name if checks_dir else None
    if official_path is not None and official_path.is_file() and official_path.resolve() != path.resolve():
        official = nbformat.read(official_path, as_version=4)
        submission, problems = with_official_checks(submission, official)
        expected = [exercise_name(c) for c in official.cells if c.cell_type == "code" and exercise_name(c)]
        checks_from = str(official_path)
    else:
        problems = {}
        expected = [exercise_name(c) for c in submission.cells if c.cell_type == "code" and exercise_name(c)]
        checks_from = "the submission itself"
    execution = execute_notebook(submission, path.parent, timeout=timeout)
    runs = {exercise_name(execution.notebook.cells[run.index]): run for run in execution.cells}
    grades = []
    for name in expected:
        if name in problems:
            grades.append(ExerciseGrade(name, FAILED, problems[name]))
        elif name not in runs:
            grades.append(ExerciseGrade(name, NOT_ATTEMPTED, "the exercise's cell is missing"))
        else:
            grades.append(ExerciseGrade(name, *status_of(runs[name])))
    return NotebookGrade(str(path), grades, checks_from)


def grade_path(path, checks_dir=TUTORIALS_DIR, timeout: float = 120) -> list[NotebookGrade]:
    """Grade one notebook, or every numbered notebook in a folder."""
    path = pathlib.Path(path)
    if path.is_dir():
        notebooks = course_notebooks(path)
        if not notebooks:
            raise FileNotFoundError(f"no numbered notebooks (NN_name.ipynb) in {path}")
        return [grade_notebook(notebook, checks_dir, timeout) for notebook in notebooks]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such notebook")
    return [grade_notebook(path, checks_dir, timeout)]


def format_table(grades: list[NotebookGrade]) -> str:
    lines = []
    for grade in grades:
        lines.append(f"{grade.notebook}: {grade.passed} of {len(grade.exercises)} exercises passed")
        if grade.exercises:
            lines.append(f"  {'exercise':10s} {'result':15s} detail")
        for exercise in grade.exercises:
            lines.append(f"  {exercise.name:10s} {exercise.status:15s} {exercise.detail}".rstrip())
    return "\n".join(lines)


def format_json(grades: list[NotebookGrade]) -> str:
    return json.dumps({"notebooks": [grade.as_dict() for grade in grades]}, indent=2)
