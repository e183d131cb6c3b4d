r"""Training-mode batch norm in two passes over memory each way: the Numba kernels of
``kernels/batchnorm_cpu.py`` (``numba``, the CPU default when Numba is installed; the ``numba`` extra).

The math is the reference's (:class:`~minires.functional.norm.NumpyBatchNorm`, which derives it).
What changes is how often the data is read: NumPy makes one pass per operation (a subtraction, a
product, a sum), so the threaded NumPy batch norm (:class:`~minires.cpu.pointwise.ThreadedBatchNorm`)
reads or writes an activation six times forward and five times backward; here each pass does all
the arithmetic for a value at once:

* forward: one read gives the mean and variance (sums shifted by one value of each channel, in
  float64), one read and one write normalise;
* backward: one read of :math:`\bar y` and :math:`x` gives :math:`\bar\beta` and :math:`\bar\gamma`,
  one more gives :math:`\bar x`.

The kernels take channels-last memory (what the CPU conv returns, and any ``(N, C)`` batch);
inputs in other layouts go to the threaded NumPy kernels. Slices of the batch run on minires'
threads (:func:`~minires.cpu.threads.map_batch`); the per-slice sums are added in slice order, so
the same thread count gives the same bits. The kernels compile on first use (cached on disk).
``backend.use("batch_norm", "numpy-threads")`` switches back to the NumPy passes.
"""
from __future__ import annotations

import importlib.util

import numpy as np

from .. import backend
from ..functional.norm import _values_per_channel
from .pointwise import ThreadedBatchNorm, map_pass
from .threads import total


def _kernels():
    from ..kernels import batchnorm_cpu  # compiles (or loads from Numba's cache) on first use
    return batchnorm_cpu


def channels_last_rows(a):
    """``a`` (N, C, ...) as its memory ``(N, P, C)`` (image, pixel, channel) if that memory is channels
    last and contiguous (a C-contiguous ``(N, C)`` array is), else None."""
    memory = np.moveaxis(a, 1, -1)
    if not memory.flags.c_contiguous:
        return None
    return memory.reshape(a.shape[0], -1, a.shape[1])


def rows_like(a, template):
    """``channels_last_rows`` of ``a``, first copied into ``template``'s (channels-last) layout if need be."""
    rows = channels_last_rows(a)
    if rows is None:
        copy = np.empty_like(template)
        copy[...] = a
        rows = channels_last_rows(copy)
    return rows


def _per_channel(v, dtype):
    return np.ascontiguousarray(v, dtype=dtype)


def per_slice_sums(kernel, batch: tuple, vectors: tuple):
    """Run the summing ``kernel(*(a[s] for a in batch), *vectors, first, second)`` on every slice ``s``
    of the batch (on the threads), each into fresh float64 accumulators; the two per-channel totals
    ``(2, C)``, added in slice order."""
    def sums(s):
        out = np.zeros((2, batch[0].shape[-1]))
        kernel(*(a[s] for a in batch), *vectors, out[0], out[1])
        return out
    return total(map_pass(batch[0], sums))


class NumbaBatchNorm:
    r"""Training-mode batch norm (the contract of :class:`~minires.functional.norm.NumpyBatchNorm`) in
    two passes each way.

    **Forward**, per channel over its :math:`m` values, with :math:`k` one of them:
    :math:`S_1 = \sum (x - k)`, :math:`S_2 = \sum (x - k)^2` (one pass, float64);
    :math:`\mu = k + S_1/m`, :math:`\sigma^2 = S_2/m - (S_1/m)^2`, :math:`s = (\sigma^2 + \epsilon)^{-1/2}`;
    then :math:`y = (x - \mu)\,\gamma s + \beta` (second pass).

    **Backward**: :math:`\bar\beta = \sum \bar y`, :math:`\bar\gamma = s \sum \bar y (x - \mu)` (one
    pass, float64), then :math:`\bar x = \gamma s\,\bar y - \frac{\gamma s^2 \bar\gamma}{m}(x - \mu)
    - \frac{\gamma s\,\bar\beta}{m}` (second pass), which is
    :math:`\frac{\gamma s}{m}(m\bar y - \bar\beta - \hat x\,\bar\gamma)`.
    """

    @staticmethod
    def forward_train(x, weight, bias, eps):
        rows = channels_last_rows(x)
        if rows is None:
            return ThreadedBatchNorm.forward_train(x, weight, bias, eps)
        kernels, m, channels = _kernels(), _values_per_channel(x.shape), x.shape[1]
        shift = rows[0, 0].astype(np.float64)
        centred_mean, mean_square = per_slice_sums(kernels.shifted_sums, (rows,), (shift,)) / m
        mean = (shift + centred_mean).astype(x.dtype)
        var = np.maximum(mean_square - centred_mean ** 2, 0).astype(x.dtype)
        invstd = 1 / np.sqrt(var + eps)
        scale = _per_channel(invstd if weight is None else weight * invstd, x.dtype)
        shift_by = _per_channel(np.zeros(channels) if bias is None else bias, x.dtype)
        y = np.empty_like(x)                # x's memory layout (channels last)
        y_rows = channels_last_rows(y)
        map_pass(rows, lambda s: kernels.normalize(rows[s], mean, scale, shift_by, y_rows[s]))
        return y, mean, var, invstd

    @staticmethod
    def backward(gy, x, weight, mean, invstd):
        rows = channels_last_rows(x)
        if rows is None:
            return ThreadedBatchNorm.backward(gy, x, weight, mean, invstd)
        kernels, m = _kernels(), _values_per_channel(x.shape)
        gy_rows = rows_like(gy, x)
        gy_sum, gy_dot_centred = per_slice_sums(kernels.gradient_sums, (gy_rows, rows), (mean.astype(np.float64),))
        gbias, gweight = gy_sum.astype(x.dtype), (gy_dot_centred * invstd).astype(x.dtype)
        scale = invstd if weight is None else weight * invstd
        along_centred = _per_channel(-scale * invstd * gweight / m, x.dtype)
        offset = _per_channel(-scale * gbias / m, x.dtype)
        scale, mean = _per_channel(scale, x.dtype), _per_channel(mean, x.dtype)
        gx = np.empty_like(x)
        gx_rows = channels_last_rows(gx)
        map_pass(rows, lambda s: kernels.input_gradient(gy_rows[s], rows[s], mean, scale, along_centred, offset,
                                                        gx_rows[s]))
        return gx, gweight, gbias


if importlib.util.find_spec("numba") is not None:
    backend.register("batch_norm", "numba", device="cpu", default=True)(NumbaBatchNorm)
