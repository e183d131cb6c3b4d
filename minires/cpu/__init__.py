"""Fast CPU implementations of the hot ops, registered with :mod:`minires.backend`.

The readable NumPy references stay in :mod:`minires.functional`; what is here computes the same
thing faster and is tested for agreement with them:

* :mod:`~minires.cpu.conv`: conv2d as chunked im2col + one BLAS GEMM per chunk, the chunks of a
  call spread over the threads (``numpy-fast``, the CPU default without Numba; ``numba-rows``, the
  default with it, runs the convs' row columns and products as one Numba region of
  ``kernels/conv2d_rows_cpu.py``, with the same bits, where Numba's threads run on TBB
  (:mod:`~minires.cpu.numba_layer`), calling NumPy's BLAS (:mod:`~minires.cpu.blas`); and ``numba``
  with the parallel data movers of ``kernels/conv2d_cpu.py``); its outputs are channels last in memory;
* :mod:`~minires.cpu.pointwise`: ReLU, add + ReLU and batch norm with each pass split over the
  batch on the threads, in NCHW or channels-last memory (``numpy-threads``, the CPU defaults where
  Numba is not installed);
* :mod:`~minires.cpu.batchnorm`: batch norm in two passes over memory each way (``numba``, the CPU
  default when Numba is installed; serial ``nogil`` kernels run on the same threads);
* :mod:`~minires.cpu.relu`: ReLU in one pass each way, its backward instead of NumPy's two
  (``numba``, the CPU default for relu and add_relu when Numba is installed);
* :mod:`~minires.cpu.add`: the residual add and the engine's sum of two gradients as one Numba
  region over the threads (``numba``, the CPU default for add when Numba is installed);
* :mod:`~minires.cpu.numba_layer`: Numba's threads on TBB where pip's ``tbb`` is installed, on
  which batch norm's, ReLU's and the sums' passes run as one Numba region each;
* :mod:`~minires.cpu.threads`: how many threads (:func:`set_num_threads`, default ``OMP_NUM_THREADS``
  if set, else every core) and
  the pool they share;
* :mod:`~minires.cpu.allocator`: glibc keeps freed memory for the next step instead of faulting it
  in again (applied on import; ``MINIRES_KEEP_FREED_MEMORY=0`` turns it off).

The ``numba`` conv is opt-in (``minires.backend.use("conv2d", "numba")``): it is no faster than
``numpy-fast`` here (536 against 385 ms per ResNet-20 step at batch 128 on 2 cores, 2026-12-04; README),
needs compiling, and its threads collapse when they compete with BLAS's or other busy processes
for the cores (10.8 s per step while BLAS still had threads of its own). Kernels compile on first use.
"""
from . import add, allocator, batchnorm, conv, pointwise, relu  # noqa: F401 - registers the implementations
from .threads import get_num_threads, set_num_threads  # noqa: F401

if allocator.wanted():
    allocator.keep_freed_memory()
