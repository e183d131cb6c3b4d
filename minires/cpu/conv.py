r"""conv2d on the CPU as im2col + one large BLAS GEMM per chunk of images, channels last inside.

The reference (:class:`minires.functional.conv.Im2colConv2d`) keeps one column matrix per image,
``(N, C k_h k_w, L)``, and multiplies image by image. Here a chunk of :math:`n` images gets one
*pixel-major* column matrix :math:`X^{col}` of shape :math:`(n H_o W_o) \times (k_h k_w C)`: row
:math:`(b, i, j)` is the receptive field of output pixel :math:`(i, j)` of image :math:`b`, its
entries ordered :math:`(p, q, c)` — tap first, channel last, as in NHWC memory:

.. math::  X^{col}_{(b,i,j),\,(p,q,c)} = \tilde x_{b,c,\,s_h i+p,\,s_w j+q}

With the weight as the matrix :math:`W_{o,(p,q,c)} = w_{o,c,p,q}` (:math:`O \times k_h k_w C`) and
the output gradient as :math:`\bar Y_{(b,i,j),o} = \bar y_{b,o,i,j}` (pixel-major too), each
direction is a single GEMM:

.. math::  Y = X^{col} W^\top, \qquad
           \bar X^{col} = \bar Y W \;\xrightarrow{\text{col2im}}\; \bar x, \qquad
           \bar W = \sum_{\text{chunks}} \bar Y^\top X^{col}.

Why this is faster than the reference:

* one GEMM with a long side (:math:`n H_o W_o` rows) instead of :math:`N` small ones: BLAS runs
  near its peak and its threads synchronise once per chunk, not once per image;
* the column matrix is not built at all for the forward of a conv with vertical stride 1 (with
  ``every_conv``, for every conv's forward and separate weight gradient): each padded row's windows
  are copied once, as *row columns* of :math:`k_w C` values, and each kernel row is a GEMM on a
  view of them (:meth:`ChunkedIm2colGemm._correlate_by_rows`; with a vertical stride, on the rows
  it reads, copied side by side). A third of the copying: in a ResNet-20 training
  step the convs take 0.72-0.80x the time of the column-matrix path (``numpy-columns``), the step
  0.77-0.84x (README, "Performance (CPU)"; measured when only the convs of vertical stride 1 took
  this route, every 3x3 conv of a CIFAR ResNet but the two that halve the image);
* from channels-last input (every conv's but the first) the row columns are copied straight out
  of :math:`x`, without a padded copy of it first (:func:`numpy_row_im2col`): a third less memory
  traffic for the im2col: ResNet-20's convs take 0.93-0.98x the time of ``numpy-padded-rows``,
  the step 0.93-1.00x (README);
* pixel-major columns put the long side where OpenBLAS's kernels want it (for the skinny
  :math:`O = 16` layers about twice the GFLOP/s of the channel-major product: a figure of
  2026-11-27 with no committed timing), and the im2col copy
  moves runs of :math:`k_w C` contiguous values (a kernel row: its pixels, all channels) instead of
  runs of :math:`k_w` pixels, each run as one record (:func:`numpy_im2col`);
* with stride 1, backward-data is itself a convolution and needs no col2im at all: the output
  gradient convolved with the flipped, transposed kernel, with the complementary padding
  :math:`k-1-p`,

  .. math::  \bar x_{b,c,u,v} = \sum_{o,p',q'} \tilde{\bar y}_{b,o,\,u+p',\,v+q'}\; w_{o,c,\,k_h-1-p',\,k_w-1-q'},

  (:func:`flipped_weight`), so it runs the forward path: one copy, one GEMM. On ResNet-20's
  32-pixel layers that is 2x faster than col2im (README), since col2im's nine strided additions move
  more memory than im2col's one copy;
* that copy's column matrix, :math:`\bar Y^{col}`, also gives the weight gradient: one GEMM with
  the pixel-major input, :math:`\bar Y^{col\top} X`, holds :math:`\bar w` with its taps turned
  (:meth:`ChunkedIm2colGemm.backward`). A training step's backward then builds one column matrix
  per conv instead of two: 8-24% less time, the 16-channel layers gaining most (README);
* the outputs stay channels last: ``forward`` and ``backward_data`` return NCHW-indexed views of
  NHWC memory, the GEMM's output rows as they are (PyTorch's ``channels_last`` memory format), so
  no transpose is ever copied. The next conv's im2col then reads runs of :math:`W C` contiguous
  values, the output gradient is already the pixel-major :math:`\bar Y`, and batch norm, ReLU, padding and
  slicing keep the layout (:mod:`minires.cpu.pointwise`, :mod:`minires.functional.shape`). On the
  16-channel layers of ResNet-20 the two transposes cost about a quarter of the conv's time (a
  figure of 2026-11-27 with no committed timing);
* for strided convs, col2im adds the column gradient back tap by tap (or in one parallel Numba
  gather), where the reference zero-stuffs a canvas and runs a second full im2col;
* memory stays bounded: the column matrix (:math:`k_h k_w` times the input) exists for at most
  ``chunk_bytes`` at a time per thread, in one buffer per thread that every chunk reuses; the
  chunks' partial weight gradients are added in chunk order, so a thread count always gives the same bits.

Two sets of data movers plug into the same algorithm (:class:`ChunkedIm2colGemm`): ``numpy-fast``
(NumPy only, row columns for the forward of the convs with vertical stride 1) and ``numba`` (the
parallel kernels of ``kernels/conv2d_cpu.py``); ``numpy-columns`` is ``numpy-fast`` with the column
matrix everywhere, ``numpy-padded-rows`` with every row column copied through a padded copy of the
input (each shows what one of the steps above saves), ``numpy-rows`` with row columns for every
conv's forward and separate weight gradient (``every_conv``). ``numba-rows``
(:class:`NumbaRowsIm2colGemm`, the default where Numba is installed) is ``numpy-rows`` with each
conv's chunks, row columns and GEMMs run as one Numba region instead of Python functions on
minires' pool, and each strided conv's col2im gathered in one pass (:func:`gather_col2im`): the same
bits. ``numpy-fast``, the default without Numba, keeps the column matrix for the strided convs and
the separate weight gradients so that the runs the README quotes from an install without Numba
keep their bits (``every_conv`` changes the order of the sums); README, "Performance (CPU)".
"""
from __future__ import annotations

