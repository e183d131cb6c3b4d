r"""conv2d for the CPU in one Numba region (``@njit(parallel=True, nogil=True)``):
the row columns and the BLAS products of :meth:`minires.cpu.conv.ChunkedIm2colGemm._correlate_by_rows`.

The algorithm is that method's, chunk for chunk and product for product; what changes is who runs
it. There, every chunk is a Python function on minires' thread pool, a dozen NumPy calls each
taking and dropping the GIL, and handing a share to a pool thread costs 35-70 us. Here the whole
call is one Numba ``prange`` over the threads' shares: Numba's threads start in a few
microseconds, never touch the GIL, and call BLAS's GEMM directly (``gemm``, from
:mod:`minires.cpu.blas`: the same library and the same calls as NumPy's matmul).

One ``prange`` iteration is one thread's share of the images, a run of chunks (the chunks of
:func:`minires.cpu.threads.map_batch`, so the results have the same bits). For each image ``b`` of
each chunk, in order, it

1. fills the image's row columns, ``rows[t, row_position(r), j, (q, c)] = x[b, r - pad_h,
   j s_w - pad_w + q, c]`` (zero in the padding): every padded row ``r``, output column ``j``, tap
   ``q`` is one run of ``c_in`` values, copied from channels-last memory in order (the ``kw`` runs of
   a window inside the image's width as one). The images come flat and channels last (the driver
   copies the 3-channel stem's NCHW input into that layout). With vertical
   stride 1 row ``r`` lies at ``r``; with stride :math:`s_h` the rows are grouped by ``r mod s_h``
   (``row_position``), so the rows kernel row ``p`` reads, ``p, p + s_h, ..``, lie side by side, as
   the copy the NumPy code makes of them (:func:`minires.cpu.conv.kernel_row`) does;
2. multiplies them by each kernel row,
   :math:`Y_b = \sum_p R_{b,p} W_p`: one GEMM per kernel row, ``(out_h*out_w) x
   (kw*c_in)`` times ``(kw*c_in) x c_out``; the first writes :math:`Y_b`, each later one writes a
   scratch product that is then added to :math:`Y_b`, as NumPy's ``out +=`` does;
3. with ``x_t`` (the weight gradient of :meth:`~minires.cpu.conv.ChunkedIm2colGemm.backward`, or
   of :meth:`~minires.cpu.conv.ChunkedIm2colGemm.backward_weight` with :math:`X = \bar Y`), adds
   :math:`R_{b,p}^\top X_b` into the chunk's partial for kernel row ``p`` (the chunk's first image
   writes it); the driver adds the chunks' partials in chunk order. With an empty ``y_last``
   step 2 is skipped: only the weight gradient is wanted.

Every value is the sum of the same products in the same order as in the NumPy code, which fills a
whole chunk's row columns and then runs its GEMMs kernel row by kernel row. Going image by image, in
one image's buffer per thread, keeps the row columns, :math:`Y_b` and the scratch product in cache
from one step to the next: ResNet-20's 16- and 32-channel convs (forward and backward, batch 32 and
128, two threads) took 0.95-0.98x the time of the chunk-by-chunk order, the 64-channel ones
0.99-1.00x, and its training steps 0.93-0.95x at batch 32 and 0.98x at batch 128; the one buffer
instead of one per image of the chunk, another 0.96-0.98x on ResNet-20's conv kernels in steps (batch
32 and 128, one and two threads) (2026-12-05, one-off A/Bs, not committed).

Each thread owns its slice of ``rows``, ``product`` and ``gram``, and its images of ``y``: nothing is
shared but the read-only inputs.

``input_gradient_by_columns`` is the data gradient of the convs that are not a stride-1 correlation
(the strided ones, :meth:`minires.cpu.conv.NumbaRowsIm2colGemm.backward_data`) in one region the same
way: per image, the GEMM of its column gradient, :math:`\bar Y_b W` (``(out_h*out_w) x c_out`` times
``c_out x (kh*kw*c_in)``), into the thread's buffer, then the gather of ``kernels/conv2d_cpu.py``
(``col2im_gather``) into the image's :math:`\bar x_b`.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .conv2d_cpu import col2im_gather

ROW_MAJOR, NO_TRANS, TRANS = np.int32(101), np.int32(111), np.int32(112)   # CBLAS enum values


@njit(inline="always", cache=True)
def address(a):
    """The address of ``a``'s first element, as the GEMM's ``int64`` pointer argument."""
    return np.int64(a.ctypes.data)


@njit(inline="always", cache=True)
def row_position(g, r):
    """Where padded row ``r`` lies in an image's row columns: the rows grouped by ``r mod stride_h``, each
    group in order (:func:`minires.cpu.conv.row_columns_shape`), so that the rows a kernel row reads,
    ``p, p + stride_h, ...``, lie side by side (with vertical stride 1, row ``r`` at ``r``)."""
    return (r % g.stride_h) * -(-(g.h + 2 * g.pad_h) // g.stride_h) + r // g.stride_h


@njit(cache=True)
def fill_row_columns(x_flat, g, b, rows_flat):
    """``rows_flat`` (one image's row columns, ``stride_h * ceil((h + 2 pad_h) / stride_h), out_w, kw*c_in``,
    flat) <- the row columns of image ``b`` of the channels-last images ``x_flat`` (``n, h, w, c_in``,
    flat), padded row ``r`` at ``row_position(g, r)``. A window that lies inside the image's width
    reads ``kw*c_in`` consecutive values of ``x``: one copy; one over the left or right padding goes
    tap by tap. Every offset is unsigned: Numba checks each signed index for a negative value (to
    count from the end), which kept LLVM from vectorising the copies (with 4-D signed indices an image
    of the 16-channel layers took 10-11 us, now 6.6 us; the 3-channel stem's 10.6 us, now 5.1 us:
    2026-12-05, one-off, not committed)."""
    u = np.uint64
    c_in = u(g.c_in)
    run = u(g.kw) * c_in                        # a window's kernel row: kw*c_in values
    per_padded_row = u(g.out_w) * run
    image_row = u(g.w) * c_in
    image = u(b) * u(g.h) * image_row
    for r in range(g.h + 2 * g.pad_h):
        i = r - g.pad_h
        inside = 0 <= i < g.h
        source = image + u(max(i, 0)) * image_row
        out = u(row_position(g, r)) * per_padded_row
        for j in range(g.out_w):
            k0 = j * g.stride_w - g.pad_w       # the input column of tap 0
            if inside and 0 <= k0 and k0 + g.kw <= g.w:
                start = source + u(k0) * c_in
                for e in range(run):
                    rows_flat[out + e] = x_flat[start + e]
            else:
                for q in range(g.kw):
                    k, at = k0 + q, out + u(q) * c_in
                    if inside and 0 <= k < g.w:
                        start = source + u(k) * c_in
                        for c in range(c_in):
                            rows_flat[at + c] = x_flat[start + c]
                    else:
                        for c in range(c_in):
                            rows_flat[at + c] = 0
            out += run


@njit(cache=True)
def add_into(total, part):
    """``total += part`` for two 2-D arrays of one shape."""
    for i in range(total.shape[0]):
        for j in range(total.shape[1]):
            total[i, j] += part[i, j]


@njit(parallel=True, nogil=True, cache=True)
def correlate_by_rows(gemm, x_flat, g, w_rows, y_last, bounds, shares, rows, product, x_t, gram, partials):
    """``y_last[b]`` (``out_h*out_w, c_out``) <- the conv of image ``b`` of ``x_flat`` (the channels-last
    images ``n, h, w, c_in``, flat)
    with ``w_rows`` (``kh, kw*c_in, c_out``), for every chunk ``[bounds[k], bounds[k+1])``; thread ``t``
    runs chunks ``shares[t] .. shares[t+1] - 1`` (:func:`correlate_share`) in its buffers ``rows[t]``
    (one image's row columns, ``stride_h * ceil((h + 2 pad_h) / stride_h), out_w, kw*c_in``), ``product[t]``
    (``out_h*out_w, c_out``), ``gram[t]`` (``kw*c_in, c_x``). With a non-empty ``x_t`` (``n,
    out_h*out_w, c_x``), ``partials[k, p]`` (``kw*c_in, c_x``) <- chunk ``k``'s sum over its images
    of kernel row ``p``'s rows, transposed, times ``x_t[b]``. An empty ``y_last`` (``0, out_h*out_w,
    c_out``) skips the conv's own products."""
    for t in prange(shares.size - 1):
        correlate_share(gemm, x_flat, g, w_rows, y_last, bounds, shares[t], shares[t + 1],
                        rows[t], product[t], x_t, gram[t], partials)


