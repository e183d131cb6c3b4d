r"""ReLU, the fused add + ReLU and training-mode batch norm on the CPU, with every pass over the
data split over the batch and run on :func:`~minires.cpu.threads.get_num_threads` threads.

The math is the references' (:class:`~minires.functional.elementwise.NumpyReLU`,
:class:`~minires.functional.elementwise.NumpyAddReLU`,
:class:`~minires.functional.norm.NumpyBatchNorm`, whose docstrings derive it). These passes are
memory-bound, and two cores stream memory faster than one. A per-channel sum is the sum of the
slices' partial sums, added in slice order, so the same thread count gives the same bits.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..functional.norm import _channel_sum, _channel_view, _values_per_channel
from .threads import map_batch, total


class ThreadedReLU:
    """``forward(x) -> max(x, 0)``; ``backward(gy, y) -> gy [y > 0]``."""

    @staticmethod
    def forward(x):
        y = np.empty_like(x)
        map_batch(x, lambda s: np.maximum(x[s], 0, out=y[s]))
        return y

    @staticmethod
    def backward(gy, y):
        gx = np.empty_like(gy)
        map_batch(gy, lambda s: np.multiply(gy[s], y[s] > 0, out=gx[s]))
        return gx


class ThreadedAddReLU:
    """``forward(a, b) -> max(a + b, 0)`` in one pass per slice; ``backward`` is ReLU's."""

    @staticmethod
    def forward(a, b):
        y = np.empty(np.broadcast_shapes(a.shape, b.shape), dtype=np.result_type(a, b))

        def add_relu(s):
            np.add(a[s], b[s], out=y[s])
            np.maximum(y[s], 0, out=y[s])

        if a.shape != b.shape:              # broadcasting: slices of a and b would not line up
            add_relu(slice(None))
        else:
            map_batch(y, add_relu)
        return y

    backward = staticmethod(ThreadedReLU.backward)


class ThreadedBatchNorm:
    """:class:`~minires.functional.norm.NumpyBatchNorm`'s passes, each split over the batch."""

    @staticmethod
    def forward_train(x, weight, bias, eps):
        m, channel = _values_per_channel(x.shape), (lambda v: _channel_view(v, x.ndim))
        mean = total(map_batch(x, lambda s: _channel_sum(x[s]))) / m
        y = np.empty_like(x)

        def centre(s):                      # y = x - mean; returns the slice's sum of squares
            np.subtract(x[s], channel(mean), out=y[s])
            return _channel_sum(y[s], y[s])

        var = total(map_batch(x, centre)) / m
        invstd = 1 / np.sqrt(var + eps)
        scale = channel(invstd if weight is None else weight * invstd)

        def affine(s):
            y[s] *= scale
            if bias is not None:
                y[s] += channel(bias)

        map_batch(x, affine)
        return y, mean, var, invstd

    @staticmethod
    def backward(gy, x, weight, mean, invstd):
        m, channel = _values_per_channel(x.shape), (lambda v: _channel_view(v, x.ndim))
        gx = np.empty_like(x)

        def sums(s):                        # gx = x - mean; returns (sum gy, sum gy (x - mean))
            np.subtract(x[s], channel(mean), out=gx[s])
            return np.stack([_channel_sum(gy[s]), _channel_sum(gy[s], gx[s])])

        gbias, gy_dot_centred = total(map_batch(x, sums))
        gweight = gy_dot_centred * invstd
        along_xhat, mean_gy = channel(-gweight * invstd / m), channel(gbias / m)
        scale = channel(invstd if weight is None else weight * invstd)

        def combine(s):                     # gx = scale (gy - mean(gy) - xhat mean(gy xhat))
            gx[s] *= along_xhat
            gx[s] += gy[s]
            gx[s] -= mean_gy
            gx[s] *= scale

        map_batch(x, combine)
        return gx, gweight, gbias


backend.register("relu", "numpy-threads", device="cpu", default=True)(ThreadedReLU)
backend.register("add_relu", "numpy-threads", device="cpu", default=True)(ThreadedAddReLU)
backend.register("batch_norm", "numpy-threads", device="cpu", default=True)(ThreadedBatchNorm)