import functools
import importlib.util
import math
import threading

import numpy as np

from .. import backend
from ..functional.conv import _canvas_slices
from ..kernels.conv2d_index import ConvGeometry
from . import blas, numba_layer, threads

CHUNK_BYTES = 4 * 2 ** 20  # the largest column matrix built at once: stays in L2/L3 for the GEMM
_SCRATCH = threading.local()  # the column-matrix and padded-input buffers, kept between calls


def pixel_major(a):
    """NCHW ``(n, c, h, w)`` -> the matrix ``(n*h*w, c)``, one row per pixel (a copy, unless the memory
    is channels last already)."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).reshape(-1, a.shape[1])


def channels_last_empty(shape, dtype):
    """An uninitialised NCHW array of ``shape`` whose memory is NHWC (a transposed view)."""
    n, c, h, w = shape
    return np.empty((n, h, w, c), dtype=dtype).transpose(0, 3, 1, 2)


def weight_matrix(w):
    r"""``(O, C, k_h, k_w)`` -> :math:`W`, ``(O, k_h*k_w*C)`` with columns ordered ``(p, q, c)``."""
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(w.shape[0], -1)


def flipped_weight(w):
    r"""``(O, C, k_h, k_w)`` -> ``(C, O, k_h, k_w)``, each kernel turned by 180 degrees: :math:`w'_{c,o,p,q} = w_{o,c,k_h-1-p,k_w-1-q}`.
    A view: the conv copies it once, into the layout its GEMMs read."""
    return w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)


class ChunkedIm2colGemm:
    """conv2d (the contract of :class:`~minires.functional.conv.Im2colConv2d`) as chunked im2col + GEMM.

    ``im2col(x, g, col)`` fills the pixel-major column matrix ``col`` (``n*out_h*out_w`` x
    ``kh*kw*c_in``) of the NCHW images ``x``; ``col2im(gcol, g, gx)`` overwrites the NCHW ``gx``
    with the column gradient summed back onto the pixels (``g``: the geometry of the chunk).
    ``row_im2col(x, g, rows)``, when given, fills the row columns instead (:meth:`_correlate_by_rows`):
    for the forward of convs with vertical stride 1, and with ``every_conv`` for every conv's forward
    and separate weight gradient (:meth:`_by_rows`). The chunks of a call run on
    :func:`~minires.cpu.threads.get_num_threads` threads at once.
    """

    def __init__(self, im2col, col2im, chunk_bytes: int = CHUNK_BYTES, row_im2col=None, every_conv: bool = False):
        self.im2col, self.col2im, self.chunk_bytes, self.row_im2col = im2col, col2im, chunk_bytes, row_im2col
        self.every_conv = every_conv

    def forward(self, x, w, stride, padding):
        return self._correlate(x, w, stride, padding)[0]

    def backward_data(self, gy, w, x_shape, stride, padding):
        g = ConvGeometry.of(x_shape, w.shape, stride, padding)
        if _is_transposable(g):
            return self._correlate(gy, flipped_weight(w), (1, 1), _complementary_padding(g))[0]
        gx = channels_last_empty(x_shape, gy.dtype)
        w_mat = weight_matrix(w)

        def chunk_backward_data(images, chunk, gcol):       # one GEMM per image, as numba-rows' kernel does
            pixels = (chunk.n, g.out_h * g.out_w)
            np.matmul(pixel_major(gy[images]).reshape(*pixels, g.c_out), w_mat, out=gcol.reshape(*pixels, gcol.shape[1]))
            self.col2im(gcol, chunk, gx[images])

        self._run_chunks(gy, g, chunk_backward_data, column_matrix_shape(g))
        return gx

    def backward_weight(self, gy, x, w_shape, stride, padding):
        g = ConvGeometry.of(x.shape, w_shape, stride, padding)
        return self._weight_by_rows(gy, x, g) if self._by_rows(g, gradient=True) else self._weight_by_columns(gy, x, g)

    def _by_rows(self, g: ConvGeometry, gradient: bool = False) -> bool:
        """Whether the forward (or, with ``gradient``, the separate weight gradient) of the conv ``g`` comes
        from row columns (:meth:`_correlate_by_rows`) rather than the column matrix: with ``every_conv``
        wherever there are row columns, else only the forward of a conv with vertical stride 1."""
        if self.row_im2col is None:
            return False
        return self.every_conv or (g.stride_h == 1 and not gradient)

    def _weight_by_columns(self, gy, x, g: ConvGeometry):
        r"""The weight gradient from the column matrix of ``x``: :math:`\bar W^\top = \sum_{\text{chunks}} X^{col\top} \bar Y`."""
        def chunk_backward_weight(images, chunk, col):
            self.im2col(x[images], chunk, col)
            return col.T @ pixel_major(gy[images])      # W-bar transposed: faster in OpenBLAS at 16-32 channels (one-off probe, 2026-11-27)

        gw_t = self._run_chunks(x, g, chunk_backward_weight, column_matrix_shape(g))
        return np.ascontiguousarray(gw_t.reshape(g.kh, g.kw, g.c_in, g.c_out).transpose(3, 2, 0, 1))

    def _weight_by_rows(self, gy, x, g: ConvGeometry):
        r"""The weight gradient from the row columns :math:`R` of ``x`` (:meth:`_correlate_by_rows`,
        without its forward products): kernel row :math:`p`'s part is :math:`\sum_b R_{b,p}^\top \bar Y_b`,
        ``(kw*c_in) x c_out``, that is :math:`\bar w_{o,c,p,q}` at row :math:`(q, c)`. :math:`R` is
        :math:`k_h` times smaller than the column matrix with vertical stride 1, about :math:`k_h / s_h`
        times with stride :math:`s_h` (it holds every padded row, the column matrix every output row). In a
        CIFAR ResNet this is the gradient of the 3-channel stem and of the two strided convs; the
        others take :meth:`backward`'s shared columns. README, "Performance (CPU)", has the timings."""
        by_kernel_row = self._correlate_by_rows(x, None, g, None, gy)
        return np.ascontiguousarray(by_kernel_row.reshape(g.kh, g.kw, g.c_in, g.c_out).transpose(3, 2, 0, 1))

    def backward(self, gy, x, w, stride, padding):
        r"""``(gx, gw)``. With stride 1, one column matrix serves both: backward-data's
        :math:`\bar Y^{col}`, of the output gradient padded by :math:`k-1-p` (columns ordered
        :math:`(p', q', o)`), times the pixel-major input :math:`X` (a view of channels-last memory)
        is the weight gradient with its taps turned by 180 degrees,

        .. math::  \bar w_{o,c,p,q} = \sum_{b,u,v} x_{b,c,u,v}\,\tilde{\bar y}_{b,o,\,u+k_h-1-p,\,v+k_w-1-q}
                   = \big(\bar Y^{col\top} X\big)_{(k_h-1-p,\,k_w-1-q,\,o),\,c},

        so the backward builds one column matrix instead of two. Only when ``x`` has at least as
        many channels as ``y``: this product is :math:`C` wide, the separate one :math:`O` wide, and
        for the 3-channel stem a 3-wide GEMM cost more than the small column matrix it saves (a
        one-off probe of 2026-11-27, not committed).
        """
        g = ConvGeometry.of(x.shape, w.shape, stride, padding)
        if not _is_transposable(g) or g.c_in < g.c_out:
            gx = self.backward_data(gy, w, x.shape, stride, padding)
            return gx, self.backward_weight(gy, x, w.shape, stride, padding)
        gx, turned = self._correlate(gy, flipped_weight(w), (1, 1), _complementary_padding(g), col_t_times=x)
        gw = turned.reshape(g.kh, g.kw, g.c_out, g.c_in)[::-1, ::-1].transpose(2, 3, 0, 1)
        return gx, np.ascontiguousarray(gw)

    def _correlate(self, x, w, stride, padding, col_t_times=None):
        """``(y, None)``: the conv of ``x`` with ``w``, channels last; given ``col_t_times`` (an
        array with ``y``'s shape), ``(y, sum over chunks of col^T pixel_major(col_t_times[images]))``."""
        g = ConvGeometry.of(x.shape, w.shape, stride, padding)
        y = channels_last_empty((g.n, g.c_out, g.out_h, g.out_w), x.dtype)
        if self._by_rows(g):
            return y, self._correlate_by_rows(x, w, g, y, col_t_times)
        w_t = weight_matrix(w).T

        def chunk_forward(images, chunk, col):
            self.im2col(x[images], chunk, col)
            np.matmul(col, w_t, out=pixel_major(y[images]))      # y is channels last: a view, no copy
            return None if col_t_times is None else col.T @ pixel_major(col_t_times[images])

        return y, self._run_chunks(x, g, chunk_forward, column_matrix_shape(g))

    def _correlate_by_rows(self, x, w, g: ConvGeometry, y, col_t_times):
        r""":meth:`_correlate` from *row columns*: a third of the copying (with vertical stride 1).

        The column matrix repeats each kernel row's run of :math:`k_w C` values :math:`k_h` times,
        once for each output row that reads it. Output row :math:`i` reads padded rows
        :math:`s_h i \dots s_h i+k_h-1`, so one array of row columns,
        :math:`R_{b,r,j,(q,c)} = \tilde x_{b,c,r,s_w j+q}` for *every* padded row :math:`r`, holds
        them all once, and kernel row :math:`p`'s part of the product is a GEMM with the padded rows
        :math:`p, p + s_h, \dots, p + s_h (H_o - 1)` of :math:`R`, :math:`R_{b,p}` (``kernel_row``: with
        :math:`s_h = 1` the view :math:`R_{b,\,p:p+H_o}`):

        .. math::  Y_b = \sum_{p=0}^{k_h-1} R_{b,p}\, W_p, \qquad
                   (W_p)_{(q,c),\,o} = w_{o,c,p,q}.

        :math:`k_h` GEMMs of depth :math:`k_w C` do the work of one of depth :math:`k_h k_w C`, and
        :math:`R` is :math:`k_h` times smaller than the column matrix (about :math:`k_h / s_h` times
        with a vertical stride, whose copies of :math:`R_{b,p}` are one kernel row's at a time). With
        ``col_t_times`` the weight gradient comes from the same rows (see :meth:`backward`): the
        turned kernel row :math:`p` is :math:`\sum_b R_{b,p}^\top X_b`. With ``w`` and ``y`` None,
        only that sum is computed (:meth:`_weight_by_rows`).
        """
        w_rows = None if w is None else weight_rows(w)

        def chunk_rows(images, chunk, rows):
            self.row_im2col(x[images], chunk, rows)
            if y is not None:
                _multiply_rows(rows, w_rows, y[images], chunk)
            if col_t_times is None:
                return None
            x_images = pixel_major(col_t_times[images]).reshape(chunk.n, g.out_h * g.out_w, col_t_times.shape[1])
            return np.concatenate([np.matmul(kernel_row(rows, p, g).transpose(0, 2, 1), x_images).sum(axis=0)
                                   for p in range(g.kh)])

        return self._run_chunks(x, g, chunk_rows, row_columns_shape(g))

    def _run_chunks(self, batch, g: ConvGeometry, work, column_shape):
        """``work(images, chunk geometry, column buffer)`` for every chunk of ``batch`` (the array
        whose images are sliced); the sum of what the calls return (None if nothing).
        ``column_shape(n)``: the buffer's shape for a chunk of ``n`` images.

        The chunks are :func:`~minires.cpu.threads.map_batch`'s blocks: each CPU thread cuts an
        equal share of the images into chunks; the results are added in chunk order
        (:func:`~minires.cpu.threads.total`), so the same thread count gives the same bits. Each
        thread has its own column-matrix buffer, kept between calls (a fresh multi-megabyte array
        costs a page fault per 4 KiB on first touch), C-contiguous as BLAS wants it.
        """
        per_image, per_chunk = self._chunk_size(g, column_shape, batch.dtype)

        def run_chunk(images: slice):
            chunk = g._replace(n=images.stop - images.start)
            col = _scratch("columns", chunk.n * per_image, batch.dtype).reshape(column_shape(chunk.n))
            return work(images, chunk, col)

        return threads.total(threads.map_batch(batch, run_chunk, per_block=per_chunk))

    def _chunk_size(self, g: ConvGeometry, column_shape, dtype) -> tuple[int, int]:
        """``(values of the buffer per image, images per chunk)``: as many images as fit in ``chunk_bytes``."""
        per_image = math.prod(column_shape(1))
        return per_image, max(1, min(g.n, self.chunk_bytes // (per_image * np.dtype(dtype).itemsize)))


def _multiply_rows(rows, w_rows, y, g: ConvGeometry) -> None:
    r"""``y`` (channels last) <- :math:`\sum_p R_{b,p} W_p` for each image of the chunk ``g``,
    from its row columns ``rows`` and the kernel rows' weights ``w_rows`` (:func:`weight_rows`): the
    first kernel row's product written into ``y``, each later one into a scratch buffer and added."""
    out = y.transpose(0, 2, 3, 1).reshape(g.n, g.out_h * g.out_w, g.c_out)   # contiguous: a view
    product = _scratch("product", out.size, out.dtype).reshape(out.shape)
    np.matmul(kernel_row(rows, 0, g), w_rows[0], out=out)
    for p in range(1, g.kh):
        out += np.matmul(kernel_row(rows, p, g), w_rows[p], out=product)


def weight_rows(w):
    r"""``(O, C, k_h, k_w)`` -> :math:`W_p`, ``(k_h, k_w*C, O)``: kernel row :math:`p`'s weights, rows ordered ``(q, c)``."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0)).reshape(w.shape[2], w.shape[3] * w.shape[1], w.shape[0])


def column_matrix_shape(g: ConvGeometry):
    """``n -> (n*out_h*out_w, kh*kw*c_in)``: the column matrix's shape for a chunk of ``n`` images."""
    return lambda n: (n * g.out_h * g.out_w, g.kh * g.kw * g.c_in)


def row_columns_shape(g: ConvGeometry):
    """``n -> (n, stride_h * ceil((h + 2 pad_h) / stride_h), out_w, kw*c_in)``: the row columns' shape for a
    chunk of ``n`` images, one row per padded row (``h + 2 pad_h`` of them; with a vertical stride that
    does not divide that, room for up to ``stride_h - 1`` more, which no one reads: the Numba kernel
    groups the rows by their remainder modulo the stride, in groups of equal length)."""
    return lambda n: (n, g.stride_h * -(-(g.h + 2 * g.pad_h) // g.stride_h), g.out_w, g.kw * g.c_in)


def kernel_row(rows, p: int, g: ConvGeometry):
    """Kernel row ``p``'s columns, ``(n, out_h*out_w, kw*c_in)``, from the row columns ``rows``
    (:func:`row_columns_shape`, in padded-row order): the padded rows ``p, p + s, .., p + s (out_h - 1)``
    of each image (``s`` the vertical stride); a view with stride 1, else a copy, contiguous as the
    Numba kernel's are, so that BLAS multiplies the same matrices."""
    last = p + g.stride_h * (g.out_h - 1)
    return rows[:, p:last + 1:g.stride_h].reshape(rows.shape[0], g.out_h * g.out_w, rows.shape[3])


def _is_transposable(g: ConvGeometry) -> bool:
    """Whether backward-data is the forward conv of the output gradient (stride 1, padding < kernel)."""
    return (g.stride_h, g.stride_w) == (1, 1) and g.pad_h < g.kh and g.pad_w < g.kw


def _complementary_padding(g: ConvGeometry) -> tuple[int, int]:
    """The padding :math:`k - 1 - p` of that conv."""
    return g.kh - 1 - g.pad_h, g.kw - 1 - g.pad_w


def _scratch(name: str, size: int, dtype):
    """A 1-D array of ``size`` elements of ``dtype``, the start of this thread's buffer ``name``, reused by
    later calls (uninitialised: it holds what the last call left)."""
    cached = getattr(_SCRATCH, name, None)
    if cached is None or cached.dtype != dtype or cached.size < size:
        cached = np.empty(size, dtype=dtype)
        setattr(_SCRATCH, name, cached)
    return cached[:size]


# ----------------------------------------------------------------------------- NumPy data movers
def _taps(col, g: ConvGeometry):
    """The column matrix seen as ``(n, out_h, out_w, kh, kw, c_in)`` (a view)."""
    return col.reshape(g.n, g.out_h, g.out_w, g.kh, g.kw, g.c_in)


def numpy_im2col(x, g: ConvGeometry, col):
    """Pad into channels-last memory, then copy every window row by row.

    A window's kernel row :math:`p` is one run of :math:`k_w C` contiguous values of the padded
    image (its :math:`k_w` pixels, all channels), and the column matrix holds the :math:`k_h` runs of
    output pixel :math:`(i, j)` side by side. Seen as opaque records of that many bytes (a NumPy
    void dtype), the runs are copied whole, element by element: 1.3-1.5x faster than the same copy
    of floats, whose loop restarts for every run.
    """
    padded, run = padded_channels_last(x, g), _kernel_row_record(x, g)
    image, row, pixel = padded.strides[:3]
    runs = np.ndarray((g.n, g.out_h, g.out_w, g.kh), run, buffer=padded,     # [b, i, j, p]: row p of window (i, j)
                      strides=(image, g.stride_h * row, g.stride_w * pixel, row))
    col.view(run).reshape(runs.shape)[...] = runs


def numpy_row_im2col(x, g: ConvGeometry, rows):
    """The row columns of :meth:`ChunkedIm2colGemm._correlate_by_rows`: for every padded row ``r`` and
    output column ``j``, the run of ``kw*c_in`` values a window starting there reads, copied as
    one record (as :func:`numpy_im2col` does, but once per padded row instead of once per kernel row
    of each window).

    From channels-last ``x`` (what the CPU conv and the ops after it return) the records are copied
    straight out of ``x``: a window's run lies inside one row of ``x`` unless it overlaps the left or
    right padding, and those few border columns get zeros for the taps in the padding and the rest
    of their run from ``x`` (:func:`_border_columns`). That skips the padded copy of ``x``, a third
    of the memory traffic. Other layouts (the NCHW images of the first conv) go through the padded
    copy (:func:`padded_row_im2col`)."""
    x_last = x.transpose(0, 2, 3, 1)
    if not x_last.flags.c_contiguous:
        return padded_row_im2col(x, g, rows)
    rows[:, :g.pad_h] = rows[:, g.pad_h + g.h:] = 0                     # the padding rows
    body = rows[:, g.pad_h:g.pad_h + g.h]                                # (n, h, out_w, kw*c_in)
    first, stop = _inner_columns(g)
    if stop > first:                                                     # windows inside x's rows
        image, row, pixel = x_last.strides[:3]
        runs = np.ndarray((g.n, g.h, stop - first), _kernel_row_record(x, g), buffer=x_last,
                          offset=(first * g.stride_w - g.pad_w) * pixel, strides=(image, row, g.stride_w * pixel))
        body[:, :, first:stop].view(runs.dtype)[..., 0] = runs
    _border_columns(x_last, g, body, [*range(first), *range(stop, g.out_w)])


def padded_row_im2col(x, g: ConvGeometry, rows):
    """:func:`numpy_row_im2col` through a padded channels-last copy of ``x``, in any layout: the
    records are runs of the padded rows."""
    padded, run = padded_channels_last(x, g), _kernel_row_record(x, g)
    image, row, pixel = padded.strides[:3]
    rows = rows[:, :padded.shape[1]]                                      # one per padded row
    runs = np.ndarray(rows.shape[:3], run, buffer=padded, strides=(image, row, g.stride_w * pixel))  # [b, r, j]
    rows.view(run).reshape(runs.shape)[...] = runs


def _inner_columns(g: ConvGeometry) -> tuple[int, int]:
    """``[first, stop)``: the output columns whose windows lie inside the unpadded width (empty, at
    ``first``, when none do; the columns before ``first`` and from ``stop`` on overlap the padding)."""
    first = min(-(-g.pad_w // g.stride_w), g.out_w)
    return first, max(first, (g.w + g.pad_w - g.kw) // g.stride_w + 1)


def _border_columns(x_last, g: ConvGeometry, body, columns) -> None:
    """The row columns of output columns ``columns``, whose windows overlap the padding: tap ``q`` reads
    input column ``j s_w - pad_w + q``, or zero outside the image. The taps inside the image read
    neighbouring columns, one run of values per image row, copied as one record."""
    c = g.c_in
    for j in columns:
        start = j * g.stride_w - g.pad_w                                 # input column of tap 0
        first, stop = max(0, -start), min(g.kw, g.w - start)             # taps inside the image
        body[:, :, j, :first * c] = 0
        body[:, :, j, max(stop, first) * c:] = 0
        if stop > first:
            run = np.dtype((np.void, (stop - first) * c * x_last.itemsize))
            source = x_last[:, :, start + first:start + stop].reshape(g.n, g.h, (stop - first) * c)
            body[:, :, j, first * c:stop * c].view(run)[..., 0] = source.view(run)[..., 0]


def _kernel_row_record(x, g: ConvGeometry):
    """A kernel row's ``kw*c_in`` values of ``x``'s dtype as one opaque record (a NumPy void dtype)."""
    return np.dtype((np.void, g.kw * g.c_in * x.itemsize))


def padded_channels_last(x, g: ConvGeometry):
    """The NCHW images ``x`` zero-padded by ``(pad_h, pad_w)``, in channels-last memory ``(n, h', w', c)``:
    this thread's reused buffer (no fresh zeroed array, whose pages would fault in on every call),
    its border zeroed and its interior copied."""
    shape = (g.n, g.h + 2 * g.pad_h, g.w + 2 * g.pad_w, g.c_in)
    padded = _scratch("padded", math.prod(shape), x.dtype).reshape(shape)
    (top, bottom), (left, right) = (g.pad_h, g.pad_h + g.h), (g.pad_w, g.pad_w + g.w)
    padded[:, :top] = padded[:, bottom:] = 0
    padded[:, top:bottom, :left] = padded[:, top:bottom, right:] = 0
    padded[:, top:bottom, left:right] = x.transpose(0, 2, 3, 1)
    return padded


def numpy_col2im(gcol, g: ConvGeometry, gx):
    """Per tap :math:`(p, q)`, add its slice of the column gradient onto the pixels the tap read."""
    gx_last = gx.transpose(0, 2, 3, 1)                  # channels last, like the columns
    gx_last[...] = 0
    taps = _taps(gcol, g)
    for p in range(g.kh):
        rows_in, rows_out = _canvas_slices(g.out_h, g.h, p - g.pad_h, g.stride_h)
        for q in range(g.kw):
            cols_in, cols_out = _canvas_slices(g.out_w, g.w, q - g.pad_w, g.stride_w)
            gx_last[:, rows_in, cols_in] += taps[:, rows_out, cols_out, p, q]


# ----------------------------------------------------------------------------- Numba data movers
def _numba_kernels():
    numba_layer.threading_layer()   # before the kernels first start Numba's threads
    from ..kernels import conv2d_cpu  # compiles (or loads from Numba's cache) on first use
    return conv2d_cpu


def numba_im2col(x, g: ConvGeometry, col):
    _numba_kernels().im2col(x, g, col)          # x in any memory layout: the kernel indexes it NCHW


def numba_col2im(gcol, g: ConvGeometry, gx):
    _numba_kernels().col2im(gcol, g, gx)


def gather_col2im(gcol, g: ConvGeometry, gx):
    """:func:`numpy_col2im`'s bits in one pass: each pixel's taps gathered and added in the same order
    (the serial Numba kernel ``col2im_gather``), for ``numba-rows``' strided convs; :func:`numpy_col2im`
    itself for dtypes other than float32 and float64, or ``gx`` not in channels-last memory."""
    gx_last = gx.transpose(0, 2, 3, 1)
    if gx.dtype not in (np.float32, np.float64) or gcol.dtype != gx.dtype or not gx_last.flags.c_contiguous:
        return numpy_col2im(gcol, g, gx)
    _numba_kernels().col2im_gather(gcol, g, gx_last)


# ----------------------------------------------------------------------------- one Numba region
class NumbaRowsIm2colGemm(ChunkedIm2colGemm):
    """``numpy-rows`` (row columns for every conv's forward and separate weight gradient) with its row
    columns and their products (:meth:`_correlate_by_rows`) run as one Numba kernel
    (``kernels/conv2d_rows_cpu.py``): the same chunks and BLAS products, hence the same bits, on
    Numba's threads instead of minires' pool (``numba-rows``, the CPU default where Numba is
    installed). A batch split over threads runs there only where Numba's threads run on TBB
    (:mod:`minires.cpu.numba_layer`): on its other layers they start too slowly to gain, and such a
    conv is ``numpy-rows``' code. A batch in one share (one thread, or a batch too small to split)
    runs the kernel's share on the calling thread, on any layer, without starting Numba's threads:
    ResNet-20's steps on one thread took 0.94-0.98x the time of ``numpy-rows``' code (batch 32 and 128,
    2026-12-05, one-off A/Bs, not committed). The strided convs' data gradient is a Numba kernel too
    (:meth:`backward_data`): per image, the column gradient's GEMM and a one-pass col2im, the gather of
    :func:`gather_col2im`, with :func:`numpy_col2im`'s bits."""

    def __init__(self, chunk_bytes: int = CHUNK_BYTES):
        super().__init__(numpy_im2col, gather_col2im, chunk_bytes, row_im2col=numpy_row_im2col, every_conv=True)

    def backward_data(self, gy, w, x_shape, stride, padding):
        """The strided convs' data gradient (those that are not a stride-1 correlation of ``gy``) as one
        Numba kernel, ``input_gradient_by_columns``: per image, the column gradient's GEMM and its
        col2im (:func:`gather_col2im`'s kernel), on Numba's threads where the batch is split, on this
        thread where it is one share; :meth:`ChunkedIm2colGemm.backward_data` elsewhere, and where its
        conditions (:func:`_region_gemm`; its dtypes, float32 and float64, are the gather's) do not hold. In
        ResNet-20's steps the conv kernels took 0.953x the time of the chunks on minires' pool at batch
        32 on two threads, 0.970x at batch 128, 0.994x on one thread (2026-12-05, one-off A/Bs, not
        committed)."""
        g = ConvGeometry.of(x_shape, w.shape, stride, padding)
        pixels, width, parts = g.out_h * g.out_w, g.kh * g.kw * g.c_in, threads.share_count(gy)
        gemm = None if _is_transposable(g) else _region_gemm(gy, w, parts, [(pixels, width)])
        if gemm is None:
            return super().backward_data(gy, w, x_shape, stride, padding)
        gx = channels_last_empty(x_shape, gy.dtype)
        gy_pixels, w_mat = pixel_major(gy).reshape(g.n, pixels, g.c_out), weight_matrix(w)
        gcol = _scratch("gradient_columns", parts * pixels * width, gy.dtype).reshape(parts, pixels, width)
        kernels, args = _rows_kernels(), (gemm, gy_pixels, g._replace(n=1), w_mat, gx.transpose(0, 2, 3, 1))
        if parts == 1:
            kernels.input_gradient_share(*args, 0, g.n, gcol[0])
        else:                                                   # one chunk per share: the shares' bounds
            kernels.input_gradient_by_columns(*args, region_chunks(g.n, parts, None)[0], gcol)
        return gx

    def _correlate_by_rows(self, x, w, g: ConvGeometry, y, col_t_times):
        width, pixels = g.kw * g.c_in, g.out_h * g.out_w
        c_x = 0 if col_t_times is None else col_t_times.shape[1]
        per_image, per_chunk = self._chunk_size(g, row_columns_shape(g), x.dtype)
        parts = threads.share_count(x)
        products = ([] if y is None else [(pixels, g.c_out)]) + ([(width, c_x)] if c_x else [])
        gemm = _region_gemm(x, col_t_times if w is None else w, parts, products)
        if gemm is None:
            return super()._correlate_by_rows(x, w, g, y, col_t_times)
        forward_pixels = 0 if y is None else pixels            # without y: the kernel skips the forward products
        w_rows = np.empty((0, 0, 0), x.dtype) if w is None else weight_rows(w)
        bounds, shares = region_chunks(g.n, parts, per_chunk)
        rows = _scratch("columns", parts * per_image, x.dtype).reshape(parts, *row_columns_shape(g)(1)[1:])
        product = _scratch("product", parts * forward_pixels * g.c_out, x.dtype).reshape(parts, forward_pixels, g.c_out)
        y_t = (np.empty((0, pixels, g.c_out), x.dtype) if y is None
               else y.transpose(0, 2, 3, 1).reshape(g.n, pixels, g.c_out))
        x_t = (np.empty((0, pixels, c_x), x.dtype) if col_t_times is None
               else pixel_major(col_t_times).reshape(g.n, pixels, c_x))
        gram = _scratch("gram", parts * width * c_x, x.dtype).reshape(parts, width, c_x)
        partials = np.empty((len(bounds) - 1 if c_x else 0, g.kh, width, c_x), x.dtype)
        x_flat, kernels = pixel_major(x).reshape(-1), _rows_kernels()    # a copy only where x is not channels last
        if parts == 1:
            kernels.correlate_share(gemm, x_flat, g, w_rows, y_t, bounds, 0, len(bounds) - 1,
                                    rows[0], product[0], x_t, gram[0], partials)
        else:
            kernels.correlate_by_rows(gemm, x_flat, g, w_rows, y_t, bounds, shares, rows, product, x_t, gram, partials)
        if col_t_times is None:
            return None
        return threads.total(list(partials.reshape(len(partials), g.kh * width, c_x)))


@functools.cache
def _rows_kernels():
    from ..kernels import conv2d_rows_cpu   # compiles (or loads from Numba's cache) on first use
    return conv2d_rows_cpu


@functools.lru_cache(maxsize=256)
def region_chunks(images: int, parts: int, per_chunk: int | None):
    """``(bounds, shares)`` of :meth:`NumbaRowsIm2colGemm._correlate_by_rows`'s kernel: the chunks of
    ``images`` images in ``parts`` shares of at most ``per_chunk`` (None: one chunk per share; :func:`~minires.cpu.threads.share_runs`,
    the chunks of ``numpy-fast``), chunk ``k`` the images ``[bounds[k], bounds[k+1])``, share ``t``
    the chunks ``shares[t] .. shares[t+1] - 1``. int64 and read-only: kept for the next call of the shape."""
    runs = threads.share_runs(images, parts, per_chunk)
    bounds = np.array([0] + [block.stop for run in runs for block in run], dtype=np.int64)
    shares = np.cumsum([0] + [len(run) for run in runs], dtype=np.int64)
    bounds.flags.writeable = shares.flags.writeable = False
    return bounds, shares


def _region_gemm(x, w, parts: int, products):
    """BLAS's GEMM for :class:`NumbaRowsIm2colGemm`'s kernel, or None where ``numpy-fast``'s code runs
    instead: an empty batch (the kernel writes no weight gradient for it), a dtype or a BLAS the kernel
    cannot call, a side of 1 in one of the ``products`` (NumPy's matmul then takes a matrix-vector
    product: other bits), the batch split into ``parts`` shares while Numba's threads are not on TBB
    (one share runs on the calling thread, on any layer)."""
    if len(x) == 0 or w.dtype != x.dtype or any(1 in sides for sides in products):
        return None
    gemm = blas.gemm(x.dtype)
    if gemm is None or (parts > 1 and numba_layer.threading_layer() != "tbb"):
        return None
    return gemm


backend.register("conv2d", "numpy-fast", device="cpu", default=True)(   # without Numba
    ChunkedIm2colGemm(numpy_im2col, numpy_col2im, row_im2col=numpy_row_im2col))
# with row columns for every conv's forward and separate weight gradient: numba-rows' bits without Numba
backend.register("conv2d", "numpy-rows", device="cpu")(
    ChunkedIm2colGemm(numpy_im2col, numpy_col2im, row_im2col=numpy_row_im2col, every_conv=True))
# the same without row columns: every conv through the column matrix (to see what the rows save)
backend.register("conv2d", "numpy-columns", device="cpu")(ChunkedIm2colGemm(numpy_im2col, numpy_col2im))
# the same with every row column copied through a padded copy of x (to see what copying from x saves)
backend.register("conv2d", "numpy-padded-rows", device="cpu")(
    ChunkedIm2colGemm(numpy_im2col, numpy_col2im, row_im2col=padded_row_im2col))
if importlib.util.find_spec("numba") is not None:
    backend.register("conv2d", "numba", device="cpu")(ChunkedIm2colGemm(numba_im2col, numba_col2im))
    backend.register("conv2d", "numba-rows", device="cpu", default=True)(NumbaRowsIm2colGemm())
