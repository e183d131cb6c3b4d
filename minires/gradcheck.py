r"""Gradient checking: the analytic gradient against central finite differences, in float64.

For a function :math:`y = f(x_1, \dots, x_k)` the engine's backward computes vector-Jacobian
products :math:`\bar x = J^\top \bar y`. Finite differences estimate the same thing from forward
passes alone:

.. math::  \frac{\partial y}{\partial x_i} \approx \frac{f(x + \epsilon e_i) - f(x - \epsilon e_i)}{2\epsilon}

with error :math:`O(\epsilon^2)`; in float64 with :math:`\epsilon = 10^{-6}` that is about
:math:`10^{-10}` relative, far below any real bug.

* **full** mode builds both Jacobians entry by entry (one backward per output element, two
  forwards per input element): for small inputs, and it names the exact wrong entry.
* **directional** mode (Chainer's idea) checks :math:`\langle J^\top r, v\rangle` against
  :math:`\langle f(x + \epsilon v) - f(x - \epsilon v), r\rangle / 2\epsilon` for random :math:`r, v`:
  two forwards and one backward per direction, whatever the size.

:func:`gradgradcheck` checks second derivatives the same way: the first-order gradient
:math:`(x, \bar y) \mapsto J(x)^\top \bar y`, computed with ``create_graph=True``, is itself a
function, and :func:`gradcheck` compares its double-backward gradients with finite differences of it.
"""
from __future__ import annotations

import numpy as np

from . import backend
from .autograd import Tensor, enable_grad, grad, no_grad
from .functional import concatenate


class GradcheckError(AssertionError):
    """Raised when analytic and numerical gradients disagree; the message is the report."""


TOLERANCES = {"full": (1e-5, 1e-3), "directional": (1e-7, 1e-6)}


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float | None = None, rtol: float | None = None, mode: str = "auto",
              n_directions: int = 3, seed: int = 0, max_full: int = 400) -> bool:
    """Check ``fn``'s gradients with respect to every input that has ``requires_grad``.

    ``inputs`` is a tensor or a sequence of tensors (non-tensors are passed through); they must be
    float64 (a float32 check cannot resolve the differences). ``fn(*inputs)`` returns a tensor of any
    shape. Returns True, or raises :class:`GradcheckError` naming the input, the worst element, the
    analytic and the numerical value. ``mode``: "full", "directional", or "auto" (full when inputs and
    output have at most ``max_full`` elements each). ``atol``/``rtol`` default per mode
    (:data:`TOLERANCES`): a directional derivative sums many entries, so one wrong entry is diluted
    and the check must be tighter; float64 central differences are accurate to about 1e-9.
    """
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, so there is nothing to check")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; finite differences need float64 "
                            f"inputs (use .double() or dtype='float64')")
    with no_grad():
        out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    total_in = sum(inputs[i].size for i in checked)
    if mode == "auto":
        mode = "full" if total_in <= max_full and out.size <= max_full else "directional"
    if mode not in TOLERANCES:
        raise ValueError(f"gradcheck: mode must be 'auto', 'full' or 'directional', not {mode!r}")
    atol = TOLERANCES[mode][0] if atol is None else atol
    rtol = TOLERANCES[mode][1] if rtol is None else rtol
    if mode == "full":
        return _check_full(fn, inputs, checked, eps, atol, rtol)
    return _check_directional(fn, inputs, checked, eps, atol, rtol, n_directions, seed)


def gradgradcheck(fn, inputs, grad_outputs=None, eps: float = 1e-6, atol: float | None = None,
                  rtol: float | None = None, mode: str = "auto", n_directions: int = 3, seed: int = 0,
                  max_full: int = 400) -> bool:
    """Check ``fn``'s second derivatives (double backward) against finite differences, in float64.

    The function checked is :math:`g(x, \bar y) = J_f(x)^\top \bar y`, the gradients of
    ``fn(*inputs)`` for the inputs with ``requires_grad``, computed by ``autograd.grad`` with
    ``create_graph=True``; its own gradients (with respect to the inputs and to :math:`\bar y`) come
    from the double backward and are compared by :func:`gradcheck`. ``grad_outputs``: the
    :math:`\bar y` (a float64 Tensor with ``requires_grad``, or a sequence for several outputs), random
    normal from ``seed`` when None. The other arguments are :func:`gradcheck`'s. Returns True or raises
    :class:`GradcheckError`.
    """
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    checked = [x for x in inputs if isinstance(x, Tensor) and x.requires_grad]
    with no_grad():
        outputs = fn(*inputs)
    single = isinstance(outputs, Tensor)
    outputs = (outputs,) if single else tuple(outputs)
    if grad_outputs is None:
        rng = np.random.default_rng(seed)
        grad_outputs = [Tensor(backend.to_device(rng.standard_normal(y.shape), y.device), requires_grad=True)
                        for y in outputs]
    grad_outputs = [grad_outputs] if isinstance(grad_outputs, Tensor) else list(grad_outputs)

    def first_order(*args):
        xs, gys = args[:len(inputs)], args[len(inputs):]
        with enable_grad():   # gradcheck evaluates this under no_grad; the gradients need a graph
            ys = fn(*xs)
            ys = (ys,) if isinstance(ys, Tensor) else tuple(ys)
            grads = grad(ys, [x for x in xs if isinstance(x, Tensor) and x.requires_grad], gys,
                         create_graph=True, allow_unused=True)
        flat = [(g if g is not None else Tensor(np.zeros(x.shape)).to(x.device)).reshape(-1)
                for g, x in zip(grads, checked)]
        return flat[0] if len(flat) == 1 else concatenate(flat)

    return gradcheck(first_order, inputs + tuple(grad_outputs), eps=eps, atol=atol, rtol=rtol, mode=mode,
                     n_directions=n_directions, seed=seed, max_full=max_full)


