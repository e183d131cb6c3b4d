"""The course tools on a tiny course in tmp_path: ``course build`` never destroys work, and
``course grade`` reports a pass only when the course's own check passed.

The course here is two notebooks with one exercise each, so most tests run no kernel; the ones that
grade start one (a few seconds each).
"""
import json
import os
import pathlib

import pytest

TUTORIALS_EXTRA = "the course's tests run notebooks: pip install -e '.[tutorials]'"
nbformat = pytest.importorskip("nbformat", reason=TUTORIALS_EXTRA)

from minires import cli  # noqa: E402
from minires.course import editions  # noqa: E402
from minires.course.grade import (FAILED, OWN_CHECKS, PASSED, ExerciseGrade, GradeError, NotebookGrade,  # noqa: E402
                                  format_table, grade_notebook)

STUB = editions.stub_line("01.1")


def exercise(name, solution, check):
    cell = nbformat.v4.new_code_cell("\n".join([f"# Exercise {name}", editions.BEGIN_SOLUTION, solution,
                                                editions.END_SOLUTION, check]))
    cell.metadata["tags"] = [f"{editions.EXERCISE_TAG}{name}"]
    return cell


def tiny_course(folder: pathlib.Path) -> pathlib.Path:
    """``folder`` holding 01_tiny.ipynb (exercise 01.1: x = 2) and 02_small.ipynb (exercise 02.1: y = 3)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem, name, solution, check in [("01_tiny", "01.1", "x = 2", "assert x == 2, 'x should be 2'"),
                                        ("02_small", "02.1", "y = 3", "assert y == 3, 'y should be 3'")]:
        notebook = nbformat.v4.new_notebook()
        notebook.cells = [nbformat.v4.new_markdown_cell(f"# {stem}"), exercise(name, solution, check)]
        nbformat.write(notebook, folder / f"{stem}.ipynb")
    return folder


def exercise_cell(notebook, name):
    return next(cell for cell in notebook.cells if editions.exercise_name(cell) == name)


def edit(path, name, old, new):
    notebook = nbformat.read(path, as_version=4)
    cell = exercise_cell(notebook, name)
    assert old in cell.source
    cell.source = cell.source.replace(old, new)
    nbformat.write(notebook, path)


# --- course build ---------------------------------------------------------------------------------

def test_build_refuses_to_overwrite_a_students_answers_unless_forced(tmp_path, capsys):
    source, out = tiny_course(tmp_path / "course"), tmp_path / "student"
    assert cli.main(["course", "build", "--source", str(source), "--out", str(out)]) == 0
    edit(out / "01_tiny.ipynb", "01.1", STUB, "x = 2  # my answer")
    before = (out / "01_tiny.ipynb").read_bytes()

    assert cli.main(["course", "build", "--source", str(source), "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert "01_tiny.ipynb" in error and "--force" in error and "02_small" not in error
    assert len(error.strip().splitlines()) == 1
    assert (out / "01_tiny.ipynb").read_bytes() == before, "the student's answer must be kept"

    assert cli.main(["course", "build", "--source", str(source), "--out", str(out), "--force"]) == 0
    assert "my answer" not in (out / "01_tiny.ipynb").read_text()


def test_build_replaces_notebooks_nobody_edited_even_after_the_course_changed(tmp_path):
    source, out = tiny_course(tmp_path / "course"), tmp_path / "student"
    editions.build_student_edition(source, out)
    # the student ran the notebook without answering (outputs are not work) ...
    student = nbformat.read(out / "01_tiny.ipynb", as_version=4)
    exercise_cell(student, "01.1").outputs = [nbformat.v4.new_output("error", ename="NotImplementedError",
                                                                     evalue="Exercise 01.1", traceback=[])]
    nbformat.write(student, out / "01_tiny.ipynb")
    # ... and the instructor reworded the exercise's hint
    edit(source / "01_tiny.ipynb", "01.1", "# Exercise 01.1", "# Exercise 01.1: set x to two")
    editions.build_student_edition(source, out)
    assert "set x to two" in (out / "01_tiny.ipynb").read_text()


def test_build_refuses_to_write_into_the_course_folder(tmp_path, capsys):
    source = tiny_course(tmp_path / "course")
    before = {path.name: path.read_bytes() for path in source.iterdir()}
    for out in [source, tmp_path / "course" / ".." / "course"]:
        assert cli.main(["course", "build", "--source", str(source), "--out", str(out), "--force"]) == 1
        error = capsys.readouterr().err
        assert "course's own folder" in error and len(error.strip().splitlines()) == 1
    assert {path.name: path.read_bytes() for path in source.iterdir()} == before, "the solutions must be kept"


def test_build_refuses_a_link_to_a_course_notebook(tmp_path):
    source, out = tiny_course(tmp_path / "course"), tmp_path / "student"
    out.mkdir()
    (out / "01_tiny.ipynb").symlink_to(source / "01_tiny.ipynb")
    with pytest.raises(editions.EditionError, match="01_tiny.ipynb is the course notebook"):
        editions.build_student_edition(source, out, force=True)
    assert "x = 2" in (source / "01_tiny.ipynb").read_text()


def test_build_rejects_an_empty_output_folder(tmp_path, monkeypatch, capsys):
    source = tiny_course(tmp_path / "course")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        cli.main(["course", "build", "--source", str(source), "--out", ""])
    assert exited.value.code == 2
    assert "--out" in capsys.readouterr().err
    with pytest.raises(editions.EditionError, match="output folder is empty"):
        editions.build_student_edition(source, "")
    assert not list(tmp_path.glob("*.ipynb")), "nothing may be written into the current folder"


def test_the_student_edition_records_its_course_notebook(tmp_path):
    out = tmp_path / "student"
    editions.build_student_edition(tiny_course(tmp_path / "course"), out)
    notebook = nbformat.read(out / "02_small.ipynb", as_version=4)
    assert editions.course_notebook_id(notebook) == "02_small"


# --- course grade ---------------------------------------------------------------------------------

@pytest.fixture
def cheat(tmp_path):
    """A wrong answer to 01.1 whose check was replaced by ``assert True``, in a renamed file."""
    source, out = tiny_course(tmp_path / "course"), tmp_path / "student"
    editions.build_student_edition(source, out)
    path = tmp_path / "submissions" / "alice_01_tiny.ipynb"
    path.parent.mkdir()
    os.replace(out / "01_tiny.ipynb", path)
    edit(path, "01.1", STUB, "x = 5")
    edit(path, "01.1", "assert x == 2, 'x should be 2'", "assert True")
    return source, path


def grading(path, *options):
    return ["course", "grade", str(path), *options]


def test_a_renamed_submission_is_graded_by_the_course_checks(cheat, capsys):
    pytest.importorskip("nbclient", reason=TUTORIALS_EXTRA)
    pytest.importorskip("ipykernel", reason=TUTORIALS_EXTRA)
    source, path = cheat
    assert cli.main(grading(path, "--checks", str(source))) == 0
    table = capsys.readouterr().out
    assert f"checks from {source / '01_tiny.ipynb'}" in table and "its metadata" in table
    assert "01.1" in table and FAILED in table and "x should be 2" in table and PASSED not in table.split("\n", 2)[2]


def test_a_renamed_submission_without_metadata_is_matched_by_its_exercises(cheat):
    pytest.importorskip("nbclient", reason=TUTORIALS_EXTRA)
    pytest.importorskip("ipykernel", reason=TUTORIALS_EXTRA)
    source, path = cheat
    notebook = nbformat.read(path, as_version=4)
    del notebook.metadata[editions.METADATA_KEY]
    nbformat.write(notebook, path)
    grade = grade_notebook(path, checks_dir=source)
    assert grade.checks_from == str(source / "01_tiny.ipynb") and grade.matched_by == "its exercises"
    assert [(e.name, e.status) for e in grade.exercises] == [("01.1", FAILED)]


def test_a_mistyped_checks_folder_is_an_error_not_a_pass(cheat, capsys):
    _, path = cheat
    assert cli.main(grading(path, "--checks", str(path.parent / "tutorial"))) == 1
    captured = capsys.readouterr()
    assert PASSED not in captured.out
    assert "tutorial does not exist" in captured.err and len(captured.err.strip().splitlines()) == 1


def test_an_unmatched_submission_is_refused_and_says_what_was_looked_for(cheat, capsys):
    source, path = cheat
    notebook = nbformat.read(path, as_version=4)
    del notebook.metadata[editions.METADATA_KEY]
    exercise_cell(notebook, "01.1").metadata["tags"] = []
    nbformat.write(notebook, path)
    assert cli.main(grading(path, "--checks", str(source))) == 1
    error = capsys.readouterr().err
    assert "alice_01_tiny.ipynb" in error and "metadata" in error and "exercises" in error
    assert "--own-checks" in error and len(error.strip().splitlines()) == 1


def test_clues_that_disagree_are_refused(cheat):
    source, path = cheat
    notebook = nbformat.read(path, as_version=4)
    notebook.metadata[editions.METADATA_KEY]["course_notebook"] = "02_small"
    nbformat.write(notebook, path)
    with pytest.raises(GradeError, match="disagree.*its metadata: 02_small.*its exercises: 01_tiny"):
        grade_notebook(path, checks_dir=source)


def test_a_submission_is_never_its_own_checks_source(tmp_path):
    out = tmp_path / "student"
    editions.build_student_edition(tiny_course(tmp_path / "course"), out)
    with pytest.raises(GradeError, match="submission's own folder"):
        grade_notebook(out / "01_tiny.ipynb", checks_dir=out)
    with pytest.raises(GradeError, match="no checks folder given"):
        grade_notebook(out / "01_tiny.ipynb", checks_dir=None)


def test_own_checks_only_when_asked_and_the_report_says_so(cheat, capsys):
    pytest.importorskip("nbclient", reason=TUTORIALS_EXTRA)
    pytest.importorskip("ipykernel", reason=TUTORIALS_EXTRA)
    _, path = cheat
    assert cli.main(grading(path, "--own-checks", "--json")) == 0
    report = json.loads(capsys.readouterr().out)["notebooks"][0]
    assert report["checks_from"] == OWN_CHECKS and report["official_checks"] is False
    with pytest.raises(SystemExit) as exited:      # one or the other
        cli.main(grading(path, "--own-checks", "--checks", "tutorials"))
    assert exited.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_the_table_says_where_the_checks_came_from():
    official = NotebookGrade("alice.ipynb", [ExerciseGrade("01.1", PASSED)], "tutorials/01_tiny.ipynb", "its exercises")
    own = NotebookGrade("alice.ipynb", [ExerciseGrade("01.1", PASSED)], OWN_CHECKS, "asked for (--own-checks)")
    assert format_table([official]).splitlines()[1].strip() == \
        "checks from tutorials/01_tiny.ipynb (matched by its exercises)"
    assert "NOT the official checks" in format_table([own]).splitlines()[1]


def test_book_refuses_the_course_folder_and_a_foreign_index_before_running_anything(tmp_path, capsys):
    """The checks come before any notebook runs (these calls start no kernel); a previous book's index
    is replaced, anything else called index.html is not."""
    from minires.course.book import GENERATOR, check_out_folder, index_page
    course = tiny_course(tmp_path / "course")
    assert cli.main(["course", "book", "--source", str(course), "--out", str(course)]) == 1
    assert "is the course's own folder" in capsys.readouterr().err and not (course / "index.html").exists()
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<html>my own page</html>")
    assert cli.main(["course", "book", "--source", str(course), "--out", str(site)]) == 1
    assert "is not the index of a minires book" in capsys.readouterr().err
    assert (site / "index.html").read_text() == "<html>my own page</html>"
    (site / "index.html").write_text(index_page([{"href": "01_a.html", "title": "A"}]))
    assert GENERATOR in (site / "index.html").read_text()
    check_out_folder(site, course)                     # an earlier book: no complaint


# --- bad input: unreadable files, solutions outside an exercise, endless cells --------------------

def test_a_file_that_is_not_a_notebook_is_named_by_build_grade_and_book(tmp_path, capsys):
    """Refused before any kernel starts: the corrupt notebook sorts first in every folder here."""
    course, submissions = tiny_course(tmp_path / "course"), tmp_path / "submissions"
    submissions.mkdir()
    for broken in (course / "00_broken.ipynb", submissions / "01_tiny.ipynb"):
        broken.write_text('{"cells": [')          # a notebook cut short
    (submissions / "notes.txt").write_text("my notes")
    editions.build_student_edition(tiny_course(tmp_path / "good"), tmp_path / "good_student")
    for argv, named in (
            (["course", "build", "--source", str(course), "--out", str(tmp_path / "student")], "course/00_broken.ipynb"),
            (["course", "grade", str(submissions), "--checks", str(course)], "submissions/01_tiny.ipynb"),
            (["course", "grade", str(submissions / "notes.txt"), "--own-checks"], "submissions/notes.txt"),
            (["course", "grade", str(tmp_path / "good_student" / "01_tiny.ipynb"), "--checks", str(course)],
             "course/00_broken.ipynb"),                                 # a corrupt notebook among the checks
            (["course", "book", "--source", str(course), "--out", str(tmp_path / "book")], "course/00_broken.ipynb")):
        assert cli.main(argv) == 1
        error = capsys.readouterr().err
        assert f"{named}: not a readable notebook" in error, (argv, error)
        assert len(error.strip().splitlines()) == 1
    assert not (tmp_path / "student").exists() and not (tmp_path / "book").exists()


def test_build_refuses_a_solution_in_a_cell_without_an_exercise_tag(tmp_path):
    """A mistyped tag (``exercise 01.2``) would otherwise hand the solution to the students verbatim."""
    course = tiny_course(tmp_path / "course")
    notebook = nbformat.read(course / "02_small.ipynb", as_version=4)
    untagged = exercise("02.2", "secret = 42", "assert secret == 42")
    untagged.metadata["tags"] = ["exercise 02.2"]
    notebook.cells.append(untagged)
    nbformat.write(notebook, course / "02_small.ipynb")
    with pytest.raises(editions.CourseFormatError, match=r"02_small.ipynb, cell 2: .*no 'exercise:NN.K' tag"):
        editions.build_student_edition(course, tmp_path / "student")
    assert not (tmp_path / "student").exists(), "nothing may be written, least of all the solution"


def test_an_endless_exercise_fails_by_the_timeout_and_the_rest_is_graded(tmp_path, capsys):
    pytest.importorskip("nbclient", reason=TUTORIALS_EXTRA)
    pytest.importorskip("ipykernel", reason=TUTORIALS_EXTRA)
    course = tmp_path / "course"
    course.mkdir()
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [exercise("01.1", "x = 2", "assert x == 2"), exercise("01.2", "y = 3", "assert y == 3")]
    nbformat.write(notebook, course / "01_loop.ipynb")
    editions.build_student_edition(course, tmp_path / "student")
    path = tmp_path / "student" / "01_loop.ipynb"
    edit(path, "01.1", editions.stub_line("01.1"), "while True:\n    pass")
    edit(path, "01.2", editions.stub_line("01.2"), "y = 3")

    grade = grade_notebook(path, checks_dir=course, timeout=2)
    assert [(e.name, e.status) for e in grade.exercises] == [("01.1", FAILED), ("01.2", PASSED)]
    assert grade.exercises[0].detail.startswith("TimeoutError: the cell ran longer than 2 s")

    with pytest.raises(SystemExit) as exited:      # nbclient counts whole seconds
        cli.main(grading(path, "--checks", str(course), "--timeout", "2.5"))
    assert exited.value.code == 2 and "2.5" in capsys.readouterr().err


def test_a_cell_that_kills_the_kernel_is_named_with_its_notebook(cheat, capsys):
    pytest.importorskip("nbclient", reason=TUTORIALS_EXTRA)
    pytest.importorskip("ipykernel", reason=TUTORIALS_EXTRA)
    source, path = cheat
    edit(path, "01.1", "x = 5", "import os; os._exit(1)")
    assert cli.main(grading(path, "--checks", str(source))) == 1
    captured = capsys.readouterr()
    assert PASSED not in captured.out
    error = captured.err.strip().splitlines()[-1]
    assert f"{path}: the kernel died while running exercise 01.1" in error, error


def test_a_folder_with_a_notebook_it_would_skip_is_refused(tmp_path, capsys):
    """Only NN_name.ipynb files are graded in a folder: a renamed one would be left out without a word."""
    out = tmp_path / "student"
    editions.build_student_edition(tiny_course(tmp_path / "course"), out)
    os.replace(out / "02_small.ipynb", out / "alice_small.ipynb")
    assert cli.main(grading(out, "--checks", str(tmp_path / "course"))) == 1
    captured = capsys.readouterr()
    assert not captured.out and len(captured.err.strip().splitlines()) == 1
    assert "alice_small.ipynb" in captured.err and "would be skipped" in captured.err


def test_the_readme_gives_grades_default_timeout():
    """The README: "a cell that runs longer than `--timeout` (120 s) is interrupted"; the parser's default."""
    import argparse

    from conftest import one_line
    from minires.course.commands import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    default = parser.parse_args(["grade", "x.ipynb"]).timeout
    assert f"a cell that runs longer than `--timeout` ({default} s) is interrupted" in one_line("README.md")
