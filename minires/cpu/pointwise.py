r"""ReLU, the fused add + ReLU and training-mode batch norm on the CPU, with every pass over the
data split over the batch and run on :func:`~minires.cpu.threads.get_num_threads` threads.

The math is the references' (:class:`~minires.functional.elementwise.NumpyReLU`,
:class:`~minires.functional.elementwise.NumpyAddReLU`,
:class:`~minires.functional.norm.NumpyBatchNorm`, whose docstrings derive it). These passes are
memory-bound, so a second core helps them less than the conv (1.2-1.4x on the 2-core machine of the
README), and not at all below a million values (:func:`map_pass`). A per-channel sum is the sum of the slices' partial sums, added in slice order, so the
same thread count gives the same bits.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import backend
from ..functional.norm import _values_per_channel
from . import threads
from .threads import total


def map_pass(a, work) -> list:
    """:func:`~minires.cpu.threads.map_batch` for one memory-bound pass: on one thread below
    :data:`~minires.cpu.threads.MIN_PARALLEL_PASS` values, where the hand-off would cost more
    than it saves (at batch 16 on 2 cores, a ResNet-20 step took 31.4 ms this way against 38.7 ms
    split; README)."""
    return threads.map_batch(a, work, min_size=threads.MIN_PARALLEL_PASS)


def zeros_image(a):
    """Zeros shaped and laid out like one image of ``a`` (all of ``a`` if 0-d), to take the maximum with.

    ``np.maximum(x, 0)`` broadcasts a scalar, and NumPy (2.x) runs that loop about 3x slower than
    the same maximum against an array whose memory runs alongside ``x``'s (its vectorised loop).
    """
    return np.zeros_like(a[:1] if a.ndim else a)


class ThreadedReLU:
    """``forward(x) -> max(x, 0)``; ``backward(gy, y) -> gy [y > 0]``."""

    @staticmethod
    def forward(x):
        y, zero = np.empty_like(x), zeros_image(x)
        map_pass(x, lambda s: np.maximum(x[s], zero, out=y[s]))
        return y

    @staticmethod
    def backward(gy, y):
        gx = np.empty_like(y)               # y's memory layout: gy may come in another (e.g. from pooling)

        def mask_gradient(s):               # [y > 0] as 0.0/1.0 floats, then times gy: faster than a bool mask (2026-11-27, no committed timing)
            np.greater(y[s], 0, out=gx[s])
            np.multiply(gx[s], gy[s], out=gx[s])

        map_pass(gy, mask_gradient)
        return gx


class ThreadedAddReLU:
    """``forward(a, b) -> max(a + b, 0)`` in one pass per slice; ``backward`` is ReLU's."""

    @staticmethod
    def forward(a, b):
        shape, dtype = np.broadcast_shapes(a.shape, b.shape), np.result_type(a, b)
        y = np.empty_like(a, dtype=dtype) if a.shape == shape else np.empty(shape, dtype)  # a's layout
        zero = zeros_image(y)

        def add_relu(s):
            np.add(a[s], b[s], out=y[s])
            np.maximum(y[s], zero, out=y[s])

        if a.shape != b.shape:              # broadcasting: slices of a and b would not line up
            add_relu(slice(None))
        else:
            map_pass(y, add_relu)
        return y

    backward = staticmethod(ThreadedReLU.backward)


