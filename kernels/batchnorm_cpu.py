r"""Batch norm's passes for the CPU in Numba (``@njit(nogil=True)``), one loop each.

The math is :class:`~minires.functional.norm.BatchNormTrain`'s (derived there); the driver,
:mod:`minires.cpu.batchnorm`, cuts the batch into slices and runs each kernel on a slice per thread of
minires' pool (:func:`~minires.cpu.threads.map_batch`). ``nogil`` lets those threads run at the same
time; the kernels are serial, so no second thread pool (Numba's) competes with minires' for the cores.

Every array is the channels-last memory of a slice of ``n`` images, seen as ``(n, P, C)``: image,
pixel, channel (the CPU conv's outputs; an ``(N, C)`` batch is ``(N, 1, C)``). One iteration of the
innermost loop handles one value; the loop runs over the ``C`` contiguous channels of a pixel, so it
reads memory in order and LLVM vectorises it, with per-channel coefficients that stay in cache.

* ``shifted_sums``: per channel, :math:`\sum (x - k)` and :math:`\sum (x - k)^2` in float64 for a
  shift :math:`k` near the data (one value of the channel): the mean and the biased variance come
  out of one read of :math:`x`, :math:`\mu = k + S_1/m`, :math:`\sigma^2 = S_2/m - (S_1/m)^2`. The shift
  keeps the subtraction from cancelling when :math:`|\mu| \gg \sigma`, as the two-pass reference does.
* ``normalize``: :math:`y = (x - \mu)\,a + \beta`, :math:`a = \gamma s` (one read, one write).
* ``gradient_sums``: per channel, :math:`\sum \bar y` and :math:`\sum \bar y\,(x - \mu)` in float64
  (one read of each), which give :math:`\bar\beta` and :math:`\bar\gamma = s \sum \bar y (x - \mu)`.
* ``input_gradient``: :math:`\bar x = a \bar y + k\,(x - \mu) + c`, the closed form
  :math:`\frac{\gamma s}{m}(m \bar y - \bar\beta - \hat x \bar\gamma)` with its per-channel
  constants :math:`k = -a s \bar\gamma / m`, :math:`c = -a \bar\beta / m` (two reads, one write).

So a forward is two passes over memory and a backward two, against six and five for the NumPy
passes of :class:`~minires.cpu.pointwise.ThreadedBatchNorm`.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def shifted_sums(x, shift, sums, squares):
    """Add :math:`\\sum (x - k_c)` and :math:`\\sum (x - k_c)^2` over images and pixels to ``sums[c]`` and
    ``squares[c]`` (float64); ``x`` is ``(n, P, C)``, ``shift`` ``(C,)`` float64."""
    n, pixels, channels = x.shape
    for b in range(n):
        for p in range(pixels):
            for c in range(channels):
                d = np.float64(x[b, p, c]) - shift[c]
                sums[c] += d
                squares[c] += d * d


@njit(nogil=True, cache=True)
def normalize(x, mean, scale, bias, y):
    """``y[b, p, c] = (x[b, p, c] - mean[c]) * scale[c] + bias[c]`` (all per-channel vectors in ``x``'s dtype)."""
    n, pixels, channels = x.shape
    for b in range(n):
        for p in range(pixels):
            for c in range(channels):
                y[b, p, c] = (x[b, p, c] - mean[c]) * scale[c] + bias[c]


@njit(nogil=True, cache=True)
def gradient_sums(gy, x, mean, gy_sums, gy_dot_centred):
    """Add :math:`\\sum \\bar y` and :math:`\\sum \\bar y\\,(x - \\mu_c)` to ``gy_sums[c]`` and
    ``gy_dot_centred[c]`` (float64)."""
    n, pixels, channels = x.shape
    for b in range(n):
        for p in range(pixels):
            for c in range(channels):
                g = np.float64(gy[b, p, c])
                gy_sums[c] += g
                gy_dot_centred[c] += g * (np.float64(x[b, p, c]) - mean[c])


@njit(nogil=True, cache=True)
def input_gradient(gy, x, mean, scale, along_centred, offset, gx):
    """``gx[b, p, c] = scale[c] gy[b, p, c] + along_centred[c] (x[b, p, c] - mean[c]) + offset[c]``."""
    n, pixels, channels = x.shape
    for b in range(n):
        for p in range(pixels):
            for c in range(channels):
                gx[b, p, c] = scale[c] * gy[b, p, c] + along_centred[c] * (x[b, p, c] - mean[c]) + offset[c]

