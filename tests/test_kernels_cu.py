"""The CUDA C kernels without a GPU, two ways.

1. Every ``.cu`` file compiles with nvcc, for both dtypes minires builds, without warnings, and
   defines exactly the kernels listed here (the ones ``minires.gpu.cupy_kernels`` launches).
2. The kernels *run* on the CPU: g++ compiles each file with ``cuda_host_emulation.hpp`` (one host
   thread per CUDA thread, barriers for ``__syncthreads``), and ``minires.gpu.cupy_kernels`` runs
   unchanged on NumPy arrays, with its ``kernel()`` lookup pointed at the emulated library. So the
   launch code (argument order, int32 packing, grids, split-K) and the kernels' index math are
   checked against the NumPy reference here; tests/test_gpu.py repeats that on a real GPU.

Each part skips when its compiler (nvcc, g++) is absent.
"""
import ctypes
import functools
import itertools
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conv_cases import CASES, assert_matches_reference, case_inputs, run_direction, runs

from minires.functional.norm import NumpyBatchNorm
from minires.gpu import cupy_kernels
from minires.kernels import CUDA_SOURCES, source_path

KERNELS = {
    "conv2d.cu": {"im2col", "col2im", "conv2d_forward_tiled", "conv2d_backward_data_tiled",
                  "conv2d_backward_weight_tiled"},
    "batchnorm.cu": {"batch_norm_forward_train", "batch_norm_backward"},
    "elementwise.cu": {"relu_forward", "relu_backward", "add_relu_forward"},
}
NVCC, GXX = shutil.which("nvcc"), shutil.which("g++")
EMULATION = Path(__file__).with_name("cuda_host_emulation.hpp")


def test_every_kernel_file_is_listed():
    assert set(KERNELS) == set(CUDA_SOURCES)


@pytest.mark.skipif(NVCC is None, reason="nvcc (the CUDA toolkit) is not installed")
@pytest.mark.parametrize("real", ["float", "double"])
@pytest.mark.parametrize("source", sorted(KERNELS))
def test_cuda_source_compiles_to_ptx_with_every_kernel(source, real, tmp_path):
    ptx = tmp_path / "out.ptx"
    result = subprocess.run([NVCC, "-arch=sm_80", "--ptx", "-Werror", "all-warnings", f"-DMINIRES_REAL={real}",
                             "-o", str(ptx), str(source_path(source))], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert set(re.findall(r"\.entry (\w+)\(", ptx.read_text())) == KERNELS[source]


# ----------------------------------------------------------------------------- emulated on the CPU
_C_SCALARS = {np.int32: ctypes.c_int, np.float32: ctypes.c_float, np.float64: ctypes.c_double}


class EmulatedKernel:
    """A kernel of an emulation library, called like a CuPy RawKernel: ``kernel(grid, block, args)``."""

    def __init__(self, library, name):
        self.library, self.function = library, getattr(library, name)

    def __call__(self, grid, block, args):
        c_args = [ctypes.c_void_p(a.ctypes.data) if isinstance(a, np.ndarray) else _C_SCALARS[type(a)](a)
                  for a in args]
        body = ctypes.CFUNCTYPE(None)(lambda: self.function(*c_args))
        self.library.emulate_launch(*_dim3(grid), *_dim3(block), body)


def _dim3(size):
    size = tuple(size) if isinstance(size, (tuple, list)) else (size,)
    return size + (1,) * (3 - len(size))


@pytest.fixture(scope="module")
def emulated_kernel(tmp_path_factory):
    """``kernel(source, name, dtype)`` as in cupy_kernels, built with g++ on first use."""
    if GXX is None:
        pytest.skip("g++ is not installed")
    folder = tmp_path_factory.mktemp("emulated")

    @functools.lru_cache(maxsize=None)
    def library(source, real):
        path = folder / f"{source}.{real}.so"
        subprocess.run([GXX, "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-include", str(EMULATION),
                        f"-DMINIRES_REAL={real}", "-x", "c++", str(source_path(source)), "-o", str(path)],
                       check=True, capture_output=True, text=True, timeout=300)
        return ctypes.CDLL(str(path))

    def kernel(source, name, dtype):
        return EmulatedKernel(library(source, cupy_kernels.C_TYPES[np.dtype(dtype).name]), name)

    return kernel


@pytest.fixture
def emulated_gpu(monkeypatch, emulated_kernel):
    """cupy_kernels with NumPy for CuPy and the emulation for the compiled kernels."""
    monkeypatch.setattr(cupy_kernels, "kernel", emulated_kernel)
    monkeypatch.setattr(cupy_kernels, "_cupy", lambda: np)


@pytest.mark.parametrize("impl", [cupy_kernels.CupyConv2d, cupy_kernels.CupyTiledConv2d], ids=["cupy", "cupy-tiled"])
@pytest.mark.parametrize("case,dtype,direction", list(runs()))
def test_emulated_conv_kernels_match_numpy_reference(emulated_gpu, impl, case, dtype, direction):
    x, w, gy = case_inputs(case, dtype)
    assert_matches_reference(run_direction(impl, direction, x, w, gy, *CASES[case][2:]), case, dtype, direction)


@pytest.mark.parametrize("shape,affine", list(itertools.product([(6, 3), (2, 3, 5), (2, 3, 4, 5)], [True, False])))
def test_emulated_batch_norm_kernels_match_numpy_reference(emulated_gpu, shape, affine):
    rng = np.random.default_rng(len(shape))
    x, gy = 3 + 2 * rng.standard_normal(shape), rng.standard_normal(shape)
    weight, bias = (rng.standard_normal(shape[1]), rng.standard_normal(shape[1])) if affine else (None, None)
    expected = NumpyBatchNorm.forward_train(x, weight, bias, 1e-5)
    for got, want in zip(cupy_kernels.CupyBatchNorm.forward_train(x, weight, bias, 1e-5), expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    mean, invstd = expected[1], expected[3]
    for got, want in zip(cupy_kernels.CupyBatchNorm.backward(gy, x, weight, mean, invstd),
                         NumpyBatchNorm.backward(gy, x, weight, mean, invstd)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_emulated_relu_and_add_relu_kernels_match_numpy(emulated_gpu, dtype):
    rng = np.random.default_rng(0)
    a, b, gy = (rng.standard_normal(300).astype(dtype) for _ in range(3))
    a[0] = np.nan  # NaN passes through ReLU, as in NumPy
    y = np.maximum(a, 0)
    np.testing.assert_array_equal(cupy_kernels.CupyReLU.forward(a), y)
    np.testing.assert_array_equal(cupy_kernels.CupyReLU.backward(gy, y), gy * (y > 0))
    np.testing.assert_array_equal(cupy_kernels.CupyAddReLU.forward(a, b), np.maximum(a + b, 0))
