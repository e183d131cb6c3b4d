"""conv2d's data movers for the CPU in Numba (``@njit(parallel=True)``): im2col and col2im.

The products stay with BLAS (NumPy's matmul, see :mod:`minires.cpu.conv`); these kernels only
move data between NCHW images and the *pixel-major* column matrix ``col`` of that module:
row ``(b, oh, ow)`` (image, output pixel), column ``(r, s, ci)`` (kernel tap, input channel),

    col[(b*out_h + oh)*out_w + ow, (r*kw + s)*c_in + ci] = x[b, ci, ih, iw],
    ih = oh*stride_h - pad_h + r,   iw = ow*stride_w - pad_w + s,

zero where ``(ih, iw)`` falls in the padding. ``input_index`` / ``output_index`` are the very
functions of ``conv2d_index.py`` that the CUDA kernels use, compiled here for the CPU.

One ``prange`` iteration is what a thread computes (2-16 cores, so each gets a whole row of
the image, not one value as on the GPU):

* ``im2col``: iteration ``(b, oh)`` fills the ``out_w`` rows of the column matrix for output
  row ``oh`` of image ``b``: ``out_w * kh*kw*c_in`` contiguous values, each written once (the
  padding as zeros, so the buffer may start uninitialised). It first copies the ``kh`` input rows
  it reads into a small channels-last tile with the zero padding around it (``kh x (w + 2 pad_w) x
  c_in``, a few KiB that stay in L1), so every tap is then a branch-free run of ``c_in`` values.
* ``col2im``: iteration ``(b, ih)`` owns input row ``ih`` of image ``b`` in every channel. For
  each tap row ``r`` it finds the output row ``oh`` that read row ``ih`` (``output_index``; none
  when the division is not exact) and adds that row's column entries into a padded channels-last
  tile, then writes the tile's interior to ``gx[b, :, ih, :]``. Each value of ``gx`` is written by
  one iteration only: no atomics, no races, and one pass over the column gradient instead of
  NumPy's ``kh*kw`` read-modify-write passes plus a transpose.

``col2im_gather`` is serial (``@njit(nogil=True)``), for ``numba-rows`` (:mod:`minires.cpu.conv`),
whose strided convs gather their data gradient with it: image by image inside the Numba kernel of
``kernels/conv2d_rows_cpu.py`` (``input_gradient_by_columns``), or a chunk at a time on minires'
thread pool where that kernel does not run. A call fills channels-last ``gx``. For each pixel it
adds the column entries of the taps that read it, in tap order from zero, as ``numpy_col2im``'s
tap-by-tap additions do, so it gives that function's bits, writing each value of ``gx`` once.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import conv2d_index

input_index = njit(inline="always", cache=True)(conv2d_index.input_index)
output_index = njit(inline="always", cache=True)(conv2d_index.output_index)


@njit(parallel=True, cache=True)
def im2col(x, g, col):
    """Fill the pixel-major ``col`` (``n*out_h*out_w`` x ``kh*kw*c_in``) from NCHW ``x`` (geometry ``g``)."""
    for image_row in prange(g.n * g.out_h):
        b, oh = image_row // g.out_h, image_row % g.out_h
        # the kh input rows this output row reads, channels last, with the zero padding included
        rows = np.zeros((g.kh, g.w + 2 * g.pad_w, g.c_in), dtype=x.dtype)
        for r in range(g.kh):
            ih = input_index(oh, r, g.stride_h, g.pad_h, g.h)
            if ih >= 0:
                for ci in range(g.c_in):
                    for iw in range(g.w):
                        rows[r, g.pad_w + iw, ci] = x[b, ci, ih, iw]
        first = image_row * g.out_w
        for ow in range(g.out_w):
            for r in range(g.kh):
                for s in range(g.kw):
                    start, padded_iw = (r * g.kw + s) * g.c_in, ow * g.stride_w + s
                    for ci in range(g.c_in):
                        col[first + ow, start + ci] = rows[r, padded_iw, ci]


@njit(parallel=True, cache=True)
def col2im(gcol, g, gx):
    """Fill NCHW ``gx``: each pixel's gradient gathered from the pixel-major column gradient ``gcol``."""
    for image_row in prange(g.n * g.h):
        b, ih = image_row // g.h, image_row % g.h
        row = np.zeros((g.w + 2 * g.pad_w, g.c_in), dtype=gx.dtype)  # gx[b, :, ih, :], channels last, padded
        for r in range(g.kh):
            oh = output_index(ih, r, g.stride_h, g.pad_h, g.out_h)
            if oh < 0:
                continue
            first = (b * g.out_h + oh) * g.out_w
            for ow in range(g.out_w):
                for s in range(g.kw):
                    start, padded_iw = (r * g.kw + s) * g.c_in, ow * g.stride_w + s
                    for ci in range(g.c_in):
                        row[padded_iw, ci] += gcol[first + ow, start + ci]
        for ci in range(g.c_in):
            for iw in range(g.w):
                gx[b, ci, ih, iw] = row[g.pad_w + iw, ci]


@njit(nogil=True, cache=True)
def col2im_gather(gcol, g, gx_last):
    """Fill channels-last ``gx_last`` (``n, h, w, c_in``): pixel ``(b, u, v)`` gets the sum, over the
    taps ``(r, s)`` in order, of the column gradient entries of the output pixel that read it there."""
    total = np.empty(g.c_in, dtype=gcol.dtype)
    for b in range(g.n):
        for u in range(g.h):
            for v in range(g.w):
                total[:] = 0
                for r in range(g.kh):
                    oh = output_index(u, r, g.stride_h, g.pad_h, g.out_h)
                    if oh < 0:
                        continue
                    for s in range(g.kw):
                        ow = output_index(v, s, g.stride_w, g.pad_w, g.out_w)
                        if ow < 0:
                            continue
                        row, start = (b * g.out_h + oh) * g.out_w + ow, (r * g.kw + s) * g.c_in
                        for ci in range(g.c_in):
                            total[ci] += gcol[row, start + ci]
                for ci in range(g.c_in):
                    gx_last[b, u, v, ci] = total[ci]
