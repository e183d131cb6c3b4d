r"""Step through a backward pass one graph node at a time, in the order the engine runs it.

The engine (:func:`minires.autograd.backward_steps`) is a generator: ``Tensor.backward`` exhausts it,
this stepper pulls from it one node at a time. Both therefore run *the same code on the same
arrays*, so a stepped backward leaves exactly (bit for bit) the gradients a plain ``backward()``
leaves; the stepper only looks.

At each node the engine has summed every gradient arriving at the node's output,
:math:`\bar y`, and has just computed the vector-Jacobian products it sends to each input,
:math:`\bar x_i = \bar y\,\partial y/\partial x_i`. A :class:`StepRecord` keeps both, with shapes and
Euclidean norms. Breaks: the stepper stops at the first non-finite gradient, or at the first whose
norm exceeds ``max_norm`` (exploding) or falls below ``min_norm`` (vanishing).

In a notebook::

    stepper = BackwardStepper(loss, names=model)
    stepper.step()            # one node; its record displays as a table row
    stepper.run()             # on to the next break (or the end); returns the breaking record
    stepper                   # the history as an HTML table (print(stepper) for text)
    stepper.to_html("backward.html")   # an interactive page: step back and forth, the graph highlighted

Each record names the module that ran its node (``layer2.1.conv1``, from :mod:`minires.scope`).
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np

from .. import backend, scope
from ..autograd import Tensor, _topological_order, backward_steps
from ..nn.module import Module


def array_norm(array) -> float:
    """The Euclidean norm of an array (NumPy or CuPy) as a Python float, computed in float64."""
    xp = backend.get_array_module(array)
    return float(xp.sqrt(xp.sum(xp.square(array.astype(xp.float64)))))


def check_root(root, who: str) -> None:
    """Refuse, saying why, what has no autograd graph behind it."""
    if not isinstance(root, Tensor):
        raise TypeError(f"{who}: expected a minires Tensor (a loss or an output), got {type(root).__name__}")
    if not root.requires_grad:
        raise ValueError(f"{who}: this tensor (shape {root.shape}) has no graph: it was computed under no_grad() "
                         "or from tensors that need no gradient; compute it with grad enabled from parameters or "
                         "inputs created with requires_grad=True")


def check_module(model, who: str) -> None:
    """Refuse, saying what is needed, a model that is not a Module (the recorders hook its layers)."""
    if not isinstance(model, Module):
        raise TypeError(f"{who}: expected a minires nn.Module (the model or a layer), got {type(model).__name__}; "
                        f"pass the model itself, as in {who}(model)")


def parameter_names(names) -> dict:
    """``{id(tensor): name}`` from a Module (its ``named_parameters()``) or a ``{name: tensor}`` dict."""
    if names is None:
        return {}
    if not hasattr(names, "named_parameters") and not isinstance(names, dict):
        raise TypeError(f"names= must be a Module or a {{name: tensor}} dict, got {type(names).__name__}")
    pairs = names.named_parameters() if hasattr(names, "named_parameters") else names.items()
    return {id(t): name for name, t in pairs}


def node_numbers(root: Tensor) -> dict:
    """``{id(tensor): k}``: the engine visits the tensor made by an op as step ``k`` (0 = the root)."""
    non_leaves = [t for t in reversed(_topological_order(root)) if t.grad_fn is not None]
    return {id(t): k for k, t in enumerate(non_leaves)}


def tensor_label(t: Tensor, numbers: dict, names: dict) -> str:
    """``#3 Conv2d @ layer1.0.conv1`` for a tensor made by step 3's op (in that module), a parameter's
    name, or ``leaf``."""
    if id(t) in names:
        return names[id(t)]
    if t.grad_fn is not None:
        label = f"#{numbers.get(id(t), '?')} {t.grad_fn.name}"
        path = t.grad_fn.module_path
        return label if path is None else f"{label} @ {scope.display(path)}"
    return "leaf"


@dataclass
class StepRecord:
    """One stepped node: its op, the module that ran it, shapes, the gradient that arrived and those it sent on.

    ``grad_out`` and ``grads_in`` are the engine's own arrays (``grads_in[i]`` and ``grads_in_norms[i]``
    are None where no gradient flows to input ``i``); treat them as read-only. ``module`` is the module path of the
    node (``layer2.1.conv1``; ``""`` for the model's own ops, None outside any module).
    """

    index: int
    op: str
    output_shape: tuple
    grad_out: object
    grad_out_norm: float
    input_labels: tuple
    input_shapes: tuple
    grads_in: tuple
    grads_in_norms: tuple
    module: str | None = None

    @property
    def where(self) -> str:
        """The module path as a reader sees it: ``layer2.1.conv1``, ``(model)``, or ``-`` outside modules."""
        return scope.display(self.module)

    @property
    def finite(self) -> bool:
        """False if the incoming gradient or any outgoing one holds a NaN or an Inf."""
        return all(math.isfinite(n) for n in (self.grad_out_norm,) + self.flowing_norms())

    def flowing_norms(self) -> tuple:
        return tuple(n for n in self.grads_in_norms if n is not None)

    def row(self) -> dict:
        """The record as plain data (no arrays): one row of :meth:`BackwardStepper.table`."""
        sends = [{"to": label, "shape": shape, "grad_norm": norm}
                 for label, shape, norm, g in zip(self.input_labels, self.input_shapes,
                                                  self.grads_in_norms, self.grads_in) if g is not None]
        return {"step": self.index, "module": self.where, "op": self.op, "output_shape": self.output_shape,
                "grad_out_norm": self.grad_out_norm, "sends": sends}

    def text(self) -> str:
        head = f"#{self.index:<4d} {self.where:<18s} {self.op:<16s} out {str(self.output_shape):<18s} |grad_out| {self.grad_out_norm:.4e}"
        lines = [head] + [f"        -> {s['to']:<24s} {str(s['shape']):<18s} |grad| {s['grad_norm']:.4e}"
                          for s in self.row()["sends"]]
        return "\n".join(lines)

    def __str__(self):
        return self.text()


def _html_table(records) -> str:
    cells = []
    for r in records:
        sends = "<br>".join(f"{html.escape(s['to'])} {s['shape']}: {s['grad_norm']:.3e}" for s in r.row()["sends"])
        cells.append(f"<tr><td>{r.index}</td><td>{html.escape(r.where)}</td><td>{html.escape(r.op)}</td><td>{r.output_shape}</td>"
                     f"<td>{r.grad_out_norm:.3e}</td><td style='text-align:left'>{sends}</td></tr>")
    head = "<tr><th>#</th><th>module</th><th>op</th><th>output</th><th>|grad arriving|</th><th>gradients sent (norm)</th></tr>"
    return f"<table>{head}{''.join(cells)}</table>"


class BackwardStepper:
    """Iterate over the backward pass from ``root`` node by node (see the module docstring).

    ``names``: a Module or ``{name: tensor}`` dict, to label parameters in the output.
    ``max_norm`` / ``min_norm``: break when a gradient's norm goes above / below; non-finite
    gradients always break (``break_on_nonfinite=False`` turns that off).
    Iterating (``for record in stepper``) walks every remaining node without breaking.
    """

    def __init__(self, root: Tensor, grad=None, retain_graph: bool = False, names=None,
                 max_norm: float | None = None, min_norm: float | None = None, break_on_nonfinite: bool = True):
        check_root(root, "BackwardStepper")
        self.root, self.names = root, names
        self._engine = backward_steps(root, grad, retain_graph=retain_graph)
        self._numbers = node_numbers(root)
        self._names = parameter_names(names)
        self.max_norm, self.min_norm, self.break_on_nonfinite = max_norm, min_norm, break_on_nonfinite
        self.history: list[StepRecord] = []
        self.done = False
        self.break_reason: str | None = None

    # -- moving
    def step(self) -> StepRecord | None:
        """Run one node of the backward pass; return its record, or None when the pass is over."""
        if self.done:
            return None
        try:
            step = next(self._engine)
        except StopIteration:
            self.done = True
            return None
        record = self._record(step)
        self.history.append(record)
        return record

    def run(self) -> StepRecord | None:
        """Step until a break condition holds (return that record, reason in ``break_reason``) or the end (None)."""
        while (record := self.step()) is not None:
            self.break_reason = self.reason_to_break(record)
            if self.break_reason:
                return record
        self.break_reason = None
        return None

    def finish(self) -> "BackwardStepper":
        """Run the rest of the pass, ignoring breaks."""
        for _ in self:
            pass
        return self

    def __iter__(self):
        while (record := self.step()) is not None:
            yield record

    def reason_to_break(self, record: StepRecord) -> str | None:
        """Why ``record`` should stop a :meth:`run`, or None."""
        at = f"#{record.index} {record.op} ({record.where})"
        if self.break_on_nonfinite and not record.finite:
            return f"non-finite gradient at {at}"
        norms = (record.grad_out_norm,) + record.flowing_norms()
        if self.max_norm is not None and max(norms) > self.max_norm:
            return f"gradient norm {max(norms):.3e} > max_norm {self.max_norm:g} at {at}"
        if self.min_norm is not None and min(norms) < self.min_norm:
            return f"gradient norm {min(norms):.3e} < min_norm {self.min_norm:g} at {at}"
        return None

    def _record(self, step) -> StepRecord:
        inputs = step.node.inputs
        return StepRecord(
            index=self._numbers.get(id(step.tensor), len(self.history)),
            op=step.node.name,
            output_shape=step.tensor.shape,
            grad_out=step.grad_out,
            grad_out_norm=array_norm(step.grad_out),
            input_labels=tuple(tensor_label(t, self._numbers, self._names) if t is not None else "-" for t in inputs),
            input_shapes=tuple(t.shape if t is not None else None for t in inputs),
            grads_in=tuple(step.grads_in[:len(inputs)]),
            grads_in_norms=tuple(None if g is None else array_norm(g) for g in step.grads_in[:len(inputs)]),
            module=step.node.module_path)

    # -- looking
    def table(self) -> list[dict]:
        """The history as plain data: one dict per stepped node (see :meth:`StepRecord.row`)."""
        return [r.row() for r in self.history]

    def grad_norms(self) -> np.ndarray:
        """Norm of the gradient arriving at each stepped node, in engine order."""
        return np.array([r.grad_out_norm for r in self.history])

    def __str__(self):
        status = "finished" if self.done else f"{len(self.history)} node(s) stepped, more to go"
        return "\n".join([f"BackwardStepper: {status}"] + [r.text() for r in self.history])

    def _repr_html_(self):
        return _html_table(self.history)

    def to_html(self, path, title: str | None = None):
        """Write an interactive page of this backward pass (see :mod:`minires.inspect.page`); runs the
        rest of the pass first. Returns the path written."""
        from .page import write_page  # the page draws the graph, which builds on this module
        return write_page(self, path, title=title)


def step_backward(root: Tensor, **kwargs) -> BackwardStepper:
    """Shorthand for :class:`BackwardStepper` ``(root, **kwargs)``."""
    return BackwardStepper(root, **kwargs)
