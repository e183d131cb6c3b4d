"""The course in tutorials/: every notebook runs, every claim-check and exercise check executes an assert,
the student edition's stubs fail where the solutions pass, the grader scores by exercise, the book renders.

Each notebook is executed once per session (``executed``), cell by cell in a fresh ``python3`` kernel
that imports minires from this checkout, with the student stub of every exercise run just before
its solution (``minires.course.execute``); the book is rendered from those same executions. A cell
that raises fails ``test_notebook_runs``, and so does a notebook slower than ``NOTEBOOK_BUDGET_S``
(the course promises "under a minute on a 2-core CPU"; the budget leaves room for a slow machine).
``tutorials/course.json`` records each notebook's exercises and number of ``check`` cells, so that
removing a check fails ``test_tags_match_the_manifest``.
"""
import importlib.util
import json
import pathlib
import re

import pytest

TUTORIALS_EXTRA = "the course's tests run notebooks: pip install -e '.[tutorials]'"
nbformat = pytest.importorskip("nbformat", reason=TUTORIALS_EXTRA)
pytest.importorskip("nbclient", reason=TUTORIALS_EXTRA)
pytest.importorskip("ipykernel", reason=TUTORIALS_EXTRA)

from conftest import one_line  # noqa: E402
from minires import cli  # noqa: E402
from minires.course import editions  # noqa: E402
from minires.course.execute import execute_notebook  # noqa: E402
from minires.course.grade import (FAILED, NOT_ATTEMPTED, PASSED, ExerciseGrade, NotebookGrade,  # noqa: E402
                                  format_table, grade_notebook)

REPO = pathlib.Path(__file__).resolve().parents[1]
TUTORIALS = REPO / "tutorials"
NOTEBOOKS = editions.course_notebooks(TUTORIALS)
MANIFEST = json.loads((TUTORIALS / "course.json").read_text())["notebooks"]
NOTEBOOK_BUDGET_S = 120
NEEDS = {"08_writing_a_gpu_kernel": "numba_cuda"}   # runs minires' Numba CUDA kernels in Numba's simulator

pytestmark = pytest.mark.slow


class Executions:
    """Each notebook executed at most once per session, with its student stubs probed."""

    def __init__(self):
        self.done = {}

    def __call__(self, path):
        module = NEEDS.get(path.stem)
        if module is not None:
            pytest.importorskip(module, reason=f"{path.name} imports {module}: pip install -e '.[tutorials]'")
        if path.stem not in self.done:
            notebook = nbformat.read(path, as_version=4)
            self.done[path.stem] = execute_notebook(notebook, TUTORIALS, timeout=NOTEBOOK_BUDGET_S, probe_stubs=True)
        return self.done[path.stem]


@pytest.fixture(scope="session")
def executed():
    return Executions()


def read(path):
    return nbformat.read(path, as_version=4)


def exercise_cells(notebook):
    return [(editions.exercise_name(cell), cell) for cell in notebook.cells
            if cell.cell_type == "code" and editions.exercise_name(cell)]


def test_the_course_exists():
    assert NOTEBOOKS, f"no numbered notebooks found in {TUTORIALS}"


def test_the_manifest_lists_every_notebook():
    stems = {path.stem for path in NOTEBOOKS}
    assert stems == set(MANIFEST), (
        f"tutorials/course.json must list exactly the notebooks; missing {sorted(stems - set(MANIFEST))}, "
        f"extra {sorted(set(MANIFEST) - stems)} (see minires/course/__init__.py for the entry's format)")


def test_the_readmes_table_of_tutorials_names_every_notebook_in_order():
    readme = (REPO / "README.md").read_text()
    assert re.findall(r"^\| `(\d\d_\w+)` \|", readme, re.M) == [path.stem for path in NOTEBOOKS]


