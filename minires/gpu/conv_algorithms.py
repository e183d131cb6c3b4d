r"""The two GPU convolution algorithms, written once; CuPy and Numba CUDA supply the kernels.

Both follow the conv2d contract of :mod:`minires.functional.conv` (NCHW, weight
``(c_out, c_in, kh, kw)``, no bias, ``stride``/``padding`` as int pairs) and work for any array
module ``xp`` (CuPy on a GPU; NumPy when the tests run the kernels on the CPU, in Numba's CUDA
simulator or in a CUDA C emulation).

**im2col + GEMM** (:class:`Im2colGemm`). With the column matrix
:math:`X^{col}` (``c_in*kh*kw`` x ``n*out_h*out_w``) and the weight as a matrix
:math:`W` (``c_out`` x ``c_in*kh*kw``), and :math:`\bar Y` the output gradient with channels first
(``c_out`` x ``n*out_h*out_w``):

.. math::  Y = W X^{col}, \qquad \bar X^{col} = W^\top \bar Y \;\xrightarrow{\text{col2im}}\; \bar x,
           \qquad \bar W = \bar Y (X^{col})^\top

Each product is a single cuBLAS GEMM (``xp.matmul``); the kernels only move data.

**Implicit GEMM** (:class:`ImplicitGemm`): the same three products, each computed by one tiled
kernel that reads :math:`X^{col}` entries straight from ``x`` (see ``kernels/conv2d.cu``), so the
column matrix is never stored. backward-weight sums over a long axis and splits it into chunks
(:func:`~minires.gpu.launch.split_k`), whose partial results are added here.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..kernels.conv2d_index import ConvGeometry
from .launch import BLOCKS_PER_SM, ON_THE_CPU, SMALLER_BATCH, check_int32, split_k

CPU_STAND_IN_BLOCKS = 8  # NumPy arrays: a CPU stand-in for the GPU in the tests; still splits the reduction


KERNEL_DTYPES = frozenset({np.dtype(np.float32), np.dtype(np.float64)})  # the dtypes the kernels are built for


def prepare(op: str, *arrays):
    """The arrays as C-contiguous (no copy when they already are), checked for a kernel dtype."""
    xp = backend.get_array_module(*arrays)
    dtypes = {a.dtype for a in arrays}
    if len(dtypes) != 1 or dtypes.pop() not in KERNEL_DTYPES:
        raise TypeError(f"{op}: the GPU kernels take float32 or float64 arrays of one dtype, got "
                        f"{[str(a.dtype) for a in arrays]}; cast with .float() or .double()")
    return [xp.ascontiguousarray(a) for a in arrays]


def geometry(op: str, x_shape, w_shape, stride, padding) -> ConvGeometry:
    """The :class:`ConvGeometry` of a convolution, its arrays checked against the kernels' 32-bit indexing."""
    g = ConvGeometry.of(tuple(x_shape), tuple(w_shape), stride, padding)
    check_int32(op, SMALLER_BATCH, input=g.n * g.c_in * g.h * g.w, output=g.n * g.c_out * g.out_h * g.out_w)
    check_int32(op, ON_THE_CPU, weight=g.c_out * g.c_in * g.kh * g.kw)
    return g


def channels_first(a):
    """``(n, c, h, w)`` -> the matrix ``(c, n*h*w)`` (a copy)."""
    return a.transpose(1, 0, 2, 3).reshape(a.shape[1], -1)


def from_channels_first(matrix, n, h, w):
    """The matrix ``(c, n*h*w)`` -> a C-contiguous ``(n, c, h, w)`` array."""
    xp = backend.get_array_module(matrix)
    return xp.ascontiguousarray(matrix.reshape(-1, n, h, w).transpose(1, 0, 2, 3))


def target_blocks(xp) -> int:
    """How many blocks a launch should have to fill the GPU of ``xp``'s arrays."""
    if xp is np:  # Numba's CUDA simulator, or the tests' CUDA C emulation
        return CPU_STAND_IN_BLOCKS
    return BLOCKS_PER_SM * xp.cuda.Device().attributes["MultiProcessorCount"]


