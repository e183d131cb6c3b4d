r"""Batch norm's passes for the CPU in Numba (``@njit(nogil=True)``), one loop each.

The math is :class:`~minires.functional.norm.BatchNormTrain`'s (derived there); the driver,
:mod:`minires.cpu.batchnorm`, cuts the data into slices and runs each kernel on a slice per thread
of minires' pool (:func:`~minires.cpu.threads.map_batch`). ``nogil`` lets those threads run at the
same time; the kernels are serial, so no second thread pool (Numba's) competes with minires' for
the cores. Where Numba's threads run on TBB (:mod:`minires.cpu.numba_layer`), which hand work over
in microseconds, the passes (all but tiny ones) run as one Numba region instead: the ``*_split``
kernels at the end, one ``prange`` iteration (one slice, one thread) calling the serial kernel.

Every array is seen as ``(rows, L)``, each row a run of memory in which position :math:`i` belongs
to one channel, always the same: in channels-last memory a row holds :math:`p` consecutive pixels of
:math:`C` channels (:math:`L = pC`, a few hundred values; position :math:`i` is channel
:math:`i \bmod C`), in NCHW memory a row is one image (:math:`C` runs of its pixels). Every
per-channel vector comes laid out the same way (length :math:`L`), and the driver adds each channel's
positions to get its sums. One iteration of the inner loop handles one value; the loop runs along a
row, reading memory in order, and LLVM vectorises it (rows of a few hundred values rather than of
:math:`C`, so the loop's set-up costs little; the per-position vectors stay in L1).

* ``shifted_sums`` (forward): per position, :math:`S_1 = \sum (x - \kappa_i)` and :math:`S_2 = \sum
  (x - \kappa_i)^2` in float64, in one read of :math:`x`, :math:`\kappa` a shift near the data (one
  value of the channel). They give the mean and the biased variance, :math:`\mu = \kappa + S_1/m`,
  :math:`\sigma^2 = S_2/m - (S_1/m)^2`; the shift keeps the subtraction from cancelling when
  :math:`|\mu| \gg \sigma`, as the two-pass reference does.
* ``gradient_sums`` (backward): per position, :math:`\sum \bar y` and :math:`\sum \bar y (x - \mu_i)`
  in float64, in one read of :math:`\bar y` and :math:`x`; they give :math:`\bar\beta = \sum \bar y`
  and :math:`\bar\gamma = s \sum \bar y (x - \mu)`.

  The two were one kernel, :math:`\sum (u - a)` and :math:`\sum (u - a)(v - b)`, called with
  :math:`u = v = x` forward and :math:`a = 0` backward; in float64, on data that fits in the
  caches, the sums are bound by arithmetic, not memory, so the conversions and subtractions the
  general form repeats cost time. The two give its bits (the same float64 arithmetic on the same
  operands, added in the same order); ``benchmarks/batchnorm_sums_ab.py`` checks that and times
  both, and the README has its numbers.
* ``normalize``: :math:`y = (x - \mu)\,\gamma s + \beta` (one read, one write).
* ``input_gradient``: :math:`\bar x = \gamma s\,\bar y + k\,(x - \mu) + c`, the closed form
  :math:`\frac{\gamma s}{m}(m \bar y - \bar\beta - \hat x \bar\gamma)` with its per-channel
  constants :math:`k = -\gamma s^2 \bar\gamma / m`, :math:`c = -\gamma s \bar\beta / m` (two reads,
  one write).
* ``forward_vectors``, ``backward_vectors``: the per-channel arithmetic between a direction's two
  passes (the statistics, :math:`s`, the constants above) and the per-position vectors of its second
  pass, in one call: C values, not a pass over the data, but about a dozen NumPy calls' worth of
  Python that each batch norm would otherwise make (8-10 us of the 50 a small call took, 2026-12-05,
  no committed timing). They round each value where those NumPy calls did, so the bits are theirs.

* ``channel_totals``: after a region over channels-last rows, the slices' per-position sums added in
  slice order and folded to channels, in the order of the NumPy operations it replaces.

So a forward is two passes over memory and a backward two, against six and five for the NumPy
passes of :class:`~minires.cpu.pointwise.ThreadedBatchNorm`.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(nogil=True, cache=True)
def shifted_sums(x, shift, sums, squares):
    r"""Add :math:`\sum_r (x_{r,i} - \kappa_i)` and :math:`\sum_r (x_{r,i} - \kappa_i)^2` over the rows to
    ``sums[i]`` and ``squares[i]`` (float64; :math:`\kappa` is ``shift``, float64). Four rows per
    iteration: the accumulators are read and written once per four values."""
    rows, length = x.shape
    for r in range(0, rows - rows % 4, 4):
        for i in range(length):
            p0, p1 = np.float64(x[r, i]) - shift[i], np.float64(x[r + 1, i]) - shift[i]
            p2, p3 = np.float64(x[r + 2, i]) - shift[i], np.float64(x[r + 3, i]) - shift[i]
            sums[i] += (p0 + p1) + (p2 + p3)
            squares[i] += (p0 * p0 + p1 * p1) + (p2 * p2 + p3 * p3)
    for r in range(rows - rows % 4, rows):
        for i in range(length):
            p = np.float64(x[r, i]) - shift[i]
            sums[i] += p
            squares[i] += p * p


@njit(nogil=True, cache=True)
def gradient_sums(gy, x, mean, sums, products):
    r"""Add :math:`\sum_r \bar y_{r,i}` and :math:`\sum_r \bar y_{r,i} (x_{r,i} - \mu_i)` over the rows to
    ``sums[i]`` and ``products[i]`` (float64; :math:`\mu` is ``mean``, float64), four rows per iteration."""
    rows, length = x.shape
    for r in range(0, rows - rows % 4, 4):
        for i in range(length):
            p0, p1, p2, p3 = np.float64(gy[r, i]), np.float64(gy[r + 1, i]), np.float64(gy[r + 2, i]), np.float64(gy[r + 3, i])
            q0, q1 = np.float64(x[r, i]) - mean[i], np.float64(x[r + 1, i]) - mean[i]
            q2, q3 = np.float64(x[r + 2, i]) - mean[i], np.float64(x[r + 3, i]) - mean[i]
            sums[i] += (p0 + p1) + (p2 + p3)
            products[i] += (p0 * q0 + p1 * q1) + (p2 * q2 + p3 * q3)
    for r in range(rows - rows % 4, rows):
        for i in range(length):
            p = np.float64(gy[r, i])
            sums[i] += p
            products[i] += p * (np.float64(x[r, i]) - mean[i])


@njit(nogil=True, cache=True)
def normalize(x, mean, scale, bias, y):
    """``y[r, i] = (x[r, i] - mean[i]) * scale[i] + bias[i]`` (the per-position vectors in ``x``'s dtype)."""
    rows, length = x.shape
    for r in range(rows):
        for i in range(length):
            y[r, i] = (x[r, i] - mean[i]) * scale[i] + bias[i]


@njit(nogil=True, cache=True)
def input_gradient(gy, x, mean, scale, along_centred, offset, gx):
    """``gx[r, i] = scale[i] gy[r, i] + along_centred[i] (x[r, i] - mean[i]) + offset[i]``."""
    rows, length = x.shape
    for r in range(rows):
        for i in range(length):
            gx[r, i] = scale[i] * gy[r, i] + along_centred[i] * (x[r, i] - mean[i]) + offset[i]


@njit(nogil=True, cache=True, error_model="numpy")   # x / 0 gives inf or NaN, as in NumPy
def forward_vectors(sums, shift, m, eps, one, weight, bias, channel_of, vectors):
    r"""Between the forward's passes, per channel: :math:`\mu = \kappa + S_1/m`, :math:`\sigma^2 =
    \max(S_2/m - (S_1/m)^2, 0)` (from the float64 sums ``sums[0]``, ``sums[1]`` of the values less the
    shift :math:`\kappa`), :math:`s = 1/\sqrt{\sigma^2 + \epsilon}`; returns ``(mean, var, invstd)``
    in the dtype of ``vectors`` (``eps`` and ``one`` come in it), and lays out ``normalize``'s vectors
    :math:`\mu`, :math:`\gamma s`, :math:`\beta` (:math:`s` and 0 without ``weight``, ``bias``) at each
    row position ``i``, whose channel is ``channel_of[i]``, in ``vectors[0..2]``. Every value is rounded
    where NumPy rounds it: the statistics in float64, each stored in the data's dtype, then
    :math:`s` and :math:`\gamma s` in that dtype."""
    channels = shift.size
    per_channel = vectors[0, :channels]                     # the data's dtype
    mean, var, invstd = np.empty_like(per_channel), np.empty_like(per_channel), np.empty_like(per_channel)
    for c in range(channels):
        centred_mean, mean_square = sums[0, c] / m, sums[1, c] / m
        mean[c] = shift[c] + centred_mean
        spread = mean_square - centred_mean * centred_mean
        var[c] = spread if not spread <= 0 else 0.0          # np.maximum(spread, 0): a NaN stays NaN
        invstd[c] = one / np.sqrt(var[c] + eps)
    scale = invstd if weight is None else weight * invstd
    for i in range(channel_of.size):
        c = channel_of[i]
        vectors[0, i], vectors[1, i] = mean[c], scale[c]
        vectors[2, i] = 0 if bias is None else bias[c]
    return mean, var, invstd


@njit(nogil=True, cache=True, error_model="numpy")   # x / 0 gives inf or NaN, as in NumPy
def backward_vectors(sums, mean, invstd, m, weight, channel_of, vectors):
    r"""Between the backward's passes, per channel: :math:`\bar\beta = \sum \bar y` and :math:`\bar\gamma
    = s \sum \bar y (x - \mu)` (the float64 ``sums[0]``, ``sums[1]`` times :math:`s`, each stored in the
    data's dtype, the dtype of ``vectors``); returns ``(gweight, gbias)`` and lays out ``input_gradient``'s
    vectors :math:`\mu`, :math:`\gamma s`, :math:`-\gamma s^2 \bar\gamma / m`, :math:`-\gamma s \bar\beta / m`
    (``m`` in the data's dtype) at each row position ``i``, of channel ``channel_of[i]``, in ``vectors[0..3]``."""
    gbias, gweight = np.empty_like(mean), np.empty_like(mean)
    for c in range(mean.size):
        gbias[c], gweight[c] = sums[0, c], sums[1, c] * invstd[c]
    scale = invstd if weight is None else weight * invstd
    along_centred, offset = -scale * invstd * gweight / m, -scale * gbias / m
    for i in range(channel_of.size):
        c = channel_of[i]
        vectors[0, i], vectors[1, i], vectors[2, i], vectors[3, i] = mean[c], scale[c], along_centred[c], offset[c]
    return gweight, gbias


@njit(nogil=True, cache=True)
def channel_totals(partials, channels):
    """The per-channel sums ``(2, channels)`` of the slices' per-position sums ``partials`` (``slices, 2, L``)
    of channels-last rows (position ``i`` is channel ``i % channels``): the slices added in order,
    then each channel's positions in order, as the driver's NumPy (``threads.total``, then
    ``ChannelRows.fold``) adds them; float64. One call instead of those dozen array operations."""
    slices, _, length = partials.shape
    out = np.zeros((2, channels))
    for k in range(2):
        for i in range(length):
            position = partials[0, k, i]
            for t in range(1, slices):
                position += partials[t, k, i]
            c = i % channels
            out[k, c] = position if i < channels else out[k, c] + position
    return out


# Where Numba's threads run on TBB (minires.cpu.numba_layer), the driver runs a pass's slices as one
# Numba region (all but a tiny pass): iteration t of the prange is slice t, rows [bounds[t], bounds[t+1]),
# on its own thread.
@njit(parallel=True, nogil=True, cache=True)
def shifted_sums_split(x, shift, partials, bounds):
    """``shifted_sums`` of each slice into its own accumulators, ``partials[t, 0]`` and
    ``partials[t, 1]`` (the driver adds them in slice order, as it adds the pool's)."""
    for t in prange(bounds.size - 1):
        lo, hi = bounds[t], bounds[t + 1]
        shifted_sums(x[lo:hi], shift, partials[t, 0], partials[t, 1])


@njit(parallel=True, nogil=True, cache=True)
def gradient_sums_split(gy, x, mean, partials, bounds):
    """``gradient_sums`` of each slice into its own accumulators, as ``shifted_sums_split``."""
    for t in prange(bounds.size - 1):
        lo, hi = bounds[t], bounds[t + 1]
        gradient_sums(gy[lo:hi], x[lo:hi], mean, partials[t, 0], partials[t, 1])


@njit(parallel=True, nogil=True, cache=True)
def normalize_split(x, mean, scale, bias, y, bounds):
    """``normalize`` of each slice."""
    for t in prange(bounds.size - 1):
        lo, hi = bounds[t], bounds[t + 1]
        normalize(x[lo:hi], mean, scale, bias, y[lo:hi])


@njit(parallel=True, nogil=True, cache=True)
def input_gradient_split(gy, x, mean, scale, along_centred, offset, gx, bounds):
    """``input_gradient`` of each slice."""
    for t in prange(bounds.size - 1):
        lo, hi = bounds[t], bounds[t + 1]
        input_gradient(gy[lo:hi], x[lo:hi], mean, scale, along_centred, offset, gx[lo:hi])
