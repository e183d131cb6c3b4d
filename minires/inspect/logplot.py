"""Curves on a log y-axis that say what they could not draw.

A log axis has no place for zero, a negative value, NaN or Inf: matplotlib leaves a silent gap,
and a dead layer (a gradient of exactly zero) looks like a layer that was never measured.
:func:`plot_log_curve` draws the positive finite values, marks every other one with an ``x`` at
the bottom of the axis in the curve's colour, and says in the curve's label which points those
are and what they hold.
"""
from __future__ import annotations

import numpy as np


def plot_log_curve(ax, x, values, label: str, where: str, names=None, **style):
    """Plot ``values`` against ``x`` on ``ax`` (whose y-axis is or will be log), marking and naming
    the points a log axis cannot show. ``where`` names one point in the label ("layer", "block"), and
    ``names`` (default: ``x``) what the label calls each point."""
    x, values = np.asarray(x), np.asarray(values, dtype=float)
    names = x if names is None else np.asarray(names)
    hidden = ~(np.isfinite(values) & (values > 0))
    line, = ax.plot(x, np.where(hidden, np.nan, values), label=label + _hidden_note(names, values, hidden, where),
                    **style)
    if hidden.any():                         # y in axes coordinates: 0 is the bottom, whatever the limits
        ax.plot(x[hidden], np.zeros(hidden.sum()), transform=ax.get_xaxis_transform(), linestyle="none",
                marker="x", color=line.get_color(), clip_on=False, label="_not drawable")
    return line


def _hidden_note(names, values, hidden, where: str) -> str:
    """" (layers 2, 4 zero: not drawable on a log scale, ...)" for the label; "" when all is drawn."""
    if not hidden.any():
        return ""
    kinds = (("zero", values == 0), ("negative", values < 0), ("NaN/Inf", ~np.isfinite(values)))
    what = " or ".join(kind for kind, found in kinds if found.any())
    at = "all" if hidden.all() else f"{where}{'s' if hidden.sum() > 1 else ''} {', '.join(map(str, names[hidden]))}"
    return f" ({at} {what}: not drawable on a log scale, marked x at the bottom)"