class Im2colGemm:
    """conv2d as im2col + one cuBLAS GEMM per direction (+ col2im for backward-data).

    Subclasses provide ``im2col(x, g) -> col`` (``(c_in*kh*kw, n*out_h*out_w)``) and
    ``col2im(gcol, g) -> gx`` (``(n, c_in, h, w)``), on C-contiguous arrays.
    """

    op = "conv2d"

    @classmethod
    def _geometry(cls, x_shape, w_shape, stride, padding) -> ConvGeometry:
        """:func:`geometry`, with the column matrix these kernels write also checked (the implicit GEMM
        never stores it, so a batch too big for this one can run there)."""
        g = geometry(cls.op, x_shape, w_shape, stride, padding)
        check_int32(cls.op, "use a smaller batch, or a tiled implementation (impl='cupy-tiled'), which never "
                    "stores it", column_matrix=g.c_in * g.kh * g.kw * g.n * g.out_h * g.out_w)
        return g

    @classmethod
    def forward(cls, x, w, stride, padding):
        x, w = prepare(cls.op, x, w)
        g = cls._geometry(x.shape, w.shape, stride, padding)
        y = w.reshape(g.c_out, -1) @ cls.im2col(x, g)
        return from_channels_first(y, g.n, g.out_h, g.out_w)

    @classmethod
    def backward_data(cls, gy, w, x_shape, stride, padding):
        gy, w = prepare(cls.op, gy, w)
        return cls._data_gradient(channels_first(gy), w, cls._geometry(x_shape, w.shape, stride, padding))

    @classmethod
    def backward_weight(cls, gy, x, w_shape, stride, padding):
        gy, x = prepare(cls.op, gy, x)
        return cls._weight_gradient(channels_first(gy), x, cls._geometry(x.shape, w_shape, stride, padding))

    @classmethod
    def backward(cls, gy, x, w, stride, padding):
        """Both gradients, ``(gx, gw)``, from one channels-first copy of ``gy`` (what training asks for)."""
        gy, x, w = prepare(cls.op, gy, x, w)
        g = cls._geometry(x.shape, w.shape, stride, padding)
        gy_matrix = channels_first(gy)
        return cls._data_gradient(gy_matrix, w, g), cls._weight_gradient(gy_matrix, x, g)

    @classmethod
    def _data_gradient(cls, gy_matrix, w, g):
        return cls.col2im(w.reshape(g.c_out, -1).T @ gy_matrix, g)

    @classmethod
    def _weight_gradient(cls, gy_matrix, x, g):
        return (gy_matrix @ cls.im2col(x, g).T).reshape(g.c_out, g.c_in, g.kh, g.kw)


class ImplicitGemm:
    """conv2d as three tiled implicit-GEMM kernels (no column matrix in memory).

    Subclasses provide ``launch(direction, a_src, b_src, out, g, sizes, chunks, k_chunk)`` which runs
    the kernel for ``direction`` on flat C-contiguous arrays, ``sizes = (M, N, K)``.
    """

    op = "conv2d"

    @classmethod
    def forward(cls, x, w, stride, padding):
        x, w = prepare(cls.op, x, w)
        g = geometry(cls.op, x.shape, w.shape, stride, padding)
        return cls._product("forward", w, x, (g.n, g.c_out, g.out_h, g.out_w), g)

    @classmethod
    def backward_data(cls, gy, w, x_shape, stride, padding):
        gy, w = prepare(cls.op, gy, w)
        g = geometry(cls.op, x_shape, w.shape, stride, padding)
        return cls._product("backward_data", w, gy, tuple(x_shape), g)

    @classmethod
    def backward_weight(cls, gy, x, w_shape, stride, padding):
        gy, x = prepare(cls.op, gy, x)
        g = geometry(cls.op, x.shape, w_shape, stride, padding)
        return cls._product("backward_weight", gy, x, tuple(w_shape), g, split=True)

    @classmethod
    def _product(cls, direction, a_src, b_src, out_shape, g, split=False):
        """Run ``direction``'s kernel into a new ``out_shape`` array (partials summed when split)."""
        xp = backend.get_array_module(a_src)
        m, n, k = g.gemm_shape(direction)
        chunks, k_chunk = split_k(m, n, k, target_blocks(xp)) if split else (1, k)
        out = xp.empty((chunks,) + out_shape, dtype=a_src.dtype)
        cls.launch(direction, a_src.ravel(), b_src.ravel(), out.ravel(), g, (m, n, k), chunks, k_chunk)
        return out[0] if chunks == 1 else out.sum(axis=0)
