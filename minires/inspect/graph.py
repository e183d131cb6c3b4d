"""The autograd graph of an expression as Graphviz DOT text, and as an image when Graphviz is installed.

Ops are boxes labelled with the op's name and output shape; leaves (inputs, parameters) are
ellipses labelled with their name (when known) and shape. Edges point the way the data flows
(input -> op). After a backward pass, pass the :class:`~minires.inspect.BackwardStepper` that ran
it (or just call ``backward()``: leaves then show the norm of their ``.grad``) and each op also
shows the norm of the gradient that arrived at its output::

    stepper = BackwardStepper(loss, retain_graph=True).finish()
    print(to_dot(loss, stepper=stepper, names=model))
    render(to_dot(loss), "graph.png")      # None (and nothing written) without the `dot` binary
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..autograd import Tensor, _topological_order
from .stepper import array_norm, node_numbers, parameter_names


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _label(t: Tensor, number, names: dict, arrived: dict) -> tuple[str, str]:
    """(label, shape) of one graph vertex: an op's output or a leaf."""
    shape = "x".join(str(n) for n in t.shape) or "scalar"
    if t.grad_fn is not None:
        lines = [f"#{number} {t.grad_fn.name}", shape]
        if id(t) in arrived:
            lines.append(f"|grad| {arrived[id(t)]:.3e}")
        return "\n".join(lines), "box"
    lines = [names.get(id(t), "leaf"), shape]
    if t.grad is not None:
        lines.append(f"|grad| {array_norm(t.grad.data):.3e}")
    return "\n".join(lines), "ellipse"


def to_dot(root: Tensor, stepper=None, names=None, title: str | None = None) -> str:
    """DOT text for the graph that produced ``root`` (see the module docstring).

    ``stepper``: a BackwardStepper whose history supplies the gradient norms at each op.
    ``names``: a Module or ``{name: tensor}`` dict, to label parameters.
    """
    numbers = node_numbers(root) if root.grad_fn is not None else {}
    names = parameter_names(names)
    arrived = {}
    if stepper is not None:
        by_number = {r.index: r.grad_out_norm for r in stepper.history}
        arrived = {tid: by_number[k] for tid, k in numbers.items() if k in by_number}
    lines = ["digraph autograd {", "  rankdir=BT;", '  node [fontname="Helvetica", fontsize=10];']
    if title:
        lines.append(f"  labelloc=t; label={_quote(title)};")
    for t in _topological_order(root):
        label, shape = _label(t, numbers.get(id(t)), names, arrived)
        lines.append(f"  t{id(t)} [label={_quote(label)}, shape={shape}];")
        if t.grad_fn is not None:
            lines += [f"  t{id(inp)} -> t{id(t)};" for inp in t.grad_fn.inputs if inp is not None]
    lines.append("}")
    return "\n".join(lines) + "\n"


def have_graphviz() -> bool:
    """Whether Graphviz's ``dot`` program is on the PATH."""
    return shutil.which("dot") is not None


def render(dot_text: str, path, fmt: str | None = None) -> Path | None:
    """Write ``dot_text`` as an image (format from the suffix: png, svg, pdf) with Graphviz.

    Returns the path written, or None when the ``dot`` program is not installed (nothing is
    written; the DOT text itself can be pasted into any Graphviz viewer).
    """
    if not have_graphviz():
        return None
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".") or "png"
    subprocess.run(["dot", f"-T{fmt}", "-o", str(path)], input=dot_text.encode(), check=True)
    return path
