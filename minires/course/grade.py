"""Grade a submitted notebook: run it, and say for each exercise whether it passed, failed or was not attempted.

The grader executes the whole notebook in a fresh kernel, cell by cell, carrying on after errors,
and looks at each exercise cell (tag ``exercise:NN.K``):

* **not attempted**: the cell raised ``NotImplementedError`` (the stub is still there);
* **failed**: it raised anything else (the check's ``AssertionError``, a ``NameError``...), or ran
  longer than the timeout (it is interrupted with a ``TimeoutError``, and the cells after it still run);
* **passed**: it ran to the end and executed its asserts.

The checks come from the course's own notebook (in ``checks_dir``, by default the ``tutorials/``
folder beside this package): the student's code between the solution markers is run with the
official check after it, so editing a check does not change the grade. The official notebook is the
one the submission was built from (the student edition records it in its metadata), the one whose
exercises the submission has (so a renamed file, ``alice_01.ipynb``, is still matched), and the one of
the same file name; when these disagree, or none is found, the grader refuses (``GradeError``) rather
than trust the submission's checks. Grading by the submission's own checks, which a student can edit,
happens only when asked (``own_checks=True``, ``--own-checks``), and the report says so.
"""
from __future__ import annotations

import copy
import json
import pathlib
from dataclasses import asdict, dataclass

from .editions import (BEGIN_SOLUTION, END_SOLUTION, METADATA_KEY, NOTEBOOK_PATTERN, CourseFormatError, cells_digest,
                       course_notebook_id, course_notebooks, exercise_name, read_notebook, split_exercise)
from .execute import execute_notebook

PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted"
TUTORIALS_DIR = pathlib.Path(__file__).resolve().parents[2] / "tutorials"
OWN_CHECKS = "the submission itself"   # NotebookGrade.checks_from when graded by the submission's own checks


