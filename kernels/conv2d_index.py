"""Index math of a 2-D convolution, written once as plain Python.

The Numba CUDA kernels (``conv2d_numba_cuda.py``) compile these very functions as device
functions, ``conv2d.cu`` spells the same functions in C, and the tests run them on the CPU.

One spatial axis at a time (height and width work the same way): an input of ``in_size``
pixels, a kernel of ``k`` taps, stride ``s`` and zero padding ``p`` give
``out_size = (in_size + 2p - k) // s + 1`` outputs, and output ``o`` reads input

    i = o*s - p + t        through kernel tap t (0 <= t < k).

``input_index`` is that formula ("which pixel does this output read?"); ``output_index`` inverts
it ("which output read this pixel through tap t?"), ``o = (i + p - t) / s``, which exists only
when the division is exact.

Each direction of the convolution is a matrix product ``C = A B`` (see ``conv2d.cu``); the
``*_a_index``, ``*_b_index`` functions say where entry ``A[m][k]`` / ``B[k][j]`` lives in the
input arrays (-1: it is a zero of the padding) and ``*_c_index`` where ``C[m][j]`` goes, so a
kernel never needs the im2col matrix in memory. All indices are into flat (raveled) arrays.
"""
from __future__ import annotations

from typing import NamedTuple

# The tiling of the implicit-GEMM kernels (conv2d.cu #defines the same values; a test checks).
TILE_M, TILE_N, TILE_K = 64, 64, 16  # one block computes a TILE_M x TILE_N tile of C, TILE_K at a time
MICRO = 4                            # each thread owns MICRO x MICRO entries of the tile
BLOCK_SIDE = TILE_M // MICRO         # blocks are BLOCK_SIDE x BLOCK_SIDE threads


class ConvGeometry(NamedTuple):
    """Every size a conv kernel needs; passed to the kernels in this field order."""

    n: int
    c_in: int
    h: int
    w: int
    c_out: int
    kh: int
    kw: int
    out_h: int
    out_w: int
    stride_h: int
    stride_w: int
    pad_h: int
    pad_w: int

    @classmethod
    def of(cls, x_shape, w_shape, stride, padding) -> "ConvGeometry":
        """The geometry of ``conv2d(x, w)`` for an NCHW ``x`` and a ``(c_out, c_in, kh, kw)`` weight."""
        n, c_in, h, w = x_shape
        c_out, _, kh, kw = w_shape
        (stride_h, stride_w), (pad_h, pad_w) = stride, padding
        out_h = (h + 2 * pad_h - kh) // stride_h + 1
        out_w = (w + 2 * pad_w - kw) // stride_w + 1
        return cls(n, c_in, h, w, c_out, kh, kw, out_h, out_w, stride_h, stride_w, pad_h, pad_w)

    def gemm_shape(self, direction: str) -> tuple:
        """``(M, N, K)`` of the product ``C = A B`` for ``direction``."""
        pixels_out = self.n * self.out_h * self.out_w
        taps_in = self.c_in * self.kh * self.kw
        shapes = {"forward": (self.c_out, pixels_out, taps_in),
                  "backward_data": (self.c_in, self.n * self.h * self.w, self.c_out * self.kh * self.kw),
                  "backward_weight": (self.c_out, taps_in, pixels_out)}
        return shapes[direction]


def input_index(out_pos, tap, stride, pad, in_size):
    """The input position that output ``out_pos`` reads through ``tap``; -1 if it is padding."""
    i = out_pos * stride - pad + tap
    if i < 0 or i >= in_size:
        return -1
    return i


def output_index(in_pos, tap, stride, pad, out_size):
    """The output position that reads input ``in_pos`` through ``tap``; -1 if no output does.

    ``shifted < 0`` is tested before dividing so that Python (floor division) and C (truncating
    division) agree: both see only non-negative operands.
    """
    shifted = in_pos + pad - tap
    if shifted < 0 or shifted % stride != 0:
        return -1
    o = shifted // stride
    if o >= out_size:
        return -1
    return o