@njit(nogil=True, cache=True)
def correlate_share(gemm, x_flat, g, w_rows, y_last, bounds, first_chunk, stop_chunk, rows, product, x_t, gram, partials):
    """One thread's share of :func:`correlate_by_rows`: chunks ``first_chunk .. stop_chunk - 1``, in the
    buffers ``rows`` (one image's row columns), ``product`` and ``gram``. Called alone where the batch is one
    share (one thread, or a batch too small to split): no Numba threads."""
    one, zero = w_rows.dtype.type(1), w_rows.dtype.type(0)
    width, pixels, c_x = g.kw * g.c_in, g.out_h * g.out_w, x_t.shape[2]
    for k in range(first_chunk, stop_chunk):
        first, stop = bounds[k], bounds[k + 1]
        for b in range(first, stop):
            fill_row_columns(x_flat, g, b, rows.reshape(-1))
            for p in range(g.kh if y_last.shape[0] else 0):
                out = y_last[b] if p == 0 else product
                gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, pixels, g.c_out, width, one,
                     address(rows[row_position(g, p)]), width, address(w_rows[p]), g.c_out, zero,
                     address(out), g.c_out)
                if p > 0:
                    add_into(y_last[b], product)
            for p in range(g.kh if x_t.shape[0] else 0):
                out = partials[k, p] if b == first else gram
                gemm(ROW_MAJOR, TRANS, NO_TRANS, width, c_x, pixels, one,
                     address(rows[row_position(g, p)]), width, address(x_t[b]), c_x, zero,
                     address(out), c_x)
                if b > first:
                    add_into(partials[k, p], gram)


