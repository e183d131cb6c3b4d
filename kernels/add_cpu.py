r"""The add :math:`y = a + b` for the CPU in Numba (``@njit(nogil=True)``): one pass over memory.

NumPy's ``a + b`` is one pass too, on one thread; this kernel exists so that an add can be split
over the threads like the other passes of a training step (the residual add, and autograd summing
the two gradients of a residual block's input). The driver, :mod:`minires.cpu.add`, hands it flat
views of equal-shaped arrays in one memory order and runs it on a slice per thread of minires'
pool, or, where the pass is too small for the pool and Numba's threads run on TBB, as one Numba
region (``add_split``: one ``prange`` iteration per slice and thread). One iteration of the loop
adds one pair of values (IEEE addition: NumPy's bits); LLVM vectorises the loop.
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
