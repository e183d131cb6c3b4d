"""Fast CPU implementations of the hot ops, registered with :mod:`minires.backend`.

The readable NumPy references stay in :mod:`minires.functional`; what is here computes the same
thing faster and is tested for agreement with them:

* :mod:`~minires.cpu.conv`: conv2d as chunked im2col + one BLAS GEMM per chunk (``numpy-fast``,
  and ``numba`` with the parallel data movers of ``kernels/conv2d_cpu.py``; the CPU default).

Numba is optional: without it ``numpy-fast`` is the default. Kernels compile on first use.
"""
from . import conv  # noqa: F401 - registers the implementations
