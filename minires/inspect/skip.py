r"""How much gradient reaches a residual block's input through the shortcut, and how much through the branch.

A block computes :math:`y = \sigma(s)` with :math:`s = \mathcal F(x) + \mathrm{shortcut}(x)`. Its input
:math:`x` feeds two consumers, so the engine sums two vector-Jacobian products into :math:`\bar x`:

.. math::  \bar x = \underbrace{J_{\mathrm{shortcut}}^\top \bar s}_{\text{shortcut path}}
                  + \underbrace{J_{\mathcal F}^\top \bar s}_{\text{residual branch}}

For an identity shortcut the first term is :math:`\bar s` itself: the gradient skips the block
unchanged. This is the paper's argument in one line, and the split measures both terms. Where a
block changes the shape, the shortcut subsamples and zero-pads (option A) or projects (B, C), and
the first term is that op's backward of :math:`\bar s`; the rows keep the name ``identity_norm``
for it, and the plot calls it the shortcut.

How it is measured (no second backward, no approximation). During the forward pass, hooks
capture each block's input :math:`x` (a pre-hook on the block) and its branch output
:math:`\mathcal F(x)` (a hook on ``block.branch_end``). The graph nodes between them — found by
walking back from :math:`\mathcal F(x)` and stopping at :math:`x` — are the branch. The backward
then runs through the engine's own generator (:func:`minires.autograd.backward_steps`, the same
code as ``backward()``), and every gradient a node sends to a captured :math:`x` is added to the
"branch" sum if the node belongs to that block's branch and to the "identity" sum otherwise (the
add itself for an identity shortcut, or the shortcut's subsample/pad or projection). The two sums
add up exactly to :math:`\bar x`.

In a pre-activation block with a projection shortcut, the shared :math:`\mathrm{relu}(\mathrm{bn}(x))`
feeds both paths; it is counted with the branch. A plain block has only the branch. Blocks that are
lesioned (or never run their branch) are left out.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..autograd import Tensor, _topological_order, backward_steps
from .logplot import plot_log_curve
from .stepper import array_norm, check_module


def _no_parts() -> dict:
    return {"identity": None, "branch": None}


@dataclass
class _Capture:
    name: str
    index: int
    x: Tensor | None = None
    branch_out: Tensor | None = None
    parts: dict = field(default_factory=_no_parts)


def residual_blocks(model) -> list[tuple[str, object]]:
    """``(name, block)`` for every module of ``model`` that exposes ``branch_end`` (a residual/plain block)."""
    return [(name, m) for name, m in model.named_modules() if hasattr(type(m), "branch_end")]


def branch_nodes(branch_out: Tensor, x: Tensor) -> set:
    """ids of the graph nodes on the way back from ``branch_out`` to ``x`` (``x``'s own maker excluded)."""
    nodes, seen, stack = set(), set(), [branch_out]
    while stack:
        t = stack.pop()
        if t is x or id(t) in seen or t.grad_fn is None:
            continue
        seen.add(id(t))
        nodes.add(id(t.grad_fn))
        stack.extend(i for i in t.grad_fn.inputs if i is not None)
    return nodes


class SkipPathSplit:
    """Split the gradient at each block's input into its identity-path and branch parts.

    ::

        with SkipPathSplit(model) as split:          # hooks capture x and F(x) of every block
            loss = F.cross_entropy(model(x), y)
        rows = split.backward(loss)                  # runs the backward; one dict per block

    Each row: ``block`` (name), ``index`` (0 = nearest the input), ``identity_norm``,
    ``branch_norm``, ``total_norm`` (of their sum, :math:`\\|\\bar x\\|`), ``branch_share``
    (``branch_norm / (identity_norm + branch_norm)``). ``parts(i)`` gives block ``i``'s two arrays.
    """

    def __init__(self, model, blocks=None):
        check_module(model, "SkipPathSplit")
        named = residual_blocks(model) if blocks is None else list(blocks)
        if not named:
            raise ValueError(f"SkipPathSplit: {type(model).__name__} has no blocks with a branch_end; "
                             "pass blocks=[(name, block), ...] explicitly")
        self.captures = [_Capture(name, k) for k, (name, _) in enumerate(named)]
        self._blocks = [block for _, block in named]
        self._handles = []

    def __enter__(self):
        for capture, block in zip(self.captures, self._blocks):
            self._handles.append(block.register_forward_pre_hook(self._take_input(capture)))
            self._handles.append(block.branch_end.register_forward_hook(self._take_branch(capture)))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @staticmethod
    def _take_input(capture):
        def hook(module, inputs):
            capture.x, capture.branch_out = inputs[0], None
        return hook

    @staticmethod
    def _take_branch(capture):
        def hook(module, inputs, output):
            capture.branch_out = output
        return hook

    def backward(self, loss: Tensor, grad=None) -> list[dict]:
        """Run the backward pass from ``loss`` (gradients land in ``.grad`` as usual); return the rows."""
        active = self._watched_in(loss)
        for c in active:
            c.parts = _no_parts()
        watched = {id(c.x): (c, branch_nodes(c.branch_out, c.x)) for c in active}
        for step in backward_steps(loss, grad):
            for inp, g in zip(step.node.inputs, step.grads_in):
                if inp is None or g is None or id(inp) not in watched:
                    continue
                capture, branch = watched[id(inp)]
                path = "branch" if id(step.node) in branch else "identity"
                before = capture.parts[path]
                capture.parts[path] = g if before is None else before + g
        return [self._row(c) for c in active]

    def _watched_in(self, loss: Tensor) -> list:
        """The captures of blocks that ran (lesioned ones left out), refusing a loss that none of them feeds."""
        active = [c for c in self.captures if c.x is not None and c.branch_out is not None and c.x.requires_grad]
        if not active:
            raise ValueError("SkipPathSplit.backward: no block ran inside `with SkipPathSplit(model)` (or every "
                             "block was lesioned); run the forward pass inside the `with` block")
        reached = {id(t) for t in _topological_order(loss)}
        missing = [c.name for c in active if id(c.x) not in reached]
        if missing:
            raise ValueError(f"SkipPathSplit.backward: the loss does not depend on the inputs captured for "
                             f"{', '.join(missing)}; compute the loss from the forward pass run inside the "
                             "`with` block (the last one there)")
        return active

    def parts(self, index: int) -> tuple:
        """Block ``index``'s (identity part, branch part) of the input gradient; None where no gradient came."""
        parts = self.captures[index].parts
        return parts["identity"], parts["branch"]

    @staticmethod
    def _row(capture) -> dict:
        identity, branch = capture.parts["identity"], capture.parts["branch"]
        n_id = array_norm(identity) if identity is not None else 0.0
        n_br = array_norm(branch) if branch is not None else 0.0
        present = [p for p in (identity, branch) if p is not None]
        total = array_norm(sum(present[1:], present[0])) if present else 0.0
        return {"block": capture.name, "index": capture.index, "identity_norm": n_id, "branch_norm": n_br,
                "total_norm": total, "branch_share": n_br / (n_id + n_br) if n_id + n_br > 0 else float("nan")}


def plot_skip_split(rows, ax=None, title: str = "gradient reaching each block's input"):
    """Shortcut-path (``identity_norm``) and branch norms per block (log scale). Returns the matplotlib Axes."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    index = np.array([r["index"] + 1 for r in rows])
    for key, label, marker in (("identity_norm", "through the shortcut", "o"),
                               ("branch_norm", "through the residual branch", "s"),
                               ("total_norm", "total (sum of both)", "")):
        plot_log_curve(ax, index, [r[key] for r in rows], label, "block", marker=marker or None,
                       linestyle="--" if key == "total_norm" else "-")
    ax.set_yscale("log")
    ax.set_xlabel("block (input -> output)")
    ax.set_ylabel("gradient norm at block input")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return ax