class GradeError(ValueError):
    """A submission could not be graded by the official checks (the message says what was looked for)."""


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
    matched_by: str = ""

    @property
    def official(self) -> bool:
        """Whether the course's checks were run (not the submission's own, which a student can edit)."""
        return self.checks_from != OWN_CHECKS

    @property
    def passed(self) -> int:
        return sum(grade.status == PASSED for grade in self.exercises)

    def as_dict(self) -> dict:
        return {"notebook": self.notebook, "checks_from": self.checks_from, "official_checks": self.official,
                "matched_by": self.matched_by, "passed": self.passed,
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


def exercise_names(notebook) -> list[str]:
    return [exercise_name(cell) for cell in notebook.cells if cell.cell_type == "code" and exercise_name(cell)]


def official_notebooks(checks_dir) -> dict:
    """The course notebooks of ``checks_dir``: stem -> (path, notebook); a ``GradeError`` if there are none."""
    folder = pathlib.Path(checks_dir)
    if not folder.is_dir():
        raise GradeError(f"the checks folder {folder} does not exist; pass --checks with the folder of the course's "
                         f"notebooks (the instructor edition, default {TUTORIALS_DIR})")
    paths = course_notebooks(folder)
    if not paths:
        raise GradeError(f"the checks folder {folder} holds no course notebooks ({NOTEBOOK_PATTERN}); pass --checks "
                         f"with the folder of the course's notebooks (the instructor edition, default {TUTORIALS_DIR})")
    return {path.stem: (path, read_notebook(path)) for path in paths}


def find_official(path: pathlib.Path, submission, checks_dir) -> tuple[pathlib.Path, object, str]:
    """The course notebook whose checks grade ``submission``: (path, notebook, how it was matched).

    Three clues, each used when present: the course notebook recorded in the submission's metadata by
    ``course build``, the course notebook that has the submission's exercises, and the course notebook
    of the same file name. They must agree on one notebook, or a ``GradeError`` says what was looked for."""
    officials = official_notebooks(checks_dir)
    clues = {}
    recorded = course_notebook_id(submission)
    if recorded is not None:
        if recorded not in officials:
            raise GradeError(f"{path.name}: its metadata says it is the course's {recorded}.ipynb, which is not in the "
                             f"checks folder {checks_dir}; pass --checks with the folder of the course's notebooks")
        clues["its metadata"] = recorded
    if path.stem in officials:
        clues["its file name"] = path.stem
    names = set(exercise_names(submission))
    having = sorted(stem for stem, (_, notebook) in officials.items() if names & set(exercise_names(notebook)))
    if len(having) == 1:
        clues["its exercises"] = having[0]
    elif len(having) > 1 and not set(clues.values()) & set(having):
        raise GradeError(f"{path.name}: its exercises {', '.join(sorted(names))} come from several course notebooks "
                         f"({', '.join(having)}) and neither its file name nor its metadata says which it is; "
                         f"name it after its course notebook (NN_name.ipynb)")
    if not clues:
        raise GradeError(f"{path.name}: no course notebook in {checks_dir} matches it (looked for {path.name} there, "
                         f"a course notebook recorded in its metadata (none), and one with its exercises "
                         f"({', '.join(sorted(names)) or 'it has none'})); pass --checks with the folder of the course's "
                         f"notebooks, or --own-checks to grade by the submission's own checks (not official)")
    if len(set(clues.values())) > 1:
        raise GradeError(f"{path.name}: the clues to its course notebook disagree ("
                         + ", ".join(f"{clue}: {stem}" for clue, stem in clues.items())
                         + "); rename it to the notebook it is, or grade it by --own-checks (not official)")
    stem = next(iter(clues.values()))
    official_path, official = officials[stem]
    if official_path.resolve() == path.resolve():
        raise GradeError(f"{path.name}: the checks folder {checks_dir} is the submission's own folder, so its checks "
                         f"would be the submission's; pass --checks with the folder of the course's notebooks, or "
                         f"--own-checks to grade by the submission's own checks (not official)")
    recorded = official.metadata.get(METADATA_KEY, {})
    if isinstance(recorded, dict) and recorded.get("edition") == "student" and recorded.get("cells_digest") != cells_digest(official):
        raise GradeError(f"{path.name}: {official_path} is a student edition that was edited since it was built, so its "
                         f"checks are not the course's; pass --checks with the folder of the course's notebooks")
    return official_path, official, " and ".join(clues)


def grade_notebook(path, checks_dir=TUTORIALS_DIR, timeout: int = 120, own_checks: bool = False) -> NotebookGrade:
    """Execute the notebook at ``path`` and grade each of its exercises (see the module docstring).

    The checks are the course's (``checks_dir``; see ``find_official``), or, only with ``own_checks=True``,
    the submission's own, which a student can edit (``checks_from`` is then ``OWN_CHECKS``)."""
    path = pathlib.Path(path)
    submission = read_notebook(path)
    if own_checks:
        problems, expected = {}, exercise_names(submission)
        checks_from, matched_by = OWN_CHECKS, "asked for (--own-checks)"
    else:
        if checks_dir is None or not str(checks_dir).strip():
            raise GradeError("no checks folder given: pass the folder of the course's notebooks (--checks), "
                             "or ask for the submission's own checks (--own-checks, not official)")
        official_path, official, matched_by = find_official(path, submission, checks_dir)
        submission, problems = with_official_checks(submission, official)
        expected = exercise_names(official)
        checks_from = str(official_path)
    execution = execute_notebook(submission, path.parent, timeout=timeout, notebook_name=str(path))
    runs = {exercise_name(execution.notebook.cells[run.index]): run for run in execution.cells}
    grades = []
    for name in expected:
        if name in problems:
            grades.append(ExerciseGrade(name, FAILED, problems[name]))
        elif name not in runs:
            grades.append(ExerciseGrade(name, NOT_ATTEMPTED, "the exercise's cell is missing"))
        else:
            grades.append(ExerciseGrade(name, *status_of(runs[name])))
    return NotebookGrade(str(path), grades, checks_from, matched_by)


def grade_path(path, checks_dir=TUTORIALS_DIR, timeout: int = 120, own_checks: bool = False) -> list[NotebookGrade]:
    """Grade one notebook, or every numbered notebook in a folder (a ``GradeError`` if the folder also
    holds notebooks named otherwise: they would be skipped)."""
    path = pathlib.Path(path)
    if path.is_dir():
        notebooks = course_notebooks(path)
        skipped = sorted(other.name for other in path.glob("*.ipynb") if other not in notebooks)
        if skipped:
            raise GradeError(f"{path}: these notebooks are not named NN_name.ipynb and would be skipped: "
                             f"{', '.join(skipped)}; rename each after its course notebook (e.g. 05_residual_block.ipynb), "
                             "move it away, or grade it on its own")
        if not notebooks:
            raise FileNotFoundError(f"no numbered notebooks (NN_name.ipynb) in {path}")
        return [grade_notebook(notebook, checks_dir, timeout, own_checks) for notebook in notebooks]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such notebook")
    return [grade_notebook(path, checks_dir, timeout, own_checks)]


def format_table(grades: list[NotebookGrade]) -> str:
    lines = []
    for grade in grades:
        lines.append(f"{grade.notebook}: {grade.passed} of {len(grade.exercises)} exercises passed")
        lines.append(f"  checks from {grade.checks_from} (matched by {grade.matched_by})" if grade.official and grade.matched_by
                     else f"  checks from {grade.checks_from}" if grade.official
                     else "  checks from the submission itself: NOT the official checks (a student can edit them)")
        if grade.exercises:
            lines.append(f"  {'exercise':10s} {'result':15s} detail")
        for exercise in grade.exercises:
            lines.append(f"  {exercise.name:10s} {exercise.status:15s} {exercise.detail}".rstrip())
    return "\n".join(lines)


def format_json(grades: list[NotebookGrade]) -> str:
    return json.dumps({"notebooks": [grade.as_dict() for grade in grades]}, indent=2)
