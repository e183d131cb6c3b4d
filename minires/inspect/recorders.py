r"""Per-layer statistics during training, collected with hooks: a :class:`LayerRecorder`.

For each chosen layer (by default every module that owns a ``weight``: convolutions, batch norms,
linear layers) and at each chosen step it records

* ``act_mean``, ``act_std``: mean and standard deviation of the layer's output (forward hook);
* ``act_grad_norm``: :math:`\|\partial L/\partial y\|`, the norm of the gradient arriving at the
  layer's output (a tensor hook that the forward hook puts on the output);
* ``weight_norm``, ``weight_grad_norm``: :math:`\|W\|` and :math:`\|\partial L/\partial W\|` (read from
  ``weight.grad`` at the end of the step);
* ``update_ratio``: :math:`\|W_{t+1} - W_t\| / \|W_t\|`, how far the optimizer moved the weight
  relative to its size (about 1e-3 is the usual healthy value; inf for a weight that was zero and moved).

Wrap the forward pass, ``backward()`` and the optimizer step of one iteration::

    rec = LayerRecorder(model, steps=[0, 100, 1000])
    for it, (x, y) in enumerate(loader):
        with rec.step(it):                 # records only at the chosen steps
            loss = F.cross_entropy(model(Tensor(x)), y)
            opt.zero_grad(); loss.backward(); opt.step()
    rec.table()                            # list of dicts, one per (step, layer)
    steps, layers, values = rec.array("weight_grad_norm")     # values: (steps, layers)
    rec.plot("act_grad_norm")              # one curve per step over layer depth

If a layer runs more than once in one step, the last call's statistics are kept. A metric that the
step did not measure (no backward inside the ``with`` block, say) is None in :meth:`~LayerRecorder.table`.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .logplot import plot_log_curve
from .stepper import array_norm, check_module

METRICS = ("act_mean", "act_std", "act_grad_norm", "weight_norm", "weight_grad_norm", "update_ratio")
METRIC_TITLES = {
    "act_mean": "mean of layer output", "act_std": "std of layer output",
    "act_grad_norm": "||dL/d output||", "weight_norm": "||W||", "weight_grad_norm": "||dL/dW||",
    "update_ratio": "||update|| / ||W||",
}


def select_layers(model, layers=None) -> list[tuple[str, object]]:
    """``(name, module)`` pairs in ``model.named_modules()`` order.

    ``layers``: None (every module that owns a ``weight``), a type or tuple of module types, one
    qualified name or a collection of them (each must name a module of ``model``), or a predicate
    ``fn(name, module) -> bool``.
    """
    if layers is None:
        keep = lambda name, m: _weight(m) is not None  # noqa: E731
    elif isinstance(layers, type) or (isinstance(layers, tuple) and all(isinstance(t, type) for t in layers)):
        keep = lambda name, m: isinstance(m, layers)  # noqa: E731
    elif callable(layers):
        keep = layers
    else:
        wanted = _existing_names(model, {layers} if isinstance(layers, str) else set(layers))
        keep = lambda name, m: name in wanted  # noqa: E731
    chosen = [(name, m) for name, m in model.named_modules() if keep(name, m)]
    if not chosen:
        raise ValueError(f"LayerRecorder: no layer of {type(model).__name__} matches layers={layers!r}")
    return chosen


def _existing_names(model, wanted: set) -> set:
    """``wanted``, if every name in it is a module of ``model``; else a ValueError naming those that are not."""
    names = [name for name, _ in model.named_modules() if name]
    unknown = sorted(wanted - set(names))
    if unknown:
        raise ValueError(f"LayerRecorder: {type(model).__name__} has no module named {', '.join(unknown)} "
                         f"(names as in a state dict: {', '.join(names[:4])}, ...)")
    return wanted


def _weight(module):
    """The module's own ``weight`` parameter, or None."""
    return vars(module).get("weight")


def output_stats(output) -> tuple[float, float]:
    """Mean and (biased) standard deviation of a tensor's values, in float64."""
    data = output.data.astype(np.float64) if hasattr(output.data, "astype") else output.data
    return float(data.mean()), float(data.std())


def ratio(update: float, size: float) -> float:
    """``update / size``; for a zero weight (a zero-initialised BN γ) inf if it moved, NaN if it did not."""
    if size > 0:
        return update / size
    return float("inf") if update > 0 else float("nan")


def _grad_norm_of_call(row: dict, call):
    """A tensor hook that stores the output gradient's norm in ``row`` if ``call`` is still the layer's last call."""
    def hook(grad):
        if row["call"] is call:
            row["act_grad_norm"] = array_norm(grad.data)
    return hook


