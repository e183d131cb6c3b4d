r"""Training-mode batch norm in two passes over memory each way: the Numba kernels of
``kernels/batchnorm_cpu.py`` (``numba``, the CPU default when Numba is installed; the ``numba`` extra).

The math is the reference's (:class:`~minires.functional.norm.NumpyBatchNorm`, which derives it).
What changes is how often the data is read: NumPy makes one pass per operation (a subtraction, a
product, a sum), so the threaded NumPy batch norm (:class:`~minires.cpu.pointwise.ThreadedBatchNorm`)
makes five passes forward (with a bias) and seven backward; here each pass does all
the arithmetic for a value at once:

* forward: one read gives the mean and variance (sums shifted by one value of each channel, in
  float64), one read and one write normalise;
* backward: one read of :math:`\bar y` and :math:`x` gives :math:`\bar\beta` and :math:`\bar\gamma`,
  one more gives :math:`\bar x`.

The data is laid out as in the threaded NumPy kernels (:class:`~minires.cpu.pointwise.ChannelRows`:
NCHW or channels-last memory, other layouts copied to NCHW), its rows cut shorter in channels-last
memory (:class:`KernelRows`). Slices of the rows run on minires' threads
(:func:`~minires.cpu.threads.map_batch`), or as one Numba region on Numba's threads when those
are TBB's (:func:`~minires.cpu.numba_layer.run_pass`); a pass too small for the pool runs on one
thread off TBB, and a tiny one on TBB too (:data:`~minires.cpu.numba_layer.MIN_REGION_PASS`).
The sums take one slice per thread wherever they run (:func:`channel_sums`) and are added in
slice order, so the thread count alone fixes the bits. The kernels compile on first use (cached on
disk), for float32 and float64; other dtypes (float16) take the threaded NumPy passes.
``backend.use("batch_norm", "numpy-threads")`` switches back to the NumPy passes.
"""
from __future__ import annotations

import functools
import importlib.util

import numpy as np

from .. import backend
from ..functional.norm import _values_per_channel
from . import numba_layer, threads
from .pointwise import ChannelRows, ThreadedBatchNorm, map_pass
from .threads import total

ROW_VALUES = 256  # values per row of the kernels' loops (whole pixels in channels-last memory)
KERNEL_DTYPES = (np.float32, np.float64)  # what the kernels compile for; other dtypes take the NumPy passes


@functools.cache
def _kernels():
    from ..kernels import batchnorm_cpu  # compiles (or loads from Numba's cache) on first use
    return batchnorm_cpu


