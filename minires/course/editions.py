"""The student edition: the course notebooks with every solution replaced by a stub.

An exercise cell (tag ``exercise:NN.K``) is ``prefix + region + check``: comments, then the solution
between ``### BEGIN SOLUTION`` and ``### END SOLUTION``, then the asserts. The student edition keeps
the prefix, the markers and the check, and puts ``raise NotImplementedError`` in the region; cells
tagged ``instructor`` are left out and outputs are cleared.
"""
from __future__ import annotations

import copy
import pathlib

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
EXERCISE_TAG = "exercise:"
CHECK_TAG = "check"
INSTRUCTOR_TAG = "instructor"
NOTEBOOK_PATTERN = "[0-9][0-9]_*.ipynb"


class CourseFormatError(ValueError):
    """A course notebook breaks the conventions of ``minires.course`` (the message says where and how)."""


def tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def exercise_name(cell) -> str | None:
    """``"05.3"`` for a cell tagged ``exercise:05.3``; None for any other cell."""
    names = [tag[len(EXERCISE_TAG):] for tag in tags(cell) if tag.startswith(EXERCISE_TAG)]
    if len(names) > 1:
        raise CourseFormatError(f"a cell has two exercise tags {names}; give each exercise its own cell")
    return names[0] if names else None


def split_exercise(source: str, name: str) -> tuple[list[str], list[str], list[str]]:
    """The lines of an exercise cell as (prefix, solution, check); the markers belong to neither."""
    lines = source.splitlines()
    begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN_SOLUTION]
    ends = [i for i, line in enumerate(lines) if line.strip() == END_SOLUTION]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise CourseFormatError(f"exercise {name}: the cell needs one '{BEGIN_SOLUTION}' line followed by one "
                                f"'{END_SOLUTION}' line (found {len(begins)} and {len(ends)})")
    begin, end = begins[0], ends[0]
    prefix = lines[:begin]
    if any(line.strip() and not line.lstrip().startswith("#") for line in prefix):
        raise CourseFormatError(f"exercise {name}: only comments may come before '{BEGIN_SOLUTION}'; move the "
                                f"code above it into the cell before, so the student's stub raises first")
    return prefix, lines[begin + 1:end], lines[end + 1:]


def stub_line(name: str) -> str:
    return f'raise NotImplementedError("Exercise {name}: replace this line with your solution")'


def student_source(source: str, name: str) -> str:
    """The exercise cell as students get it: the solution region holds a stub, the check is kept."""
    prefix, _, check = split_exercise(source, name)
    return "\n".join(prefix + [BEGIN_SOLUTION, stub_line(name), END_SOLUTION] + check)


def student_edition(notebook):
    """A copy of ``notebook`` (nbformat v4) for students: stubs for solutions, no instructor notes, no outputs."""
    student = copy.deepcopy(notebook)
    kept = []
    for cell in student.cells:
        if INSTRUCTOR_TAG in tags(cell):
            continue
        if cell.cell_type == "code":
            name = exercise_name(cell)
            if name is not None:
                cell.source = student_source(cell.source, name)
            cell.outputs, cell.execution_count = [], None
        kept.append(cell)
    student.cells = kept
    return student


def course_notebooks(folder) -> list[pathlib.Path]:
    """The numbered notebooks of a course folder, in order."""
    return sorted(pathlib.Path(folder).glob(NOTEBOOK_PATTERN))


def build_student_edition(source_dir, out_dir) -> list[pathlib.Path]:
    """Write the student edition of every numbered notebook in ``source_dir`` to ``out_dir``."""
    import nbformat

    notebooks = course_notebooks(source_dir)
    if not notebooks:
        raise FileNotFoundError(f"no numbered notebooks ({NOTEBOOK_PATTERN}) in {source_dir}")
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        target = out_dir / path.name
        nbformat.write(student_edition(nbformat.read(path, as_version=4)), target)
        written.append(target)
    return written
