"""The add of two equal-shaped arrays on the CPU, split over the threads (the Numba kernel of
``kernels/add_cpu.py``; ``numba``, the CPU default for the op ``"add"`` when Numba is installed).

NumPy's ``a + b`` runs on one thread. A training step adds activations and gradients of the
largest sizes it has: each residual block's output (the branch plus the shortcut) and, in the
backward pass, the two gradients of each block's input. Here the add is one pass over the arrays
in their memory order (NCHW or channels last, :class:`~minires.cpu.pointwise.ChannelRows`), its
slices on minires' pool, or as one Numba region where the pass is too small for the pool and
Numba's threads run on TBB (:func:`~minires.cpu.numba_layer.run_pass`). Every value is added
alone, so the result has NumPy's bits. Anything else (broadcasting, mixed dtypes or layouts, other
dtypes, fewer than two dimensions) is NumPy's ``a + b``.
``backend.use("add", "numpy")`` switches back to it.
"""
from __future__ import annotations

import functools
import importlib.util

from .. import backend
from . import numba_layer
from .batchnorm import KERNEL_DTYPES
from .pointwise import ChannelRows


@functools.cache
def _kernels():
    from ..kernels import add_cpu  # compiles (or loads from Numba's cache) on first use
    return add_cpu


class NumbaAdd:
    """``forward(a, b) -> a + b``: one pass, split over the threads, for equal shapes and layouts."""

    @staticmethod
    def forward(a, b):
        if not _splittable(a, b):
            return a + b
        layout, kernels = ChannelRows(a), _kernels()
        y = layout.empty_like()
        rows, b_rows, out = layout.rows, layout.rows_of(b), layout.rows_of(y)
        numba_layer.run_pass(rows, kernels.add, kernels.add_split,
                             lambda s: (rows[s].reshape(-1), b_rows[s].reshape(-1), out[s].reshape(-1)))
        return y


def _splittable(a, b) -> bool:
    """Whether the kernel takes ``a + b``: equal shapes, one dtype it compiles for, at least two
    dimensions, and both arrays in the same memory order, NCHW or channels last."""
    if (a.shape != b.shape or a.dtype != b.dtype or a.dtype not in KERNEL_DTYPES or a.ndim < 2
            or a.size == 0):
        return False
    return ((a.flags.c_contiguous and b.flags.c_contiguous)
            or (_channels_last(a) and _channels_last(b)))


def _channels_last(a) -> bool:
    return a.transpose(0, *range(2, a.ndim), 1).flags.c_contiguous


if importlib.util.find_spec("numba") is not None:
    backend.register("add", "numba", device="cpu", default=True)(NumbaAdd)
