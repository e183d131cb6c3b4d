"""The Numba CUDA conv kernels of ``kernels/conv2d_numba_cuda.py``, registered with the backend.

==========  ====================  ====================================================
op          name                  what runs
==========  ====================  ====================================================
conv2d      ``numba-cuda``        im2col / col2im in Numba around cuBLAS GEMMs
conv2d      ``numba-cuda-tiled``  the tiled implicit-GEMM kernels, in Numba
==========  ====================  ====================================================

CuPy arrays reach the kernels through ``__cuda_array_interface__`` (no copy), and each launch
goes on CuPy's current stream, so Numba and CuPy work stays in order without synchronising.
``numba.cuda`` is imported on first use: it is slow to import, and it reads
``NUMBA_ENABLE_CUDASIM`` at import (with it set, the same kernels run on NumPy arrays on the CPU,
which is how the tests check them without a GPU). Registered only when ``numba-cuda`` is installed.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .. import backend
from .conv_algorithms import Im2colGemm, ImplicitGemm
from .launch import THREADS, blocks_for, tiled_grid


def _kernels():
    from ..kernels import conv2d_numba_cuda
    return conv2d_numba_cuda


_cannot_compile: str | None = None  # set when Numba failed inside its own code: later launches fail at once


def run(kernel, grid, block, *args) -> None:
    """Launch a Numba kernel on NumPy (simulator) or CuPy arrays, on CuPy's current stream.

    Numba failing inside its own code (an ``AttributeError`` raised in Numba's package while it
    compiles: see :func:`incompatibility_message`) fails this launch and every later one at once, with
    the same message: compiling again would fail again, slowly. An ``AttributeError`` raised elsewhere
    (minires' or the caller's code) goes on as it is."""
    global _cannot_compile
    if _cannot_compile:
        raise RuntimeError(_cannot_compile)
    try:
        _launch(kernel, grid, block, args)
    except AttributeError as error:
        if not _raised_inside_numba(error):
            raise
        _cannot_compile = incompatibility_message(error)
        raise RuntimeError(_cannot_compile) from error


def _raised_inside_numba(error: BaseException) -> bool:
    """Whether the innermost frame of ``error``'s traceback is in the ``numba`` or ``numba_cuda`` package."""
    frame = error.__traceback__
    while frame.tb_next is not None:
        frame = frame.tb_next
    return not {"numba", "numba_cuda"}.isdisjoint(Path(frame.tb_frame.f_code.co_filename).parts)


def _launch(kernel, grid, block, args) -> None:
    xp = backend.get_array_module(*[a for a in args if hasattr(a, "dtype")])
    if xp is np:
        kernel[grid, block](*args)
        return
    from numba import cuda
    pointer = xp.cuda.get_current_stream().ptr
    stream = cuda.external_stream(pointer) if pointer else cuda.default_stream()
    views = [cuda.as_cuda_array(a, sync=False) if isinstance(a, xp.ndarray) else a for a in args]
    kernel[grid, block, stream](*views)


def incompatibility_message(error: Exception) -> str:
    """What to say when Numba fails inside its own code while compiling: the versions, and the fix
    for the one case seen on a real GPU (numba-cuda 0.30.4 registers ``np.row_stack``, which NumPy
    2.5 removed, so no kernel compiles)."""
    import importlib.metadata
    versions = f"numba-cuda {importlib.metadata.version('numba-cuda')}, NumPy {np.__version__}"
    hint = ("this numba-cuda needs NumPy < 2.5 (np.row_stack is gone): pip install 'numpy<2.5', or a numba-cuda "
            "that supports this NumPy" if "row_stack" in str(error) else "check that numba-cuda supports this NumPy")
    return (f"Numba could not compile a minires CUDA kernel ({type(error).__name__}: {error}; {versions}); {hint}. "
            "The CUDA C kernels (conv2d impl 'cupy', the default) do not need Numba.")


class NumbaConv2d(Im2colGemm):
    """im2col and col2im (a gather) written in Numba CUDA, around cuBLAS GEMMs."""

    @staticmethod
    def im2col(x, g):
        xp = backend.get_array_module(x)
        col = xp.empty((g.c_in * g.kh * g.kw, g.n * g.out_h * g.out_w), dtype=x.dtype)
        run(_kernels().im2col, blocks_for(col.size), THREADS, x.ravel(), col.ravel(), g)
        return col

    @staticmethod
    def col2im(gcol, g):
        xp = backend.get_array_module(gcol)
        gx = xp.empty((g.n, g.c_in, g.h, g.w), dtype=gcol.dtype)
        run(_kernels().col2im, blocks_for(gx.size), THREADS, gcol.ravel(), gx.ravel(), g)
        return gx


class NumbaTiledConv2d(ImplicitGemm):
    """The tiled implicit-GEMM kernels written in Numba CUDA."""

    @staticmethod
    def launch(direction, a_src, b_src, out, g, sizes, chunks, k_chunk):
        from numba import from_dtype
        grid, block = tiled_grid(sizes[0], sizes[1], chunks)
        kernel = _kernels().tiled_gemm_kernel(direction, from_dtype(out.dtype))
        run(kernel, grid, block, a_src, b_src, out, g, *sizes, k_chunk)


if importlib.util.find_spec("numba_cuda") is not None:
    backend.register("conv2d", "numba-cuda", device="cuda")(NumbaConv2d)
    backend.register("conv2d", "numba-cuda-tiled", device="cuda")(NumbaTiledConv2d)
