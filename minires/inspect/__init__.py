"""Teaching tools: look inside a backward pass and inside training.

* :class:`BackwardStepper` — step through a backward pass node by node (op, shapes, gradients,
  norms), breaking on NaN/Inf or a norm threshold; same gradients as ``backward()``.
* :class:`LayerRecorder` — per-layer activation statistics, gradient norms and update-to-weight
  ratios at chosen steps, via hooks; tables, arrays and plots.
* :class:`SkipPathSplit` — the gradient at each residual block's input, split into the part that
  came through the shortcut and the part that came through the branch.
* :func:`to_dot` / :func:`to_svg` / :func:`render` — the autograd graph, grouped by module (stage,
  block, layer) or collapsed to one node per block, as Graphviz DOT text or as an SVG that minires
  lays out itself (no system program needed).
* :func:`stepper_page` / :meth:`BackwardStepper.to_html` — the backward pass as one self-contained
  interactive HTML page: step forward and back, see each node's module, op and gradient norm, and
  the residual shortcut highlighted in the graph.
* :func:`detect_anomaly` — raise at the first NaN/Inf, forward or backward, naming where it started
  (the data, a parameter or buffer, or an op in a module) and the forward source line.
"""
from ..autograd import detect_anomaly
from .graph import graph_view, have_graphviz, render, to_dot
from .page import stepper_page
from .recorders import METRICS, LayerRecorder, plot_layer_curves, select_layers
from .skip import SkipPathSplit, plot_skip_split, residual_blocks
from .stepper import BackwardStepper, StepRecord, array_norm, step_backward
from .svg import to_svg

__all__ = ["BackwardStepper", "StepRecord", "step_backward", "array_norm", "LayerRecorder", "METRICS",
           "select_layers", "plot_layer_curves", "SkipPathSplit", "plot_skip_split", "residual_blocks",
           "to_dot", "to_svg", "graph_view", "render", "have_graphviz", "stepper_page", "detect_anomaly"]