class ChannelRows:
    """An ``(N, C, ...)`` array's memory as ``N`` rows (one per image) of per-channel patterns.

    In NCHW memory a row is ``C`` runs of ``S`` values (``S``: the pixels of an image); in
    channels-last memory (what the CPU conv returns) it is ``S`` runs of ``C`` values. A per-channel
    vector is laid out the same way once (:meth:`expand`, one row long), and a row-long vector of
    partial sums is folded back to channels (:meth:`fold`), so every pass over the data is a long
    contiguous loop whatever the layout. Other layouts are copied to NCHW first.
    """

    def __init__(self, x):
        self._channels_last_axes = (0, *range(2, x.ndim), 1)      # NCHW -> NHWC, as a transpose
        channels_last = (x.ndim > 2 and not x.flags.c_contiguous
                         and x.transpose(self._channels_last_axes).flags.c_contiguous)
        self.array = x if channels_last or x.flags.c_contiguous else np.ascontiguousarray(x)
        self.channels_last, self.channels = channels_last, x.shape[1]
        self.rows = self.rows_of(self.array)

    def rows_of(self, a):
        """``a`` (same shape) as rows laid out like this array's (copied into that layout if it differs)."""
        memory = self._memory_order(a)
        if not memory.flags.c_contiguous:
            copy = self.empty_like()
            copy[...] = a
            memory = self._memory_order(copy)
        return memory.reshape(a.shape[0], -1)

    def _memory_order(self, a):
        """``a`` with its axes in this array's memory order (a view)."""
        return a.transpose(self._channels_last_axes) if self.channels_last else a

    def empty_like(self):
        """A new uninitialised array of the same shape and memory layout."""
        return np.empty_like(self.array)

    def channel_of(self):
        """The channel of each position of a row (int64, read-only; kept for the next array of that layout)."""
        return _channel_of(self.rows.shape[1], self.channels, self.channels_last)

    def expand(self, v):
        """Per-channel ``v`` (C,) -> one row's worth: each value where its channel's values are."""
        return v[self.channel_of()]

    def fold(self, row_sums):
        """A row-long vector of sums -> the per-channel sums (C,), added up in float64; a stack of them,
        ``(k, row length)``, -> ``(k, C)``."""
        lead = row_sums.shape[:-1]
        if self.channels_last:
            sums = row_sums.reshape(*lead, -1, self.channels).sum(axis=-2, dtype=np.float64)
        else:
            sums = row_sums.reshape(*lead, self.channels, -1).sum(axis=-1, dtype=np.float64)
        return sums.astype(row_sums.dtype)


@functools.lru_cache(maxsize=256)
def _channel_of(length: int, channels: int, channels_last: bool):
    positions = np.arange(length)
    channel = positions % channels if channels_last else positions // (length // channels)
    channel.flags.writeable = False
    return channel


class ThreadedBatchNorm:
    """:class:`~minires.functional.norm.NumpyBatchNorm`'s passes, each split over the batch and run
    on :class:`ChannelRows` (long contiguous loops in NCHW and in channels-last memory)."""

    @staticmethod
    def forward_train(x, weight, bias, eps):
        xr, m = ChannelRows(x), _values_per_channel(x.shape)
        rows = xr.rows
        mean = xr.fold(total(map_pass(rows, lambda s: rows[s].sum(axis=0)))) / m
        y = xr.empty_like()
        out, centre_by = xr.rows_of(y), xr.expand(mean)

        def centre(s):                      # y = x - mean; returns the slice's sums of squares
            np.subtract(rows[s], centre_by, out=out[s])
            return np.einsum("nl,nl->l", out[s], out[s])

        var = xr.fold(total(map_pass(rows, centre))) / m
        invstd = 1 / np.sqrt(var + eps)
        scale = xr.expand(invstd if weight is None else weight * invstd)
        shift = None if bias is None else xr.expand(bias)

        def affine(s):
            out[s] *= scale
            if shift is not None:
                out[s] += shift

        map_pass(rows, affine)
        return y, mean, var, invstd

    @staticmethod
    def backward(gy, x, weight, mean, invstd):
        xr, m = ChannelRows(x), _values_per_channel(x.shape)
        rows, gy_rows = xr.rows, xr.rows_of(gy)
        gx = xr.empty_like()
        out, centre_by = xr.rows_of(gx), xr.expand(mean)

        def sums(s):                        # gx = x - mean; returns (sum gy, sum gy (x - mean))
            np.subtract(rows[s], centre_by, out=out[s])
            return np.stack([gy_rows[s].sum(axis=0), np.einsum("nl,nl->l", gy_rows[s], out[s])])

        row_gbias, row_gy_dot_centred = total(map_pass(rows, sums))
        gbias, gweight = xr.fold(row_gbias), xr.fold(row_gy_dot_centred) * invstd
        along_xhat, mean_gy = xr.expand(-gweight * invstd / m), xr.expand(gbias / m)
        scale = xr.expand(invstd if weight is None else weight * invstd)

        def combine(s):                     # gx = scale (gy - mean(gy) - xhat mean(gy xhat))
            out[s] *= along_xhat
            out[s] += gy_rows[s]
            out[s] -= mean_gy
            out[s] *= scale

        map_pass(rows, combine)
        return gx, gweight, gbias


backend.register("relu", "numpy-threads", device="cpu", default=True)(ThreadedReLU)
backend.register("add_relu", "numpy-threads", device="cpu", default=True)(ThreadedAddReLU)
backend.register("batch_norm", "numpy-threads", device="cpu", default=True)(ThreadedBatchNorm)
