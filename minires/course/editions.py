"""The student edition: the course notebooks with every solution replaced by a stub.

An exercise cell (tag ``exercise:NN.K``) is ``prefix + region + check``: comments, then the solution
between ``### BEGIN SOLUTION`` and ``### END SOLUTION``, then the asserts. The student edition keeps
the prefix, the markers and the check, and puts ``raise NotImplementedError`` in the region; cells
tagged ``instructor`` are left out and outputs are cleared.

``build_student_edition`` never destroys work: it refuses to write into the source folder, and it
replaces a notebook already in the output folder only when that notebook is unedited (its cells are
those of the edition it would write, or of the edition it was built as, recorded in its metadata
under ``minires``); an edited one is replaced only with ``force=True``.
"""
from __future__ import annotations

import copy
import hashlib
import json
import pathlib

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
EXERCISE_TAG = "exercise:"
CHECK_TAG = "check"
INSTRUCTOR_TAG = "instructor"
NOTEBOOK_PATTERN = "[0-9][0-9]_*.ipynb"
METADATA_KEY = "minires"   # notebook.metadata["minires"]: {"course_notebook": stem, "edition": "student", "cells_digest": ...}


class CourseFormatError(ValueError):
    """A course notebook breaks the conventions of ``minires.course`` (the message says where and how)."""


class EditionError(ValueError):
    """The student edition was not written, because writing it would destroy someone's work (the message says whose)."""


class NotebookFileError(ValueError):
    """A file that should be a notebook cannot be read as one (the message names it and says why)."""


def read_notebook(path):
    """The notebook at ``path`` (nbformat v4); a ``NotebookFileError`` naming the file if it is not one."""
    import nbformat

    try:
        return nbformat.read(path, as_version=4)
    except Exception as error:  # noqa: BLE001 -- nbformat raises many kinds (JSON, schema, encoding, ...)
        raise NotebookFileError(f"{path}: not a readable notebook ({type(error).__name__}: "
                                f"{str(error).splitlines()[0] if str(error).strip() else 'no detail'}); "
                                "is it a Jupyter notebook, saved completely?") from error


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


def has_solution_markers(source: str) -> bool:
    return any(line.strip() in (BEGIN_SOLUTION, END_SOLUTION) for line in source.splitlines())


def student_edition(notebook):
    """A copy of ``notebook`` (nbformat v4) for students: stubs for solutions, no instructor notes, no outputs.

    A code cell with solution markers but no exercise tag (a mistyped tag, say) is refused: its
    solution would reach the students."""
    student = copy.deepcopy(notebook)
    kept = []
    for index, cell in enumerate(student.cells):
        if INSTRUCTOR_TAG in tags(cell):
            continue
        if cell.cell_type == "code":
            name = exercise_name(cell)
            if name is not None:
                cell.source = student_source(cell.source, name)
            elif has_solution_markers(cell.source):
                raise CourseFormatError(f"cell {index}: it has solution markers but no '{EXERCISE_TAG}NN.K' tag "
                                        f"(tags: {tags(cell)}), so its solution would reach the students; tag it "
                                        f"{EXERCISE_TAG}NN.K or remove the markers")
            cell.outputs, cell.execution_count = [], None
        kept.append(cell)
    student.cells = kept
    return student


def course_notebooks(folder) -> list[pathlib.Path]:
    """The numbered notebooks of a course folder, in order."""
    return sorted(pathlib.Path(folder).glob(NOTEBOOK_PATTERN))


def cells_digest(notebook) -> str:
    """A digest of what the cells say (type and source), blind to outputs, execution counts and ids."""
    cells = [[cell.get("cell_type"), cell.get("source") if isinstance(cell.get("source"), str)
              else "".join(cell.get("source") or [])] for cell in notebook.get("cells", [])]
    return hashlib.sha256(json.dumps(cells).encode("utf-8")).hexdigest()


def course_notebook_id(notebook) -> str | None:
    """The stem of the course notebook a student edition was built from (its metadata), or None."""
    recorded = notebook.get("metadata", {}).get(METADATA_KEY, {})
    stem = recorded.get("course_notebook") if isinstance(recorded, dict) else None
    return stem if isinstance(stem, str) and stem else None


def is_unedited(path: pathlib.Path, fresh) -> bool:
    """Whether the notebook at ``path`` holds nobody's work: its cells are ``fresh``'s, or those of the
    student edition it was built as (the digest recorded in its metadata)."""
    try:
        existing = read_notebook(path)
    except NotebookFileError:  # not a notebook we can read: treat it as someone's work
        return False
    digest = cells_digest(existing)
    recorded = existing.get("metadata", {}).get(METADATA_KEY, {})
    built_as = recorded.get("cells_digest") if isinstance(recorded, dict) else None
    return digest == cells_digest(fresh) or (built_as is not None and digest == built_as)


def build_student_edition(source_dir, out_dir, force: bool = False) -> list[pathlib.Path]:
    """Write the student edition of every numbered notebook in ``source_dir`` to ``out_dir``.

    Refuses (``EditionError``, nothing written) when ``out_dir`` is empty or is ``source_dir``, and when
    a notebook in ``out_dir`` would be replaced although it was edited since it was built (a student's
    answers, say); ``force=True`` replaces edited notebooks too, never the source's.
    """
    import nbformat

    if not str(out_dir).strip():
        raise EditionError("the output folder is empty (''); name the folder for the student edition, e.g. --out student/")
    source_dir, out_dir = pathlib.Path(source_dir), pathlib.Path(out_dir)
    notebooks = course_notebooks(source_dir)
    if not notebooks:
        raise FileNotFoundError(f"no numbered notebooks ({NOTEBOOK_PATTERN}) in {source_dir}")
    if out_dir.resolve() == source_dir.resolve():
        raise EditionError(f"the output folder {out_dir} is the course's own folder {source_dir}: the student edition "
                           f"would replace the solutions with stubs; choose another folder, e.g. --out student/")
    editions, edited = [], []
    for path in notebooks:
        target = out_dir / path.name
        if target.exists() and target.resolve() == path.resolve():
            raise EditionError(f"{target} is the course notebook {path} itself (a link?): writing the student edition "
                               f"would replace its solutions with stubs; choose another folder")
        try:
            student = student_edition(read_notebook(path))
        except CourseFormatError as problem:
            raise CourseFormatError(f"{path}, {problem}") from problem
        student.metadata[METADATA_KEY] = {"course_notebook": path.stem, "edition": "student",
                                          "cells_digest": cells_digest(student)}
        if target.exists() and not is_unedited(target, student):
            edited.append(target.name)
        editions.append((target, student))
    if edited and not force:
        raise EditionError(f"not written: {len(edited)} notebook{'s' if len(edited) > 1 else ''} in {out_dir} "
                           f"{'were' if len(edited) > 1 else 'was'} edited since the student edition was built and "
                           f"would lose the edits: {', '.join(edited)}; move {'them' if len(edited) > 1 else 'it'} away, "
                           f"or pass --force to replace {'them' if len(edited) > 1 else 'it'}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for target, student in editions:
        nbformat.write(student, target)
    return [target for target, _ in editions]
