"""The course notebooks in tutorials/ must run, top to bottom, on a CPU, and be stored without outputs.

Each notebook is executed in a fresh ``python3`` kernel (nbclient) that imports minires from this
checkout; a cell that raises fails the test, and so does a notebook that takes longer than
``NOTEBOOK_BUDGET_S`` (the course promises "under a minute on a 2-core CPU"; the budget leaves
room for a slow machine). Each notebook's time is printed as it finishes.
"""
import json
import os
import pathlib
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = pathlib.Path(__file__).resolve().parents[1]
TUTORIALS = REPO / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("[0-9][0-9]_*.ipynb"))
NOTEBOOK_BUDGET_S = 120

pytestmark = pytest.mark.slow


def test_the_course_exists():
    assert NOTEBOOKS, f"no numbered notebooks found in {TUTORIALS}"


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
def test_notebook_runs(path, monkeypatch, capsys):
    # The kernel is a subprocess: make it import minires from this checkout, not an installed copy.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=NOTEBOOK_BUDGET_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(TUTORIALS)}})
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    with capsys.disabled():
        print(f" [{path.stem}: {elapsed:.1f} s] ", end="", flush=True)
    assert elapsed < NOTEBOOK_BUDGET_S, (
        f"{path.name} took {elapsed:.0f} s; a tutorial must run in about a minute on a CPU: shrink its settings")
