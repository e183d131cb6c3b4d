"""Hand-written kernels, one file per op family; importable as ``minires.kernels``.

=========================  ==================================================================
``conv2d.cu``              CUDA C for CuPy: im2col, col2im (a gather) and a tiled implicit-GEMM
                           kernel for forward, backward-data and backward-weight
``batchnorm.cu``           CUDA C for CuPy: fused BatchNorm forward (statistics + normalise)
                           and backward, one block per channel
``elementwise.cu``         CUDA C for CuPy: ReLU forward/backward and the fused residual add + ReLU
``optim.cu``               CUDA C for CuPy: the SGD update (weight decay, momentum) in one kernel
``conv2d_numba_cuda.py``   the same convolution kernels written in Python with Numba CUDA
``conv2d_index.py``        the index math both conv files share, as plain Python (tested on the CPU)
``conv2d_cpu.py``          Numba CPU (``parallel=True``) im2col and col2im around BLAS GEMMs,
                           driven by :mod:`minires.cpu`
``conv2d_rows_cpu.py``     Numba CPU (``parallel=True``): a stride-1 conv's row columns and its
                           BLAS GEMMs in one region, driven by :mod:`minires.cpu.conv`
``batchnorm_cpu.py``       Numba CPU (``nogil``) batch norm in two passes each way, driven by
                           :mod:`minires.cpu.batchnorm`
``relu_cpu.py``            Numba CPU (``nogil``) ReLU backward in one pass, driven by
                           :mod:`minires.cpu.relu`
=========================  ==================================================================

The Python side that compiles, launches and registers these lives in :mod:`minires.gpu` (CUDA) and
:mod:`minires.cpu` (Numba CPU).
"""
from __future__ import annotations

from pathlib import Path

CUDA_SOURCES = ("conv2d.cu", "batchnorm.cu", "elementwise.cu", "optim.cu")


def source_path(name: str) -> Path:
    """The path of the CUDA C file ``name`` (e.g. ``"conv2d.cu"``) in this package."""
    path = Path(__file__).with_name(name)
    if not path.is_file():
        raise FileNotFoundError(f"kernel source {path} is missing; expected one of {CUDA_SOURCES}")
    return path
