"""Run a notebook cell by cell in a fresh kernel, keep going after errors, and say what each cell did.

One execution serves the grader, the book and the tests. For every code cell it records the error
it raised (if any) and how many ``assert`` statements it executed: an IPython AST transformer,
installed by a setup cell the notebook never sees, counts the ``assert`` statements each cell runs.
With ``probe_stubs=True`` the student version of every exercise cell runs just before the real one
(its stub raises first, so it changes nothing), which shows each stub failing in exactly the state
where its solution passes, without a second execution of the notebook.
"""
from __future__ import annotations

import copy
import json
import os
import pathlib
import time
from dataclasses import dataclass, field

from .editions import exercise_name, student_source, tags

_SETUP = '''\
import ast as _course_ast
from IPython import get_ipython as _course_ipython
_course_asserts = []          # one entry per cell run after this one: the asserts it executed

def _course_tally():
    _course_asserts[-1] += 1

class _CourseAssertTally(_course_ast.NodeTransformer):
    def visit_Assert(self, node):
        call = _course_ast.Call(_course_ast.Name("_course_tally", _course_ast.Load()), [], [])
        return [_course_ast.copy_location(_course_ast.Expr(call), node), node]

_course_ipython().ast_transformers.append(_CourseAssertTally())
_course_ipython().events.register("pre_run_cell", lambda info: _course_asserts.append(0))'''
_REPORT = "print(__import__('json').dumps(_course_asserts))"
_INJECTED = "course_injected"


@dataclass
class CellRun:
    """What one code cell of the notebook did: ``index`` in ``notebook.cells``, its error, its asserts."""
    index: int
    tags: list
    error: tuple | None          # (exception name, message) or None
    asserts: int


@dataclass
class Execution:
    """An executed notebook (injected cells removed) and what each of its code cells did."""
    notebook: object
    cells: list
    seconds: float
    probes: dict = field(default_factory=dict)   # exercise name -> error the student stub raised (or None)

    def errors(self) -> list[CellRun]:
        return [cell for cell in self.cells if cell.error is not None]


def kernel_env() -> dict:
    """The environment for the kernel: it must import this minires, even from a source checkout."""
    root = str(pathlib.Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def _injected(source: str, role: str, name: str | None = None):
    import nbformat

    return nbformat.v4.new_code_cell(source, metadata={_INJECTED: {"role": role, "exercise": name}})


def cell_error(cell) -> tuple | None:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return output["ename"], output["evalue"]
    return None


def _timeout_error(timeout: int) -> dict:
    return {"ename": "TimeoutError", "evalue": f"the cell ran longer than {timeout} s and was interrupted "
                                                f"(--timeout)", "traceback": []}


def _record_timeout(cell, cell_index, execute_reply) -> None:
    """A cell that ran out of time shows the timeout as its error, not the KeyboardInterrupt of the interrupt.

    nbclient hands this hook its stand-in reply for such a cell: ``_timeout_error``'s content, whose empty
    traceback no error raised in the kernel has."""
    content = execute_reply["content"]
    if content.get("ename") == "TimeoutError" and not content.get("traceback"):
        import nbformat

        cell.outputs = [output for output in cell.outputs if output.get("output_type") != "error"]
        cell.outputs.append(nbformat.v4.new_output("error", ename=content["ename"], evalue=content["evalue"],
                                                   traceback=[]))


def describe(cell) -> str:
    """``exercise 05.3``, or the cell's first line, for messages."""
    name = exercise_name(cell)
    first = next((line for line in cell.source.splitlines() if line.strip()), "")
    return f"exercise {name}" if name else f"the cell that begins {first[:60]!r}"


def execute_notebook(notebook, cwd, timeout: int = 120, probe_stubs: bool = False,
                     notebook_name: str = "the notebook") -> Execution:
    """Execute a copy of ``notebook`` (nbformat v4) in ``cwd``; every cell runs, errors or not.

    A cell that runs longer than ``timeout`` seconds is interrupted and records a ``TimeoutError``;
    the cells after it still run. A cell that ends the kernel raises a ``RuntimeError`` that names
    it and ``notebook_name``."""
    import nbclient

    work = copy.deepcopy(notebook)
    cells = [_injected(_SETUP, "setup")]
    for cell in work.cells:
        name = exercise_name(cell) if cell.cell_type == "code" else None
        if probe_stubs and name is not None:
            cells.append(_injected(student_source(cell.source, name), "probe", name))
        cells.append(cell)
    cells.append(_injected(_REPORT, "report"))
    work.cells = cells

    started = [cells[0]]   # the cells sent to the kernel, in order: the last one is running
    client = nbclient.NotebookClient(work, timeout=timeout, kernel_name="python3", allow_errors=True,
                                     interrupt_on_timeout=True, error_on_timeout=_timeout_error(timeout),
                                     on_cell_execute=lambda cell, cell_index: started.append(cell),
                                     on_cell_executed=_record_timeout, resources={"metadata": {"path": str(cwd)}})
    start = time.perf_counter()
    try:
        client.execute(env=kernel_env())
    except nbclient.exceptions.DeadKernelError as error:
        raise RuntimeError(f"{notebook_name}: the kernel died while running {describe(started[-1])} (the cell "
                           "ended the Python process, e.g. os._exit(), or a crash or lack of memory did); the cells "
                           "after it did not run") from error
    seconds = time.perf_counter() - start
    return _collect(work, seconds)


def _collect(work, seconds) -> Execution:
    report = work.cells[-1]
    if cell_error(report) is not None or not report.outputs:
        raise RuntimeError(f"the kernel did not report its assert counts: {cell_error(report)}")
    # nbclient runs every non-empty code cell once, in order: the counts line up with those cells
    ran = [cell for cell in work.cells[1:] if cell.cell_type == "code" and cell.source.strip()]
    counts = json.loads(report.outputs[0]["text"])
    if len(counts) != len(ran):
        raise RuntimeError(f"{len(ran)} cells ran but the kernel counted asserts for {len(counts)}")
    asserts = {id(cell): count for cell, count in zip(ran, counts)}
    probes, kept = {}, []
    for cell in work.cells:
        role = cell.metadata.get(_INJECTED, {}).get("role")
        if role == "probe":
            probes[cell.metadata[_INJECTED]["exercise"]] = cell_error(cell)
        elif role is None:
            kept.append(cell)
    work.cells = kept
    runs = [CellRun(index, tags(cell), cell_error(cell), asserts.get(id(cell), 0))
            for index, cell in enumerate(kept) if cell.cell_type == "code"]
    for number, run in enumerate(runs, start=1):   # In[] and Out[] prompts without the injected cells' gaps
        kept[run.index].execution_count = number
        for output in kept[run.index].outputs:
            if "execution_count" in output:
                output["execution_count"] = number
    return Execution(work, runs, seconds, probes)