def _forward_np(fn, inputs) -> np.ndarray:
    with no_grad():
        return np.array(fn(*inputs).numpy(), dtype=np.float64)


def _perturbed(fn, inputs, x, flat_index, delta) -> np.ndarray:
    """f with element ``flat_index`` of ``x`` moved by ``delta`` (restored afterwards)."""
    where = np.unravel_index(flat_index, x.shape)
    original = x.data[where].copy()
    x.data[where] = original + delta
    try:
        return _forward_np(fn, inputs)
    finally:
        x.data[where] = original


def _grads(fn, inputs, checked, out_grad=None, retain=False, out=None):
    """Analytic gradients of ``fn`` for the checked inputs (zeros where none arrived)."""
    for i in checked:
        inputs[i].grad = None
    y = fn(*inputs) if out is None else out
    y.backward(out_grad, retain_graph=retain)
    return [np.zeros(inputs[i].shape) if inputs[i].grad is None else inputs[i].grad.numpy().astype(np.float64)
            for i in checked], y


def _check_full(fn, inputs, checked, eps, atol, rtol) -> bool:
    y = fn(*inputs)
    if not y.requires_grad:
        raise GradcheckError("gradcheck: the output does not depend on any input that requires grad")
    basis = np.zeros(y.size)
    analytic = [np.zeros((y.size, inputs[i].size)) for i in checked]
    for j in range(y.size):
        basis[:] = 0
        basis[j] = 1
        grads, _ = _grads(fn, inputs, checked, Tensor(basis.reshape(y.shape)).to(y.device),
                          retain=True, out=y)
        for k, g in enumerate(grads):
            analytic[k][j] = g.ravel()
    for k, i in enumerate(checked):
        x = inputs[i]
        numeric = np.zeros_like(analytic[k])
        for e in range(x.size):
            diff = _perturbed(fn, inputs, x, e, eps) - _perturbed(fn, inputs, x, e, -eps)
            numeric[:, e] = diff.ravel() / (2 * eps)
        _compare(analytic[k], numeric, atol, rtol, f"input {i} (shape {x.shape})",
                 lambda j, e, shape=x.shape, out_shape=y.shape:
                 f"d output{_index(j, out_shape)} / d input{_index(e, shape)}")
    for i in checked:
        inputs[i].grad = None
    return True


def _check_directional(fn, inputs, checked, eps, atol, rtol, n_directions, seed) -> bool:
    rng = np.random.default_rng(seed)
    y0 = _forward_np(fn, inputs)
    r = rng.standard_normal(y0.shape)
    grads, _ = _grads(fn, inputs, checked, Tensor(r).to(inputs[checked[0]].device))
    for d in range(n_directions):
        directions = [rng.standard_normal(inputs[i].shape) for i in checked]
        analytic = sum(float((g * v).sum()) for g, v in zip(grads, directions))
        numeric = (_shifted(fn, inputs, checked, directions, eps) -
                   _shifted(fn, inputs, checked, directions, -eps)) / (2 * eps)
        numeric = float((numeric * r).sum())
        _compare(np.array([analytic]), np.array([numeric]), atol, rtol,
                 f"inputs {checked}", lambda j, e, d=d: f"random direction {d} (seed {seed})")
    for i in checked:
        inputs[i].grad = None
    return True


def _shifted(fn, inputs, checked, directions, step) -> np.ndarray:
    """f with every checked input moved by ``step * direction`` (restored afterwards)."""
    originals = [inputs[i].data.copy() for i in checked]
    try:
        for i, v in zip(checked, directions):
            x = inputs[i]
            x.data[...] = x.data + step * backend.to_device(v, x.device)
        return _forward_np(fn, inputs)
    finally:
        for i, original in zip(checked, originals):
            inputs[i].data[...] = original


def _index(flat, shape) -> tuple:
    return tuple(int(i) for i in np.unravel_index(flat, shape))


def _compare(analytic, numeric, atol, rtol, what, describe) -> None:
    error = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
    out = ~(error <= 0)     # a NaN or Inf entry (whose error is NaN or Inf) is out of tolerance too
    if not out.any():
        return
    worst = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(error), error, np.inf))), analytic.shape)
    j, e = (worst + (0,))[:2] if analytic.ndim >= 1 else (0, 0)
    raise GradcheckError(
        f"gradcheck failed for {what}: worst at {describe(j, e)}: analytic {analytic[worst]:.10g}, "
        f"numerical {numeric[worst]:.10g}, difference {abs(analytic[worst] - numeric[worst]):.3g} "
        f"(allowed atol {atol} + rtol {rtol} * |numerical|); "
        f"{int(out.sum())} of {error.size} entries out of tolerance")
