"""Fast CPU implementations of the hot ops, registered with :mod:`minires.backend`.

The readable NumPy references stay in :mod:`minires.functional`; what is here computes the same
thing faster and is tested for agreement with them:

* :mod:`~minires.cpu.conv`: conv2d as chunked im2col + one BLAS GEMM per chunk (``numpy-fast``,
  the CPU default, and ``numba`` with the parallel data movers of ``kernels/conv2d_cpu.py``).

``numba`` is the fastest on cores of its own, but its parallel threads collapse (tens of seconds
per ResNet-20 step) when the cores are shared with other busy processes, so it is opt-in:
``minires.backend.use("conv2d", "numba")``. Kernels compile on first use.
"""
from . import conv  # noqa: F401 - registers the implementations