class KernelRows(ChannelRows):
    """:class:`~minires.cpu.pointwise.ChannelRows` with the rows the kernels loop over: in channels-last
    memory, each image's row is cut into rows of whole pixels, about :data:`ROW_VALUES` values each
    (the per-position vectors and accumulators then stay in L1); NCHW rows stay whole images."""

    def rows_of(self, a):
        rows = super().rows_of(a)
        if not self.channels_last:
            return rows
        return rows.reshape(-1, _pixels_per_row(rows.shape[1] // self.channels, self.channels) * self.channels)


@functools.lru_cache(maxsize=256)
def _pixels_per_row(pixels: int, channels: int) -> int:
    """How many of an image's ``pixels`` make one of :class:`KernelRows`' rows: the most, at most
    :data:`ROW_VALUES` values' worth, that divide them (kept: a step asks for the same few again and again)."""
    return next(k for k in range(max(1, ROW_VALUES // channels), 0, -1) if pixels % k == 0)


def _in_dtype(dtype, vector):
    """A per-channel parameter (or None) in the data's dtype: the kernels' arithmetic is in that dtype."""
    return None if vector is None else vector.astype(dtype, copy=False)


def channel_sums(xr: KernelRows, kernel: str, kernel_arguments):
    """Run the kernel named ``kernel`` (``shifted_sums`` or ``gradient_sums``), as
    ``kernel(*kernel_arguments(s), sums, products)``, on one slice ``s`` of ``xr.rows``' first axis per
    thread, each into fresh float64 accumulators; the two per-channel totals ``(2, C)``: the slices'
    per-position sums added in slice order, then folded to channels (:meth:`KernelRows.fold`). The
    slices are the same wherever they run (as one Numba region, ``kernel + "_split"``, where Numba's
    threads are TBB's and the pass is not tiny, else on minires' pool for a large pass and one after
    the other here for a small one), so the thread count alone fixes the bits. After a region over
    channels-last rows, one kernel (``channel_totals``) adds them up in NumPy's order, for a dozen
    array operations' worth of Python (batch norm's time in ResNet-20's steps: 0.93-0.94x, batch 32
    and 128, two threads; 2026-12-05, one-off A/Bs, not committed)."""
    rows, kernels = xr.rows, _kernels()
    bounds = numba_layer.region_bounds(rows)
    if bounds is not None:
        partials = np.zeros((len(bounds) - 1, 2, rows.shape[1]))
        getattr(kernels, kernel + "_split")(*kernel_arguments(slice(None)), partials, bounds)
        if xr.channels_last:
            return kernels.channel_totals(partials, xr.channels)
        return xr.fold(total(list(partials)))

    def sums(s):
        out = np.zeros((2, rows.shape[1]))
        getattr(kernels, kernel)(*kernel_arguments(s), out[0], out[1])
        return out
    if rows.size >= threads.MIN_PARALLEL_PASS:
        return xr.fold(total(map_pass(rows, sums)))
    return xr.fold(total([sums(run[0]) for run in threads.batch_runs(rows, None, min_size=0)]))


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
        if x.dtype not in KERNEL_DTYPES:
            return ThreadedBatchNorm.forward_train(x, weight, bias, eps)
        xr, kernels = KernelRows(x), _kernels()
        rows, channel_of = xr.rows, xr.channel_of()
        shift = np.array(x[(0, slice(None)) + (0,) * (x.ndim - 2)], dtype=np.float64)   # one value per channel
        centre = shift[channel_of]
        sums = channel_sums(xr, "shifted_sums", lambda s: (rows[s], centre))
        vectors = np.empty((3, rows.shape[1]), x.dtype)
        mean, var, invstd = kernels.forward_vectors(sums, shift, _values_per_channel(x.shape), x.dtype.type(eps),
                                                    x.dtype.type(1), _in_dtype(x.dtype, weight), _in_dtype(x.dtype, bias),
                                                    channel_of, vectors)
        y = xr.empty_like()
        out = xr.rows_of(y)
        numba_layer.run_pass(rows, kernels.normalize, kernels.normalize_split, lambda s: (rows[s], *vectors, out[s]))
        return y, mean, var, invstd

    @staticmethod
    def backward(gy, x, weight, mean, invstd):
        if x.dtype not in KERNEL_DTYPES or gy.dtype not in KERNEL_DTYPES:
            return ThreadedBatchNorm.backward(gy, x, weight, mean, invstd)
        xr, kernels = KernelRows(x), _kernels()
        rows, gy_rows, channel_of = xr.rows, xr.rows_of(gy), xr.channel_of()
        centre = mean.astype(np.float64)[channel_of]
        sums = channel_sums(xr, "gradient_sums", lambda s: (gy_rows[s], rows[s], centre))
        vectors = np.empty((4, rows.shape[1]), x.dtype)
        gweight, gbias = kernels.backward_vectors(sums, mean, invstd, x.dtype.type(_values_per_channel(x.shape)),
                                                  _in_dtype(x.dtype, weight), channel_of, vectors)
        gx = xr.empty_like()
        out = xr.rows_of(gx)
        numba_layer.run_pass(rows, kernels.input_gradient, kernels.input_gradient_split,
                             lambda s: (gy_rows[s], rows[s], *vectors, out[s]))
        return gx, gweight, gbias

    @staticmethod
    def forward_eval(x, scale, shift):
        r"""Evaluation mode, :math:`y = x\,s + b` per channel (``scale`` and ``shift``: the running statistics
        and the affine parameters folded, :class:`~minires.functional.norm.BatchNormEval`), in one pass:
        ``normalize`` with a zero mean, whose :math:`(x - 0)\,s + b` rounds where the reference's
        ``x * s`` and then ``+ b`` do (the same bits). None, for the reference to run, where the arrays
        are not float32 or float64 of one dtype, ``x`` is empty, or it is neither NCHW nor channels last in memory."""
        if x.size == 0 or x.dtype not in KERNEL_DTYPES or scale.dtype != x.dtype or shift.dtype != x.dtype:
            return None
        xr, kernels = KernelRows(x), _kernels()
        if xr.array is not x:
            return None
        rows = xr.rows
        vectors = (np.zeros(rows.shape[1], x.dtype), xr.expand(scale), xr.expand(shift))
        y = xr.empty_like()
        out = xr.rows_of(y)
        numba_layer.run_pass(rows, kernels.normalize, kernels.normalize_split, lambda s: (rows[s], *vectors, out[s]))
        return y


if importlib.util.find_spec("numba") is not None:
    backend.register("batch_norm", "numba", device="cpu", default=True)(NumbaBatchNorm)
