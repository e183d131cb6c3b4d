"""The rendered book: every tutorial executed and written as a static HTML page, plus an index page.

Pages use nbconvert's HTML exporter with the ``book`` template (``templates/book``): JupyterLab's
look, figures embedded as data URIs, and no script or style fetched from the network, so the book
opens offline from the file system. Formulas are converted to MathML, which browsers render
natively, by ``latex2mathml`` when it is installed (the ``dev`` and ``tutorials`` extras bring it);
without it they stay in TeX source (MathJax would have to come from a CDN). Instructor notes are
left out. A cell that raises stops the build with a ``BookError`` that names it.
"""
from __future__ import annotations

import copy
import datetime
import html
import pathlib
import re

from .editions import INSTRUCTOR_TAG, course_notebooks, read_notebook, tags
from .execute import execute_notebook

TEMPLATES = pathlib.Path(__file__).resolve().parent / "templates"
# a code span (left alone), display math $$...$$, or inline math $...$
_CODE_OR_MATH = re.compile(r"(`+)(.+?)\1|\$\$(.+?)\$\$|\$(.+?)\$", re.S)


class BookError(RuntimeError):
    """The book was not built: a tutorial raised, or the output folder would lose a file."""


def chapter_title(notebook, fallback: str) -> str:
    """The first Markdown heading of the notebook, without the leading ``#``."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def without_instructor_notes(notebook):
    notebook.cells = [cell for cell in notebook.cells if INSTRUCTOR_TAG not in tags(cell)]
    return notebook


def tex_to_mathml(markdown: str) -> str:
    """``markdown`` with its ``$...$`` and ``$$...$$`` formulas as MathML (code spans untouched)."""
    from latex2mathml.converter import convert

    def replace(match):
        if match.group(1):
            return match.group(0)
        display = match.group(3) is not None
        return convert((match.group(3) if display else match.group(4)).strip(), display="block" if display else "inline")

    return _CODE_OR_MATH.sub(replace, markdown)


def with_mathml(notebook):
    """The notebook with the formulas of its Markdown cells in MathML; unchanged without ``latex2mathml``."""
    try:
        import latex2mathml  # noqa: F401
    except ImportError:
        return notebook
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = tex_to_mathml(cell.source)
    return notebook


def execution_errors(name: str, execution) -> list[str]:
    return [f"{name}, cell {run.index}: {run.error[0]}: {run.error[1]}" for run in execution.errors()]


def build_book(out, source_dir, executions=None, timeout: int = 120) -> list[pathlib.Path]:
    """Execute the tutorials in ``source_dir`` (or take ``executions``: stem -> ``Execution`` already run)
    and write ``index.html`` plus one page per tutorial into ``out``; returns the paths, index first."""
    from nbconvert import HTMLExporter

    paths = course_notebooks(source_dir)
    if not paths:
        raise FileNotFoundError(f"no numbered notebooks (NN_name.ipynb) in {source_dir}")
    check_out_folder(out, source_dir)
    executions = dict(executions or {})
    problems = []
    for path in paths:
        if path.stem not in executions:
            executions[path.stem] = execute_notebook(read_notebook(path), path.parent, timeout, notebook_name=str(path))
        problems += execution_errors(path.name, executions[path.stem])
    if problems:
        raise BookError("the book was not built; these cells raised:\n  " + "\n  ".join(problems))

    chapters = [{"href": f"{path.stem}.html", "title": chapter_title(executions[path.stem].notebook, path.stem),
                 "notebook": with_mathml(without_instructor_notes(copy.deepcopy(executions[path.stem].notebook)))} for path in paths]
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="book", extra_template_basedirs=[str(TEMPLATES)])
    written = [out / "index.html"]
    for number, chapter in enumerate(chapters):
        neighbours = {"previous": chapters[number - 1] if number > 0 else None,
                      "next": chapters[number + 1] if number + 1 < len(chapters) else None}
        body, _ = exporter.from_notebook_node(chapter["notebook"], resources={
            "book": neighbours, "metadata": {"name": chapter["title"]}})
        (out / chapter["href"]).write_text(body, encoding="utf-8")
        written.append(out / chapter["href"])
    written[0].write_text(index_page(chapters), encoding="utf-8")
    return written


GENERATOR = '<meta name="generator" content="minires course book">'  # marks the index of a book this code wrote


def check_out_folder(out, source_dir) -> None:
    """Refuse (``BookError``, before any notebook runs) an ``out`` that is the course folder itself, or
    that holds an ``index.html`` other than a minires book's: the book would overwrite it."""
    out, source_dir = pathlib.Path(out), pathlib.Path(source_dir)
    if out.resolve() == source_dir.resolve():
        raise BookError(f"the output folder {out} is the course's own folder: the book's pages would mix with the "
                        "notebooks; choose another folder, e.g. --out book/")
    index = out / "index.html"
    if index.is_file() and GENERATOR not in index.read_text(encoding="utf-8", errors="replace"):
        raise BookError(f"{index} exists and is not the index of a minires book: building the book would overwrite "
                        "it; choose another folder, or remove it")


def index_page(chapters) -> str:
    from minires import __version__

    items = "\n".join(f'    <li><a href="{html.escape(c["href"])}">{html.escape(c["title"])}</a></li>'
                      for c in chapters)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
{GENERATOR}
<title>minires: residual networks from scratch</title>
<style>body {{ font-family: sans-serif; max-width: 48em; margin: 2em auto; line-height: 1.5; }}</style>
</head>
<body>
<h1>minires: residual networks from scratch</h1>
<p>A course in {len(chapters)} notebooks, from a scalar derivative to a ResNet. Each page is the notebook
executed with minires {html.escape(__version__)} on {datetime.date.today().isoformat()}; open the notebooks
themselves (<code>jupyter lab tutorials/</code>) to run and change them.</p>
<ol>
{items}
</ol>
</body>
</html>
"""
