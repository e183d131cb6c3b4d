r"""The sum of two arrays of one shape on the CPU threads (``numba``, the CPU default for the op
``"add"`` when Numba is installed): the residual add of :class:`~minires.functional.elementwise.Add`,
and the engine's sum of two gradients sent to one tensor (:func:`minires.autograd.backward_steps`;
a residual block's input gets one from its branch and one from its shortcut).

NumPy's ``a + b`` runs on one thread. Where Numba's threads run on TBB, the sum of two large arrays
of one shape, dtype and memory layout (NCHW or channels last, :class:`~minires.cpu.pointwise.ChannelRows`)
runs as one Numba region instead (``kernels/add_cpu.py``, on the rows of
:func:`~minires.cpu.numba_layer.region_bounds`): the same additions, so the same bits, and the
output in NumPy's layout. Anything else (broadcasting, mixed dtypes or layouts, small arrays, one
thread) is NumPy's ``a + b``.
``backend.use("add", "numpy")`` switches back to it everywhere.
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
    """``forward(a, b) -> a + b``, split over the threads where that pays."""

    @staticmethod
    def forward(a, b):
        if (a.shape != b.shape or a.dtype != b.dtype or a.strides != b.strides or a.ndim < 2
                or a.dtype not in KERNEL_DTYPES or a.size < numba_layer.MIN_REGION_PASS):
            return a + b
        layout = ChannelRows(a)
        bounds = numba_layer.region_bounds(layout.rows)
        if bounds is None or layout.array is not a:     # off TBB, one thread; or a layout NumPy picks for y
            return a + b
        y = layout.empty_like()
        _kernels().add_split(layout.rows.reshape(-1), layout.rows_of(b).reshape(-1), layout.rows_of(y).reshape(-1),
                             bounds)
        return y


if importlib.util.find_spec("numba") is not None:
    backend.register("add", "numba", device="cpu", default=True)(NumbaAdd)