@njit(parallel=True, nogil=True, cache=True)
def input_gradient_by_columns(gemm, gy_pixels, g_image, w_mat, gx_last, bounds, gcol):
    """The data gradient of a conv that is not a stride-1 correlation (the strided ones), image by
    image: ``gx_last[b]`` (channels last) <- col2im of the column gradient ``gy_pixels[b] @ w_mat``
    (``out_h*out_w, c_out`` times ``c_out, kh*kw*c_in``; ``col2im_gather`` with ``g_image``, the
    geometry of one image). Thread ``t`` runs images ``bounds[t] .. bounds[t+1] - 1`` in its buffer
    ``gcol[t]`` (``out_h*out_w, kh*kw*c_in``). Each image's GEMM and sums are those of
    :meth:`minires.cpu.conv.ChunkedIm2colGemm.backward_data`, which multiplies image by image too."""
    for t in prange(bounds.size - 1):
        input_gradient_share(gemm, gy_pixels, g_image, w_mat, gx_last, bounds[t], bounds[t + 1], gcol[t])


@njit(nogil=True, cache=True)
def input_gradient_share(gemm, gy_pixels, g_image, w_mat, gx_last, first, stop, gcol):
    """Images ``first .. stop - 1`` of :func:`input_gradient_by_columns`, in the buffer ``gcol``; called
    alone where the batch is one share."""
    one, zero = w_mat.dtype.type(1), w_mat.dtype.type(0)
    pixels, c_out, width = gy_pixels.shape[1], gy_pixels.shape[2], w_mat.shape[1]
    for b in range(first, stop):
        gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, pixels, width, c_out, one, address(gy_pixels[b]), c_out,
             address(w_mat), width, zero, address(gcol), width)
        col2im_gather(gcol, g_image, gx_last[b:b + 1])
