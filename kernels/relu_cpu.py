r"""ReLU's backward for the CPU in Numba (``@njit(nogil=True)``): one pass over memory.

The math is :class:`~minires.functional.elementwise.NumpyReLU`'s: :math:`\bar x = \bar y\,[y > 0]`.
NumPy needs two passes for it: the mask :math:`[y > 0]` written out as floats, then multiplied by
:math:`\bar y` (read :math:`y`, write the mask; read it and :math:`\bar y`, write :math:`\bar x`).
Here one loop reads :math:`y` and :math:`\bar y` once and writes :math:`\bar x` once.

The driver, :mod:`minires.cpu.relu`, hands the kernel flat views of arrays in one memory order
and runs it on a slice per thread of minires' pool (:func:`~minires.cpu.threads.map_batch`); the
kernel is serial and ``nogil``, so those threads run at the same time. Where the pass is too small
for that pool and Numba's threads run on TBB, the slices run as one Numba region instead
(``relu_gradient_split``: one ``prange`` iteration per slice and thread). One iteration of the
kernel's loop handles one
value; LLVM vectorises the loop. It multiplies by the mask, as the reference does, rather than
selecting: the same bits, a NaN or infinite :math:`\bar y` where :math:`y \le 0` giving NaN and a
negative one :math:`-0.0`.
"""
from __future__ import annotations

from numba import njit, prange


@njit(nogil=True, cache=True)
def relu_gradient(gy, y, gx):
    """``gx[i] = gy[i] * [y[i] > 0]`` over the 1-D arrays (``gx`` may be ``gy``)."""
    for i in range(y.size):
        gx[i] = gy[i] * (y[i] > 0)


@njit(parallel=True, nogil=True, cache=True)
def relu_gradient_split(gy, y, gx, bounds):
    """``relu_gradient`` of the 1-D arrays, seen as ``bounds[-1]`` rows of equal length, the rows
    ``[bounds[t], bounds[t+1])`` as one stretch each, all in one Numba region (on TBB: see
    :mod:`minires.cpu.numba_layer`), iteration ``t`` of the prange on its own thread."""
    row = y.size // bounds[-1]
    for t in prange(bounds.size - 1):
        lo, hi = bounds[t] * row, bounds[t + 1] * row
        relu_gradient(gy[lo:hi], y[lo:hi], gx[lo:hi])
