"""Fast CPU implementations of the hot ops, registered with :mod:`minires.backend`.

The readable NumPy references stay in :mod:`minires.functional`; what is here computes the same
thing faster and is tested for agreement with them:

* :mod:`~minires.cpu.conv`: conv2d as chunked im2col + one BLAS GEMM per chunk, the chunks of a
  call spread over :func:`set_num_threads` threads (``numpy-fast``, the CPU default, and ``numba``
  with the parallel data movers of ``kernels/conv2d_cpu.py``).

``numba`` is opt-in (``minires.backend.use("conv2d", "numba")``): its parallel threads collapse
when the cores are busy with anything else (on 2026-11-27, 10.8 s per ResNet-20 step at batch 128
on two otherwise idle cores, where ``numpy-fast`` took 0.37 s). Kernels compile on first use.
"""
from . import conv  # noqa: F401 - registers the implementations
from .conv import set_num_threads, threads  # noqa: F401
