r"""The elementwise sum of two arrays for the CPU in Numba (``@njit(nogil=True)``): the residual add
and the engine's sum of two gradients of one tensor.

:math:`y = a + b`, one IEEE addition per value, so the bits are NumPy's ``a + b``. The driver,
:mod:`minires.cpu.add`, hands the kernels flat views of arrays in one memory order; where Numba's
threads run on TBB a large sum runs as one Numba region (``add_split``: one ``prange`` iteration
per thread, each over its stretch of the rows), where NumPy's ``a + b`` would run on one thread. One
iteration of ``add``'s loop handles one value; LLVM vectorises the loop.
"""
from __future__ import annotations

from numba import njit, prange


@njit(nogil=True, cache=True)
def add(a, b, y):
    """``y[i] = a[i] + b[i]`` over the 1-D arrays."""
    for i in range(a.size):
        y[i] = a[i] + b[i]


@njit(parallel=True, nogil=True, cache=True)
def add_split(a, b, y, bounds):
    """``add`` of the 1-D arrays, seen as ``bounds[-1]`` rows of equal length, the rows
    ``[bounds[t], bounds[t+1])`` as one stretch each, iteration ``t`` of the prange on its own thread."""
    row = a.size // bounds[-1]
    for t in prange(bounds.size - 1):
        lo, hi = bounds[t] * row, bounds[t + 1] * row
        add(a[lo:hi], b[lo:hi], y[lo:hi])
