"""Teaching tools: look inside a backward pass and inside training.

* :class:`BackwardStepper` — step through a backward pass node by node (op, shapes, gradients,
  norms), breaking on NaN/Inf or a norm threshold; same gradients as ``backward()``.
* :class:`LayerRecorder` — per-layer activation statistics, gradient norms and update-to-weight
  ratios at chosen steps, via hooks; tables, arrays and plots.
* :class:`SkipPathSplit` — the gradient at each residual block's input, split into the part that
  came through the identity shortcut and the part that came through the branch.
* :func:`to_dot` / :func:`render` — the autograd graph as Graphviz DOT text (and an image).
* :func:`detect_anomaly` — raise naming the op at the first NaN/Inf, forward or backward.
"""
from ..autograd import detect_anomaly
from .graph import have_graphviz, render, to_dot
from .recorders import METRICS, LayerRecorder, plot_layer_curves, select_layers
from .skip import SkipPathSplit, plot_skip_split, residual_blocks
from .stepper import BackwardStepper, StepRecord, array_norm, step_backward

__all__ = ["BackwardStepper", "StepRecord", "step_backward", "array_norm", "LayerRecorder", "METRICS",
           "select_layers", "plot_layer_curves", "SkipPathSplit", "plot_skip_split", "residual_blocks",
           "to_dot", "render", "have_graphviz", "detect_anomaly"]
