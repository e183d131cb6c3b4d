"""NumPy's own BLAS GEMM, callable from Numba kernels (``kernels/conv2d_rows_cpu.py``).

A Numba ``@njit`` function cannot call ``np.matmul`` without SciPy, but it can call a C function
passed to it as an argument. :func:`gemm` finds ``cblas_sgemm`` / ``cblas_dgemm`` in the BLAS
library that NumPy itself loaded (the OpenBLAS of NumPy's wheels, whose symbols carry the prefix
``scipy_`` and the 64-bit-integer suffix ``64_``) and wraps its address in a Numba *wrapper
address protocol* object, which a kernel takes as an argument and calls like a function. As an
argument, not a global, the kernel stays cacheable on disk.

The C signature is ``cblas_?gemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta,
c, ldc)``: it computes :math:`C \\leftarrow \\alpha\\,\\mathrm{op}(A)\\,\\mathrm{op}(B) + \\beta C`.
The matrices are passed as addresses typed as 64-bit integers (the calling convention passes a
pointer and an ``int64`` alike on the 64-bit platforms NumPy's wheels are built for).

Only 64-bit-integer (ILP64) OpenBLAS is looked for; where NumPy uses another BLAS (Apple's
Accelerate, MKL), :func:`gemm` returns None and the caller keeps NumPy's matmul.
"""
from __future__ import annotations

import ctypes
import functools
import os

import numpy as np

from . import threads


def numpy_blas_path() -> str | None:
    """The file of the BLAS library that NumPy's wheel carries and has loaded (in ``numpy.libs`` or
    ``numpy/.dylibs``; threadpoolctl lists the loaded ones), None if there is none."""
    import threadpoolctl
    site = os.path.dirname(os.path.dirname(os.path.realpath(np.__file__)))
    for lib in threadpoolctl.threadpool_info():
        where = os.path.relpath(os.path.realpath(lib["filepath"]), site).split(os.sep)[0]
        if lib.get("user_api") == "blas" and where in ("numpy", "numpy.libs"):
            return lib["filepath"]
    return None


@functools.cache
def gemm(dtype):
    """The Numba-callable ``cblas_sgemm`` (float32) or ``cblas_dgemm`` (float64) of NumPy's BLAS;
    None for other dtypes, or where NumPy's BLAS is not a 64-bit-integer OpenBLAS."""
    letter = {np.dtype(np.float32): "s", np.dtype(np.float64): "d"}.get(np.dtype(dtype))
    path = numpy_blas_path()
    if letter is None or path is None:
        return None
    threads.blas_on_one_thread()        # the kernels call it from each of their threads
    library = ctypes.CDLL(path)
    names = [n for n in (f"scipy_cblas_{letter}gemm64_", f"cblas_{letter}gemm64_") if hasattr(library, n)]
    if not names:
        return None
    import numba.experimental.function_type  # noqa: F401 - lets Numba type the wrapper below
    from numba import types
    real, index, enum = types.float32 if letter == "s" else types.float64, types.int64, types.int32
    signature = types.void(enum, enum, enum, index, index, index, real, index, index, index, index,
                           real, index, index)
    return _c_function_class()(ctypes.cast(getattr(library, names[0]), ctypes.c_void_p).value, signature)


@functools.cache
def _c_function_class():
    """A subclass of Numba's ``WrapperAddressProtocol`` (made on first use: importing minires does
    not import Numba). Numba types such an argument anew at every call of a kernel, building its
    function type from the signature (about 13 us, against 4 us for this class's type, made once:
    2026-12-05, no committed timing); the class tells Numba its type instead."""
    from numba import types
    from numba.extending import typeof_impl

    class CFunction(types.WrapperAddressProtocol):
        """A C function's address and Numba signature: a kernel argument that the kernel calls."""

        def __init__(self, address: int, signature):
            self.address, self._signature = address, signature
            self.numba_type = types.FunctionType(signature)

        def __wrapper_address__(self) -> int:
            return self.address

        def signature(self):
            return self._signature

    typeof_impl.register(CFunction)(lambda function, context: function.numba_type)
    return CFunction