def unravel3(index, size1, size2):
    """Split a flat index over a C-ordered ``(size0, size1, size2)`` box into its three coordinates."""
    return index // (size1 * size2), (index // size2) % size1, index % size2


def nchw_index(column, channel, channels, pixels):
    """Flat index of ``(image, channel, pixel)`` in an NCHW array, with ``column = image*pixels + pixel``."""
    return ((column // pixels) * channels + channel) * pixels + column % pixels


def im2col_value_index(row, col, g):
    """Where column-matrix entry ``(row, col)`` comes from in ``x``: a flat index, or -1 (padding).

    ``row = (ci, r, s)`` runs over input channel and kernel taps (``c_in*kh*kw`` rows) and
    ``col = (b, oh, ow)`` over image and output pixel (``n*out_h*out_w`` columns), so that
    ``conv(x, w) = w.reshape(c_out, -1) @ col_matrix``.
    """
    ci, r, s = unravel3(row, g.kh, g.kw)
    b, oh, ow = unravel3(col, g.out_h, g.out_w)
    ih = input_index(oh, r, g.stride_h, g.pad_h, g.h)
    iw = input_index(ow, s, g.stride_w, g.pad_w, g.w)
    if ih < 0 or iw < 0:
        return -1
    return ((b * g.c_in + ci) * g.h + ih) * g.w + iw


def col2im_value(gcol, pixel, g):
    """The gradient of input pixel ``pixel`` (flat over ``n, c_in, h, w``): a gather.

    Sums the column-matrix gradient ``gcol`` over every (tap, output) pair that read this pixel:
    at most ``kh*kw`` terms, found with :func:`output_index`, so no two threads ever write the
    same place and no atomics are needed. The sum is kept in float64.
    """
    columns = g.n * g.out_h * g.out_w
    b, ci, ih = unravel3(pixel // g.w, g.c_in, g.h)
    iw = pixel % g.w
    total = 0.0
    for r in range(g.kh):
        oh = output_index(ih, r, g.stride_h, g.pad_h, g.out_h)
        if oh >= 0:
            for s in range(g.kw):
                ow = output_index(iw, s, g.stride_w, g.pad_w, g.out_w)
                if ow >= 0:
                    total += gcol[((ci * g.kh + r) * g.kw + s) * columns + (b * g.out_h + oh) * g.out_w + ow]
    return total


# ----------------------------------------------------------------------------- implicit GEMM
# forward:          A = weight (c_out x c_in*kh*kw), B = col(x),   C = y  (NCHW)
def forward_a_index(m, k, g):
    return m * (g.c_in * g.kh * g.kw) + k


def forward_b_index(k, j, g):
    return im2col_value_index(k, j, g)


def forward_c_index(m, j, g):
    return nchw_index(j, m, g.c_out, g.out_h * g.out_w)


# backward-data:    A = weight^T (c_in x c_out*kh*kw), B = gy read through output_index, C = gx
def backward_data_a_index(m, k, g):
    taps = g.kh * g.kw
    return ((k // taps) * g.c_in + m) * taps + k % taps


def backward_data_b_index(k, j, g):
    co, r, s = unravel3(k, g.kh, g.kw)
    b, ih, iw = unravel3(j, g.h, g.w)
    oh = output_index(ih, r, g.stride_h, g.pad_h, g.out_h)
    ow = output_index(iw, s, g.stride_w, g.pad_w, g.out_w)
    if oh < 0 or ow < 0:
        return -1
    return ((b * g.c_out + co) * g.out_h + oh) * g.out_w + ow


def backward_data_c_index(m, j, g):
    return nchw_index(j, m, g.c_in, g.h * g.w)


# backward-weight:  A = gy (c_out x n*out_h*out_w), B = col(x)^T, C = gw (c_out x c_in*kh*kw)
def backward_weight_a_index(m, k, g):
    return nchw_index(k, m, g.c_out, g.out_h * g.out_w)


def backward_weight_b_index(k, j, g):
    return im2col_value_index(j, k, g)


def backward_weight_c_index(m, j, g):
    return m * (g.c_in * g.kh * g.kw) + j