def test_the_readme_names_the_time_the_notebooks_are_held_to():
    """The README promises what ``test_notebook_runs`` enforces, not less: the budget is NOTEBOOK_BUDGET_S."""
    readme = one_line("README.md")
    assert f"the tests execute every one and fail one that takes over {NOTEBOOK_BUDGET_S} s" in readme
    assert "under a minute" not in readme.split("## Tutorials", 1)[1].split(" ## ", 1)[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    """Outputs bloat diffs and go stale; they are cleared before committing."""
    notebook = json.loads(path.read_text())
    for number, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, (
                f"{path.name}, cell {number} holds outputs; clear them (Jupyter: Edit > Clear Outputs of "
                f"All Cells, or `jupyter nbconvert --clear-output --inplace {path.name}`) and save")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_tags_match_the_manifest(path):
    """Deleting a claim-check or an exercise (or its tag) fails here; so does a malformed exercise cell."""
    notebook, expected = read(path), MANIFEST.get(path.stem, {})
    names = [name for name, _ in exercise_cells(notebook)]
    checks = sum(editions.CHECK_TAG in editions.tags(cell) for cell in notebook.cells)
    assert names == expected.get("exercises"), f"{path.name}: exercises {names}, course.json says {expected}"
    assert checks == expected.get("checks"), f"{path.name}: {checks} cells tagged 'check', course.json says {expected}"
    number = path.name[:2]
    for name, cell in exercise_cells(notebook):
        assert name.startswith(f"{number}."), f"{path.name}: exercise {name} should be named {number}.K"
        editions.split_exercise(cell.source, name)          # raises CourseFormatError with the fix
    for cell in notebook.cells:
        if editions.INSTRUCTOR_TAG in editions.tags(cell):
            assert cell.cell_type == "markdown", f"{path.name}: an instructor cell must be Markdown"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, executed, capsys):
    execution = executed(path)
    with capsys.disabled():
        print(f" [{path.stem}: {execution.seconds:.1f} s] ", end="", flush=True)
    errors = [f"cell {run.index}: {run.error[0]}: {run.error[1]}" for run in execution.errors()]
    assert not errors, f"{path.name} raised in " + "; ".join(errors)
    assert execution.seconds < NOTEBOOK_BUDGET_S, (
        f"{path.name} took {execution.seconds:.0f} s; a tutorial must run in about a minute on a CPU: shrink its settings")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_check_executes_an_assert(path, executed):
    """A check cell whose asserts were removed, or sit in a branch that never runs, checks nothing."""
    execution = executed(path)
    silent = [run.index for run in execution.cells
              if run.asserts == 0 and (editions.CHECK_TAG in run.tags or any(t.startswith(editions.EXERCISE_TAG)
                                                                            for t in run.tags))]
    assert not silent, f"{path.name}: check or exercise cells {silent} executed no assert"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_stubs_fail_where_solutions_pass(path, executed):
    """Each exercise, in the very kernel state where the instructor's solution passes its check, fails
    with the student's stub (``NotImplementedError``, i.e. "not attempted")."""
    execution = executed(path)
    passed = {editions.exercise_name(execution.notebook.cells[run.index]): run.error for run in execution.cells}
    for name in MANIFEST[path.stem]["exercises"]:
        assert passed[name] is None, f"{path.name}: the solution of exercise {name} fails: {passed[name]}"
        assert execution.probes[name] is not None and execution.probes[name][0] == "NotImplementedError", (
            f"{path.name}: the student stub of exercise {name} gave {execution.probes[name]}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_edition_has_stubs_and_keeps_checks(path):
    source = read(path)
    student = editions.student_edition(source)
    assert not any(editions.INSTRUCTOR_TAG in editions.tags(cell) for cell in student.cells)
    kept = [cell for cell in source.cells if editions.INSTRUCTOR_TAG not in editions.tags(cell)]
    assert len(kept) == len(student.cells)
    for original, stubbed in zip(kept, student.cells):
        name = editions.exercise_name(original) if original.cell_type == "code" else None
        if name is None:
            assert stubbed.source == original.source
            continue
        prefix, solution, check = editions.split_exercise(original.source, name)
        student_prefix, answer, student_check = editions.split_exercise(stubbed.source, name)
        assert (student_prefix, student_check) == (prefix, check), f"{name}: hints and check must be kept"
        assert answer == [editions.stub_line(name)] and solution != answer, f"{name}: the solution must be stubbed"


def test_build_command_writes_the_student_edition(tmp_path, capsys):
    assert cli.main(["course", "build", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.ipynb")) == [p.name for p in NOTEBOOKS]
    student = read(tmp_path / "05_residual_block.ipynb")
    stubbed = dict(exercise_cells(student))["05.5"].source
    assert 'raise NotImplementedError("Exercise 05.5' in stubbed and "no_gradient = sorted" not in stubbed
    assert "wrote the student edition of" in capsys.readouterr().out


def answer(notebook, name, code):
    """Put ``code`` between the solution markers of exercise ``name``."""
    cell = dict(exercise_cells(notebook))[name]
    prefix, _, check = editions.split_exercise(cell.source, name)
    cell.source = "\n".join(prefix + [editions.BEGIN_SOLUTION, code, editions.END_SOLUTION] + check)
    return cell


def test_grader_scores_a_half_completed_notebook(tmp_path, capsys):
    source = read(TUTORIALS / "01_autograd_by_hand.ipynb")
    solutions = {name: editions.split_exercise(cell.source, name)[1] for name, cell in exercise_cells(source)}
    submission = editions.student_edition(source)
    answer(submission, "01.1", "\n".join(solutions["01.1"]))
    answer(submission, "01.2", "Y_bar = np.ones(Y.shape)\nW_bar = Y_bar.T @ X.numpy()      # forgot the ReLU")
    answer(submission, "01.3", "\n".join(solutions["01.3"]))
    answer(submission, "01.4", "\n".join(solutions["01.4"]))
    wrong_sigmoid = "\n".join(solutions["01.6"]).replace("grad * y * (1 - y)", "grad * y")
    # ... and weakens their copy of the check; the grader runs the course's own check instead
    cell = answer(submission, "01.6", wrong_sigmoid)
    cell.source = cell.source.replace("assert mr.gradcheck(Sigmoid.apply, [x])", "print('looks fine')")
    path = tmp_path / "01_autograd_by_hand.ipynb"
    nbformat.write(submission, path)

    assert cli.main(["course", "grade", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["notebooks"][0]
    statuses = {exercise["name"]: exercise["status"] for exercise in report["exercises"]}
    assert statuses == {"01.1": PASSED, "01.2": FAILED, "01.3": PASSED, "01.4": PASSED, "01.5": NOT_ATTEMPTED,
                        "01.6": FAILED}
    details = {exercise["name"]: exercise["detail"] for exercise in report["exercises"]}
    assert details["01.2"].startswith("AssertionError") and "Gradcheck" in details["01.6"]
    assert (report["passed"], report["total"]) == (3, 6) and report["checks_from"].endswith("01_autograd_by_hand.ipynb")


def test_an_untouched_student_notebook_is_not_attempted_throughout(tmp_path):
    path = tmp_path / "02_gradient_checking.ipynb"
    nbformat.write(editions.student_edition(read(TUTORIALS / path.name)), path)
    grade = grade_notebook(path, own_checks=True)
    assert [e.name for e in grade.exercises] == MANIFEST["02_gradient_checking"]["exercises"]
    assert {e.status for e in grade.exercises} == {NOT_ATTEMPTED} and grade.checks_from == "the submission itself"
    assert not grade.official


def test_grade_table_names_each_exercise_and_the_score():
    grade = NotebookGrade("05_residual_block.ipynb", [ExerciseGrade("05.1", PASSED),
                                                      ExerciseGrade("05.2", FAILED, "AssertionError: shapes"),
                                                      ExerciseGrade("05.3", NOT_ATTEMPTED)], "tutorials/05_residual_block.ipynb")
    lines = format_table([grade]).splitlines()
    assert lines[0] == "05_residual_block.ipynb: 1 of 3 exercises passed"
    assert lines[1].strip() == "checks from tutorials/05_residual_block.ipynb"
    assert lines[3].split() == ["05.1", "passed"]
    assert lines[4].split()[:3] == ["05.2", "failed", "AssertionError:"]
    assert lines[5].split() == ["05.3", "not", "attempted"]


def test_exercise_cells_must_keep_code_below_the_solution_region():
    with pytest.raises(editions.CourseFormatError, match="only comments may come before"):
        editions.split_exercise("x = 1\n### BEGIN SOLUTION\ny = x\n### END SOLUTION\nassert y == 1", "01.9")
    with pytest.raises(editions.CourseFormatError, match="one '### BEGIN SOLUTION' line"):
        editions.split_exercise("y = 1\nassert y == 1", "01.9")


# --- the book -------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def book(executed, tmp_path_factory):
    """The book, rendered from this session's executions of the notebooks (nothing runs twice)."""
    pytest.importorskip("nbconvert", reason=TUTORIALS_EXTRA)
    from minires.course.book import build_book

    out = tmp_path_factory.mktemp("book")
    pages = build_book(out, TUTORIALS, {path.stem: executed(path) for path in NOTEBOOKS})
    return out, pages


def figures_in(execution):
    return sum("image/png" in output.get("data", {}) for cell in execution.notebook.cells
               if cell.cell_type == "code" for output in cell.outputs)


def test_book_has_an_index_and_a_page_per_notebook(book, executed):
    out, pages = book
    assert [page.name for page in pages] == ["index.html"] + [f"{path.stem}.html" for path in NOTEBOOKS]
    index = (out / "index.html").read_text()
    for path in NOTEBOOKS:
        assert f'href="{path.stem}.html"' in index
        page = (out / f"{path.stem}.html").read_text()
        assert "Instructor's note" not in page and "<script src=" not in page
        assert page.count("data:image/png;base64") >= figures_in(executed(path))
    # the README: the book is the instructor's edition, solutions included
    assert "BEGIN SOLUTION" in (out / "04_batch_norm.html").read_text()


def test_book_formulas_are_mathml(book):
    pytest.importorskip("latex2mathml", reason=TUTORIALS_EXTRA)
    out, _ = book
    page = (out / "04_batch_norm.html").read_text()
    assert page.count("<math") >= 40 and page.count('display="block"') >= 5
    assert "<code>$$" not in page and "\\boxed" not in page


def test_book_refuses_to_build_when_a_cell_raises(tmp_path, capsys):
    source = tmp_path / "course"
    source.mkdir()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 01 · Broken"),
                                               nbformat.v4.new_code_cell("raise ValueError('planted')")])
    nbformat.write(notebook, source / "01_broken.ipynb")
    assert cli.main(["course", "book", "--out", str(tmp_path / "book"), "--source", str(source)]) == 1
    assert "01_broken.ipynb, cell 1: ValueError: planted" in capsys.readouterr().err
    assert not (tmp_path / "book" / "index.html").exists()


def test_book_pages_load_offline_without_errors_and_show_their_figures(book, browser, executed):
    out, pages = book
    mathml = importlib.util.find_spec("latex2mathml") is not None
    page = browser.new_page()
    problems, network = [], []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", lambda request: network.append(request.url)
            if not request.url.startswith(("file:", "data:")) else None)
    try:
        for path in pages:
            page.goto(path.as_uri(), wait_until="load")
            images = page.evaluate("[...document.images].map(image => [image.complete, image.naturalWidth])")
            assert all(complete and width > 0 for complete, width in images), f"{path.name}: an image did not load"
            if path.name != "index.html":
                assert len(images) >= figures_in(executed(TUTORIALS / f"{path.stem}.ipynb")), path.name
            if mathml:
                leftover = page.evaluate("[...document.querySelectorAll('.jp-RenderedMarkdown')]"
                                         ".map(cell => cell.textContent).filter(text => text.includes('$'))")
                assert not leftover, f"{path.name}: TeX left in the text: {leftover[0][:200]}"
        page.goto(pages[0].as_uri(), wait_until="load")
        links = page.evaluate("[...document.querySelectorAll('li a')].map(a => [a.href, a.textContent])")
        assert len(links) == len(NOTEBOOKS)
        for href, title in links:
            page.goto(href, wait_until="load")
            assert page.title() == title and page.locator("nav.book a", has_text="Contents").count() == 2
    finally:
        page.close()
    assert not problems, f"console errors: {problems}"
    assert not network, f"the book fetched from the network: {network}"


def test_a_book_whose_cell_raises_is_not_built_and_says_which_cell(tmp_path, capsys):
    pytest.importorskip("nbconvert", reason=TUTORIALS_EXTRA)
    source = tmp_path / "course"
    source.mkdir()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 / 0")])
    nbformat.write(notebook, source / "01_broken.ipynb")
    code = cli.main(["course", "book", "--out", str(tmp_path / "book"), "--source", str(source)])
    err = capsys.readouterr().err
    assert code == 1 and not (tmp_path / "book").exists()
    assert err.startswith("minires: error: BookError: the book was not built; these cells raised:\n"
                          "  01_broken.ipynb, cell 0: ZeroDivisionError: division by zero")
