r"""ReLU for the CPU in Numba (``@njit(nogil=True)``): forward and backward, one pass over memory each.

The math is :class:`~minires.functional.elementwise.NumpyReLU`'s: :math:`y = \max(x, 0)` and
:math:`\bar x = \bar y\,[y > 0]`. The forward is ``np.maximum``'s one pass (written here so that a
small one can run as a Numba region, below); it keeps ``np.maximum``'s bits: a NaN stays NaN and
:math:`-0.0` becomes :math:`0.0`. For the backward NumPy needs two passes: the mask
:math:`[y > 0]` written out as floats, then multiplied by :math:`\bar y` (read :math:`y`, write
the mask; read it and :math:`\bar y`, write :math:`\bar x`). Here one loop reads :math:`y` and
:math:`\bar y` once and writes :math:`\bar x` once.

The driver, :mod:`minires.cpu.relu`, hands the kernels flat views of arrays in one memory order
and runs them on a slice per thread of minires' pool (:func:`~minires.cpu.threads.map_batch`); the
kernels are serial and ``nogil``, so those threads run at the same time. Where Numba's threads run
on TBB, the slices of all but a tiny pass run as one Numba region instead (``relu_split``,
``relu_gradient_split``: one ``prange`` iteration per slice and thread). One iteration of a
kernel's loop handles one value; LLVM vectorises the loops. The backward multiplies by the mask, as
the reference does, rather than selecting: the same bits, a NaN or infinite :math:`\bar y` where
:math:`y \le 0` giving NaN and a negative one :math:`-0.0`.
"""
from __future__ import annotations

from numba import njit, prange


@njit(nogil=True, cache=True)
def relu(x, y):
    """``y[i] = max(x[i], 0)`` over the 1-D arrays, as ``np.maximum``: NaN kept, -0.0 made 0.0."""
    for i in range(x.size):
        y[i] = 0 if x[i] <= 0 else x[i]


@njit(nogil=True, cache=True)
def relu_gradient(gy, y, gx):
    """``gx[i] = gy[i] * [y[i] > 0]`` over the 1-D arrays (``gx`` may be ``gy``)."""
    for i in range(y.size):
        gx[i] = gy[i] * (y[i] > 0)


@njit(parallel=True, nogil=True, cache=True)
def relu_split(x, y, bounds):
    """``relu`` of the 1-D arrays in stretches, one per thread, as ``relu_gradient_split`` below."""
    row = x.size // bounds[-1]
    for t in prange(bounds.size - 1):
        lo, hi = bounds[t] * row, bounds[t + 1] * row
        relu(x[lo:hi], y[lo:hi])


@njit(parallel=True, nogil=True, cache=True)
def relu_gradient_split(gy, y, gx, bounds):
    """``relu_gradient`` of the 1-D arrays, seen as ``bounds[-1]`` rows of equal length, the rows
    ``[bounds[t], bounds[t+1])`` as one stretch each, all in one Numba region (on TBB: see
    :mod:`minires.cpu.numba_layer`), iteration ``t`` of the prange on its own thread."""
    row = y.size // bounds[-1]
    for t in prange(bounds.size - 1):
        lo, hi = bounds[t] * row, bounds[t + 1] * row
        relu_gradient(gy[lo:hi], y[lo:hi], gx[lo:hi])
