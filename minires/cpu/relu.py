r"""ReLU on the CPU in one pass each way (the Numba kernels of ``kernels/relu_cpu.py``; ``numba``,
the CPU default when Numba is installed).

The forward, :math:`y = \max(x, 0)`, is ``np.maximum``'s one pass with its bits; the backward,
:math:`\bar x = \bar y\,[y > 0]`, reads :math:`y` and :math:`\bar y` once and writes :math:`\bar x`
once, where NumPy writes the mask and reads it back. Arrays are seen in the input's memory order
(NCHW or channels last, :class:`~minires.cpu.pointwise.ChannelRows`; other layouts, and a
:math:`\bar y` in another, copied into it); slices of the batch run on minires' threads as the NumPy
passes do (:func:`~minires.cpu.pointwise.map_pass`), or, where Numba's threads run on TBB, as one
Numba region (:func:`~minires.cpu.numba_layer.run_pass`; a tiny pass on one thread). Other dtypes,
arrays of fewer than two dimensions and empty ones take the NumPy passes.
``backend.use("relu", "numpy-threads")`` switches back to them.
"""
from __future__ import annotations

import functools
import importlib.util

from .. import backend
from . import numba_layer
from .batchnorm import KERNEL_DTYPES
from .pointwise import ChannelRows, ThreadedAddReLU, ThreadedReLU


@functools.cache
def _kernels():
    from ..kernels import relu_cpu  # compiles (or loads from Numba's cache) on first use
    return relu_cpu


class NumbaReLU:
    """``forward(x) -> max(x, 0)``; ``backward(gy, y) -> gy [y > 0]``; one pass each."""

    @staticmethod
    def forward(x):
        if x.ndim < 2 or x.size == 0 or x.dtype not in KERNEL_DTYPES:
            return ThreadedReLU.forward(x)
        layout, kernels = ChannelRows(x), _kernels()
        y = layout.empty_like()
        rows, out = layout.rows, layout.rows_of(y)
        numba_layer.run_pass(rows, kernels.relu, kernels.relu_split, lambda s: (rows[s].reshape(-1), out[s].reshape(-1)))
        return y

    @staticmethod
    def backward(gy, y):
        if y.ndim < 2 or y.size == 0 or y.dtype not in KERNEL_DTYPES or gy.dtype != y.dtype:
            return ThreadedReLU.backward(gy, y)
        layout, kernels = ChannelRows(y), _kernels()
        gx = layout.empty_like()
        rows, gy_rows, out = layout.rows, layout.rows_of(gy), layout.rows_of(gx)
        numba_layer.run_pass(rows, kernels.relu_gradient, kernels.relu_gradient_split,
                             lambda s: (gy_rows[s].reshape(-1), rows[s].reshape(-1), out[s].reshape(-1)))
        return gx


class NumbaAddReLU:
    """The fused residual add + ReLU: :class:`~minires.cpu.pointwise.ThreadedAddReLU`'s forward, the
    one-pass backward (ReLU's)."""

    forward = staticmethod(ThreadedAddReLU.forward)
    backward = staticmethod(NumbaReLU.backward)


if importlib.util.find_spec("numba") is not None:
    backend.register("relu", "numba", device="cpu", default=True)(NumbaReLU)
    backend.register("add_relu", "numba", device="cpu", default=True)(NumbaAddReLU)