class LayerRecorder:
    """Record per-layer activation and gradient statistics at chosen steps (see the module docstring).

    ``steps``: the step numbers to record (None: every step); ``every``: record when
    ``step % every == 0`` (overrides ``steps``). Call :meth:`close` (or use ``with``) to remove the hooks.
    """

    def __init__(self, model, layers=None, steps=None, every: int | None = None):
        if every is not None and every < 1:
            raise ValueError(f"LayerRecorder: every={every}: record every N-th step needs N >= 1 (or steps=[...])")
        check_module(model, "LayerRecorder")
        self.layers = select_layers(model, layers)
        self.layer_names = [name for name, _ in self.layers]
        self.steps = None if steps is None else set(steps)
        self.every = every
        self.records: list[dict] = []
        self._current: dict | None = None
        self._handles = [m.register_forward_hook(self._forward_hook(name)) for name, m in self.layers]

    # -- hooks
    def _forward_hook(self, name):
        def hook(module, inputs, output):
            if self._current is None:
                return None
            row = self._current[name]
            row["act_mean"], row["act_std"] = output_stats(output)
            row["call"] = call = object()                 # this call's statistics replace an earlier call's
            row.pop("act_grad_norm", None)
            if output.requires_grad:
                output.register_hook(_grad_norm_of_call(row, call))
            return None
        return hook

    def wants(self, step: int) -> bool:
        if self.every is not None:
            return step % self.every == 0
        return self.steps is None or step in self.steps

    @contextlib.contextmanager
    def step(self, step: int):
        """Record statistics of everything run inside the ``with`` block as step ``step`` (if chosen).

        A closed recorder records nothing."""
        if not self._handles or not self.wants(step):
            yield
            return
        self._current = {name: {"step": int(step), "layer": name, "type": type(m).__name__}
                         for name, m in self.layers}
        before = {name: _weight(m).data.copy() for name, m in self.layers if _weight(m) is not None}
        try:
            yield
        finally:
            current, self._current = self._current, None
        for name, m in self.layers:
            row, weight = current[name], _weight(m)
            if weight is not None:
                row["weight_norm"] = array_norm(before[name])
                if weight.grad is not None:
                    row["weight_grad_norm"] = array_norm(weight.grad.data)
                row["update_ratio"] = ratio(array_norm(weight.data - before[name]), row["weight_norm"])
            self.records.append({key: row.get(key) for key in ("step", "layer", "type") + METRICS})

    def close(self) -> None:
        """Remove the hooks from the model."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- results
    def table(self) -> list[dict]:
        """One plain dict per (step, layer): ``step``, ``layer``, ``type`` and every metric; None where the step
        did not measure it (no backward ran, no gradient reached the layer), NaN only where the values held
        NaN (or for ``update_ratio``'s 0/0, a zero weight that did not move)."""
        return list(self.records)

    def array(self, metric: str) -> tuple[np.ndarray, list, np.ndarray]:
        """``(steps, layer_names, values)`` with ``values[i, j]`` the metric at ``steps[i]`` for layer ``j``
        (NaN where it was not measured, as for plotting; :meth:`table` tells the two apart)."""
        if metric not in METRICS:
            raise ValueError(f"LayerRecorder.array: unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        if not self.records:
            chosen = f"every {self.every}" if self.every is not None else (
                "every step" if self.steps is None else f"steps {sorted(self.steps)}")
            raise ValueError(f"LayerRecorder.array: nothing recorded yet (it records at {chosen}); run each "
                             "iteration inside `with recorder.step(it):`, hooks attached (before close())")
        steps = sorted({r["step"] for r in self.records})
        column = {name: j for j, name in enumerate(self.layer_names)}
        values = np.full((len(steps), len(self.layer_names)), np.nan)
        row_of = {s: i for i, s in enumerate(steps)}
        for r in self.records:
            if r[metric] is not None:
                values[row_of[r["step"]], column[r["layer"]]] = r[metric]
        return np.array(steps), list(self.layer_names), values

    def plot(self, metric: str, ax=None, log: bool | None = None):
        """One curve per recorded step: ``metric`` against layer depth. Returns the matplotlib Axes."""
        steps, names, values = self.array(metric)
        return plot_layer_curves(values, [f"step {s}" for s in steps], metric, ax=ax, log=log,
                                 title=f"{METRIC_TITLES[metric]} per layer")


def plot_layer_curves(values, labels, metric: str, ax=None, log: bool | None = None, title: str = ""):
    """Plot rows of ``values`` (one per label) against layer index; log y-axis for norms by default."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    log = log if log is not None else metric not in ("act_mean",)
    for row, label in zip(np.atleast_2d(values), labels):
        layer = np.arange(1, len(row) + 1)
        if log:
            plot_log_curve(ax, layer, row, label, "layer", marker=".")
        else:
            ax.plot(layer, row, marker=".", label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("layer (input -> output)")
    ax.set_ylabel(METRIC_TITLES.get(metric, metric))
    ax.set_title(title or METRIC_TITLES.get(metric, metric))
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return ax
