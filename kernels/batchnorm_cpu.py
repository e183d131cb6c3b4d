r"""Batch norm's passes for the CPU in Numba (``@njit(nogil=True)``), one loop each.

The math is :class:`~minires.functional.norm.BatchNormTrain`'s (derived there); the driver,
:mod:`minires.cpu.batchnorm`, cuts the data into slices and runs each kernel on a slice per thread
of minires' pool (:func:`~minires.cpu.threads.map_batch`). ``nogil`` lets those threads run at the
same time; the kernels are serial, so no second thread pool (Numba's) competes with minires' for
the cores.

Every array is channels-last memory seen as ``(rows, L)``: each row holds :math:`k` consecutive
pixels of :math:`C` channels (:math:`L = kC`, a few hundred values), so position :math:`i` of a row
belongs to channel :math:`i \bmod C`, and every per-channel vector comes repeated :math:`k` times
(length :math:`L`). One iteration of the inner loop handles one value; the loop runs along a row,
reading memory in order, and LLVM vectorises it (rows of a few hundred values rather than of
:math:`C`, so the loop's set-up costs little; the per-position vectors stay in L1).

* ``shifted_sums``: per position, :math:`\sum (x - k_i)` and :math:`\sum (x - k_i)^2` in float64 for a
  shift :math:`k_i` near the data (one value of the channel): the mean and the biased variance come
  out of one read of :math:`x`, :math:`\mu = k + S_1/m`, :math:`\sigma^2 = S_2/m - (S_1/m)^2`. The shift
  keeps the subtraction from cancelling when :math:`|\mu| \gg \sigma`, as the two-pass reference does.
* ``normalize``: :math:`y = (x - \mu)\,a + \beta`, :math:`a = \gamma s` (one read, one write).
* ``gradient_sums``: per position, :math:`\sum \bar y` and :math:`\sum \bar y\,(x - \mu)` in float64
  (one read of each), which give :math:`\bar\beta` and :math:`\bar\gamma = s \sum \bar y (x - \mu)`.
* ``input_gradient``: :math:`\bar x = a \bar y + k\,(x - \mu) + c`, the closed form
  :math:`\frac{\gamma s}{m}(m \bar y - \bar\beta - \hat x \bar\gamma)` with its per-channel
  constants :math:`k = -a s \bar\gamma / m`, :math:`c = -a \bar\beta / m` (two reads, one write).

The driver adds the :math:`k` positions of each channel to get the per-channel sums. So a forward
is two passes over memory and a backward two, against six and five for the NumPy passes of
:class:`~minires.cpu.pointwise.ThreadedBatchNorm`.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def shifted_sums(x, shift, sums, squares):
    r"""Add :math:`\sum_r (x_{r,i} - k_i)` and its squares over the rows to ``sums[i]`` and ``squares[i]``
    (float64). Four rows per iteration: the accumulators are read and written once per four values."""
    rows, length = x.shape
    for r in range(0, rows - rows % 4, 4):
        for i in range(length):
            d0, d1 = np.float64(x[r, i]) - shift[i], np.float64(x[r + 1, i]) - shift[i]
            d2, d3 = np.float64(x[r + 2, i]) - shift[i], np.float64(x[r + 3, i]) - shift[i]
            sums[i] += (d0 + d1) + (d2 + d3)
            squares[i] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)
    for r in range(rows - rows % 4, rows):
        for i in range(length):
            d = np.float64(x[r, i]) - shift[i]
            sums[i] += d
            squares[i] += d * d


@njit(nogil=True, cache=True)
def normalize(x, mean, scale, bias, y):
    """``y[r, i] = (x[r, i] - mean[i]) * scale[i] + bias[i]`` (the per-position vectors in ``x``'s dtype)."""
    rows, length = x.shape
    for r in range(rows):
        for i in range(length):
            y[r, i] = (x[r, i] - mean[i]) * scale[i] + bias[i]


@njit(nogil=True, cache=True)
def gradient_sums(gy, x, mean, gy_sums, gy_dot_centred):
    r"""Add :math:`\sum_r \bar y_{r,i}` and :math:`\sum_r \bar y_{r,i}\,(x_{r,i} - \mu_i)` to
    ``gy_sums[i]`` and ``gy_dot_centred[i]`` (float64), four rows per iteration as in ``shifted_sums``."""
    rows, length = x.shape
    for r in range(0, rows - rows % 4, 4):
        for i in range(length):
            g0, g1 = np.float64(gy[r, i]), np.float64(gy[r + 1, i])
            g2, g3 = np.float64(gy[r + 2, i]), np.float64(gy[r + 3, i])
            c0, c1 = np.float64(x[r, i]) - mean[i], np.float64(x[r + 1, i]) - mean[i]
            c2, c3 = np.float64(x[r + 2, i]) - mean[i], np.float64(x[r + 3, i]) - mean[i]
            gy_sums[i] += (g0 + g1) + (g2 + g3)
            gy_dot_centred[i] += (g0 * c0 + g1 * c1) + (g2 * c2 + g3 * c3)
    for r in range(rows - rows % 4, rows):
        for i in range(length):
            g = np.float64(gy[r, i])
            gy_sums[i] += g
            gy_dot_centred[i] += g * (np.float64(x[r, i]) - mean[i])


@njit(nogil=True, cache=True)
def input_gradient(gy, x, mean, scale, along_centred, offset, gx):
    """``gx[r, i] = scale[i] gy[r, i] + along_centred[i] (x[r, i] - mean[i]) + offset[i]``."""
    rows, length = x.shape
    for r in range(rows):
        for i in range(length):
            gx[r, i] = scale[i] * gy[r, i] + along_centred[i] * (x[r, i] - mean[i]) + offset[i]
