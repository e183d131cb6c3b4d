"""GPU implementations of the hot ops, registered with :mod:`minires.backend`.

Importing this package only *registers* the implementations (it imports neither CuPy nor Numba);
kernels compile the first time they run. The kernels themselves live in ``kernels/`` (CUDA C and
Numba CUDA, each file explained at its top); here is what launches them:

* :mod:`~minires.gpu.launch`: launch geometry (plain Python, tested on the CPU);
* :mod:`~minires.gpu.conv_algorithms`: the two conv algorithms, im2col + GEMM and implicit GEMM;
* :mod:`~minires.gpu.cupy_kernels`: the ``.cu`` kernels through CuPy (conv2d ``cupy``,
  ``cupy-tiled``; batch_norm, relu, add_relu ``cupy``);
* :mod:`~minires.gpu.numba_kernels`: the Numba CUDA kernels (conv2d ``numba-cuda``,
  ``numba-cuda-tiled``).

Choose an implementation globally with ``minires.backend.use("conv2d", "numba-cuda")``, for a
block of code with ``backend.using(...)``, or per call with ``conv2d(..., impl="cupy-tiled")``;
``backend.available()`` (or ``minires bench list``) shows what this machine can run.
"""
from . import cupy_kernels, numba_kernels  # noqa: F401 - registers the implementations (cupy first: the default)
