"""conv2d in Numba CUDA: the kernels of ``conv2d.cu``, written in Python.

Read it beside ``conv2d.cu``: the same kernels, the same thread layout, the same index math
(here the plain-Python functions of ``conv2d_index.py``, compiled as device functions).

* ``im2col``: one thread per entry ``(row, col)`` of the column matrix (``c_in*kh*kw`` rows by
  ``n*out_h*out_w`` columns, row-major); consecutive threads take consecutive output pixels, so
  the writes are coalesced.
* ``col2im``: one thread per *input* pixel; it gathers the at most ``kh*kw`` column entries that
  read that pixel (a gather, not a scatter: no atomics, no races).
* ``tiled_gemm_kernel(direction, dtype)``: the implicit GEMM. A ``BLOCK_SIDE x BLOCK_SIDE`` block
  computes a ``TILE_M x TILE_N`` tile of ``C = A B``; thread ``(tx, ty)`` owns the ``MICRO x MICRO``
  entries at rows ``ty + BLOCK_SIDE*i`` and columns ``tx + BLOCK_SIDE*j``. The block walks the
  reduction in slabs of ``TILE_K``, staging ``A`` (k fastest: contiguous rows of the weight or of
  ``gy``) and ``B`` (column fastest: neighbouring pixels) in shared memory, computed on the fly
  from the input arrays, so the column matrix is never stored. ``blockIdx.z`` selects a chunk of
  the reduction ("split-K", used by backward-weight); each chunk writes its own partial ``C``.

Arrays are flat (raveled, C-contiguous); ``g`` is a :class:`~conv2d_index.ConvGeometry`.
CuPy arrays are passed as they are (through ``__cuda_array_interface__``, no copy); under
``NUMBA_ENABLE_CUDASIM=1`` the same kernels run on NumPy arrays on the CPU.
"""
from __future__ import annotations

import functools
import inspect
import sys
import types

from numba import cuda

from . import conv2d_index
from .conv2d_index import BLOCK_SIDE, MICRO, TILE_K, TILE_M, TILE_N


def _device_module(module) -> types.ModuleType:
    """A copy of the plain-Python ``module`` whose functions are CUDA device functions.

    Each function is rebuilt with the copy's namespace as its globals, so that a call inside it
    (``unravel3(...)``) finds the compiled version; ``module`` itself stays plain Python, which is
    what the CPU tests call.
    """
    device = types.ModuleType(f"{module.__name__}_device", module.__doc__)
    sys.modules[device.__name__] = device
    for name, fn in vars(module).items():
        if inspect.isfunction(fn) and fn.__module__ == module.__name__:
            copy = types.FunctionType(fn.__code__, vars(device), name, fn.__defaults__, fn.__closure__)
            setattr(device, name, cuda.jit(device=True)(copy))
    return device


A_TILE_COLUMNS = TILE_M + 1  # one padding column: fewer shared-memory bank conflicts on store
_index = _device_module(conv2d_index)
im2col_value_index = _index.im2col_value_index
col2im_value = _index.col2im_value


@cuda.jit
def im2col(x, col, g):
    entry = cuda.grid(1)
    columns = g.n * g.out_h * g.out_w
    if entry < col.size:
        source = im2col_value_index(entry // columns, entry % columns, g)
        col[entry] = x[source] if source >= 0 else 0


@cuda.jit
def col2im(gcol, gx, g):
    pixel = cuda.grid(1)
    if pixel < gx.size:
        gx[pixel] = col2im_value(gcol, pixel, g)


@functools.lru_cache(maxsize=None)
def tiled_gemm_kernel(direction: str, dtype):
    """The implicit-GEMM kernel for ``direction`` ("forward", "backward_data", "backward_weight")
    with shared-memory tiles of numba ``dtype`` (float32 or float64): one compiled kernel each.

    Launch: grid ``(ceil(N/TILE_N), ceil(M/TILE_M), chunks)``, block ``(BLOCK_SIDE, BLOCK_SIDE)``;
    arguments ``(a_src, b_src, out, g, m_size, n_size, k_size, k_chunk)``.
    """
    a_index = getattr(_index, f"{direction}_a_index")
    b_index = getattr(_index, f"{direction}_b_index")
    c_index = getattr(_index, f"{direction}_c_index")

    @cuda.jit
    def kernel(a_src, b_src, out, g, m_size, n_size, k_size, k_chunk):
        a_tile = cuda.shared.array((TILE_K, A_TILE_COLUMNS), dtype)
        b_tile = cuda.shared.array((TILE_K, TILE_N), dtype)
        acc = cuda.local.array((MICRO, MICRO), dtype)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        thread = ty * BLOCK_SIDE + tx
        m0, j0 = cuda.blockIdx.y * TILE_M, cuda.blockIdx.x * TILE_N
        k_begin = cuda.blockIdx.z * k_chunk
        k_end = min(k_size, k_begin + k_chunk)
        for i in range(MICRO):
            for jx in range(MICRO):
                acc[i, jx] = 0
        for k0 in range(k_begin, k_end, TILE_K):
            for e in range(thread, TILE_M * TILE_K, BLOCK_SIDE * BLOCK_SIDE):
                kk, mm = e % TILE_K, e // TILE_K  # k fastest: coalesced along a row of A
                source = a_index(m0 + mm, k0 + kk, g) if m0 + mm < m_size and k0 + kk < k_end else -1
                a_tile[kk, mm] = a_src[source] if source >= 0 else 0
            for e in range(thread, TILE_K * TILE_N, BLOCK_SIDE * BLOCK_SIDE):
                jj, kk = e % TILE_N, e // TILE_N  # column fastest: neighbouring pixels
                source = b_index(k0 + kk, j0 + jj, g) if j0 + jj < n_size and k0 + kk < k_end else -1
                b_tile[kk, jj] = b_src[source] if source >= 0 else 0
            cuda.syncthreads()
            for kk in range(TILE_K):
                for i in range(MICRO):
                    a = a_tile[kk, ty + BLOCK_SIDE * i]
                    for jx in range(MICRO):
                        acc[i, jx] += a * b_tile[kk, tx + BLOCK_SIDE * jx]
            cuda.syncthreads()
        offset = cuda.blockIdx.z * m_size * n_size
        for i in range(MICRO):
            m = m0 + ty + BLOCK_SIDE * i
            for jx in range(MICRO):
                j = j0 + tx + BLOCK_SIDE * jx
                if m < m_size and j < n_size:
                    out[offset + c_index(m, j, g)] = acc[i, jx]

    return kernel
