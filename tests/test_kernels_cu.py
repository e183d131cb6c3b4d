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

from minires.functional.conv import Im2colConv2d
from minires.functional.norm import NumpyBatchNorm, update_running_stats
from minires.optim import sgd_update
from minires.gpu import cupy_kernels
from minires.kernels import CUDA_SOURCES, source_path

KERNELS = {
    "conv2d.cu": {"im2col", "col2im", "conv2d_forward_tiled", "conv2d_backward_data_tiled",
                  "conv2d_backward_weight_tiled"},
    "batchnorm.cu": {"batch_norm_forward_train", "batch_norm_backward", "batch_norm_update_running"},
    "elementwise.cu": {"relu_forward", "relu_backward", "add_relu_forward"},
    "optim.cu": {"sgd_update"},
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


@pytest.mark.parametrize("case", list(CASES))
def test_emulated_im2col_gradients_at_once_match_each_direction(emulated_gpu, case):
    """``backward`` (both gradients from one copy of gy, what training calls) gives exactly what
    ``backward_data`` and ``backward_weight`` give one at a time."""
    x, w, gy = case_inputs(case, "float64")
    stride, padding = CASES[case][2:]
    gx, gw = cupy_kernels.CupyConv2d.backward(gy, x, w, stride, padding)
    np.testing.assert_array_equal(gx, cupy_kernels.CupyConv2d.backward_data(gy, w, x.shape, stride, padding))
    np.testing.assert_array_equal(gw, cupy_kernels.CupyConv2d.backward_weight(gy, x, w.shape, stride, padding))
    assert_matches_reference(gx, case, "float64", "backward_data")


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
def test_emulated_running_statistics_update_matches_the_generic_one(emulated_gpu, dtype):
    """300 channels (two blocks); the kernel against norm.update_running_stats, twice in a row."""
    rng = np.random.default_rng(0)
    running = [rng.standard_normal(300).astype(dtype), rng.random(300).astype(dtype) + 0.5]
    expected = [r.copy() for r in running]
    for _ in range(2):
        mean, var = rng.standard_normal(300).astype(dtype), rng.random(300).astype(dtype)
        update_running_stats(*expected, mean, var, 0.1, 512)
        cupy_kernels.CupyBatchNorm.update_running_stats(*running, mean, var, 0.1, 512)
        for got, want in zip(running, expected):
            np.testing.assert_allclose(got, want, rtol=4 * np.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("buffers", ["float64", "strided"])
def test_running_statistics_of_another_dtype_or_strided_take_the_array_path(monkeypatch, buffers):
    """float64 buffers with float32 statistics, or buffers that are strided views: no kernel launch
    (it would read them as floats, or update the wrong elements); the update still happens in place."""
    monkeypatch.setattr(cupy_kernels, "run_1d", lambda *args: pytest.fail("launched a kernel"))
    dtype = np.float64 if buffers == "float64" else np.float32
    running_mean, running_var = np.zeros(6, dtype)[::2], np.ones(6, dtype)[::2]
    if buffers == "float64":
        running_mean, running_var = running_mean.copy(), running_var.copy()
    mean, var = np.full(3, 2, np.float32), np.full(3, 4, np.float32)
    cupy_kernels.CupyBatchNorm.update_running_stats(running_mean, running_var, mean, var, 0.5, 5)
    np.testing.assert_allclose(running_mean, 1.0)
    np.testing.assert_allclose(running_var, 0.5 + 0.5 * 4 * 5 / 4)


def test_compiled_kernels_are_cached_per_source_name_dtype_and_device(monkeypatch):
    """One compile lookup per (source, name, dtype, device); another device gets its own."""
    compiled, device = [], [0]

    class Module:
        def __init__(self, source, dtype_name):
            self.where = (source, dtype_name)

        def get_function(self, name):
            compiled.append(self.where + (name, device[0]))
            return compiled[-1]

    fake_cupy = type("FakeCupy", (), {"cuda": type("Cuda", (), {"runtime": type("Runtime", (), {
        "getDevice": staticmethod(lambda: device[0])})})})
    monkeypatch.setattr(cupy_kernels, "_module", Module)
    monkeypatch.setattr(cupy_kernels, "_cupy", lambda: fake_cupy)
    monkeypatch.setattr(cupy_kernels, "_FUNCTIONS", {})
    first = cupy_kernels.kernel("elementwise.cu", "relu_forward", np.dtype("float32"))
    assert cupy_kernels.kernel("elementwise.cu", "relu_forward", np.dtype("float32")) is first
    assert cupy_kernels.kernel("elementwise.cu", "relu_forward", np.dtype("float64")) == \
        ("elementwise.cu", "float64", "relu_forward", 0)
    device[0] = 1
    assert cupy_kernels.kernel("elementwise.cu", "relu_forward", np.dtype("float32")) == \
        ("elementwise.cu", "float32", "relu_forward", 1)
    assert len(compiled) == 3


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_emulated_relu_and_add_relu_kernels_match_numpy(emulated_gpu, dtype):
    rng = np.random.default_rng(0)
    a, b, gy = (rng.standard_normal(300).astype(dtype) for _ in range(3))
    a[0] = np.nan  # NaN passes through ReLU, as in NumPy
    y = np.maximum(a, 0)
    np.testing.assert_array_equal(cupy_kernels.CupyReLU.forward(a), y)
    np.testing.assert_array_equal(cupy_kernels.CupyReLU.backward(gy, y), gy * (y > 0))
    np.testing.assert_array_equal(cupy_kernels.CupyAddReLU.forward(a, b), np.maximum(a + b, 0))


SGD_SETTINGS = [  # (lr, momentum, weight_decay, dampening, nesterov)
    (0.1, 0.9, 1e-4, 0.0, False), (0.05, 0.9, 0.0, 0.0, True), (0.1, 0.0, 1e-3, 0.0, False), (0.2, 0.5, 1e-2, 0.3, False)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("settings", SGD_SETTINGS)
def test_emulated_sgd_kernel_matches_the_readable_update(emulated_gpu, settings, dtype):
    """Two steps (the first makes the momentum buffer, the second updates it) of the fused kernel
    against optim.sgd_update, the definition; 300 elements span two blocks."""
    rng = np.random.default_rng(0)
    param = rng.standard_normal(300).astype(dtype)
    expected_param, expected_buffer = param.copy(), None
    buffer = None
    for step in range(2):
        grad = rng.standard_normal(300).astype(dtype)
        expected_buffer = sgd_update(expected_param, grad, expected_buffer, *settings)
        buffer = cupy_kernels.sgd_update(param, grad, buffer, *settings)
        np.testing.assert_allclose(param, expected_param, rtol=4 * np.finfo(dtype).eps, atol=0)
        if settings[1]:
            np.testing.assert_allclose(buffer, expected_buffer, rtol=4 * np.finfo(dtype).eps, atol=0)
        else:
            assert buffer is None and expected_buffer is None


def test_sgd_kernel_takes_a_strided_gradient_and_leaves_a_strided_parameter_to_the_array_path(emulated_gpu,
                                                                                              monkeypatch):
    """A transposed gradient is copied into one block for the kernel; a parameter that is a strided
    view cannot be updated in place by a flat kernel, so the readable update runs instead."""
    rng = np.random.default_rng(3)
    param, grad = rng.standard_normal((4, 6)), rng.standard_normal((6, 4)).T
    expected = param.copy()
    sgd_update(expected, grad, None, *SGD_SETTINGS[2])
    cupy_kernels.sgd_update(param, grad, None, *SGD_SETTINGS[2])
    np.testing.assert_allclose(param, expected, rtol=1e-15, atol=0)

    monkeypatch.setattr(cupy_kernels, "run_1d", lambda *args: pytest.fail("launched the flat kernel"))
    strided = rng.standard_normal((4, 6))[:, ::2]
    expected = strided.copy()
    expected_buffer = sgd_update(expected, grad[:, :3], None, *SGD_SETTINGS[0])
    buffer = cupy_kernels.sgd_update(strided, grad[:, :3], None, *SGD_SETTINGS[0])
    np.testing.assert_array_equal(strided, expected)
    np.testing.assert_array_equal(buffer, expected_buffer)


def test_strided_inputs_are_copied_into_one_block_for_the_flat_kernels(emulated_gpu):
    """Transposed views (a kernel indexes flat, C-ordered memory): each op's result is the reference's."""
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((5, 4, 3, 2)).T, rng.standard_normal((5, 4, 3, 2)).T  # (2, 3, 4, 5), strided
    w = rng.standard_normal((3, 3, 2, 2)).transpose(1, 0, 3, 2)
    assert not (a.flags.c_contiguous or w.flags.c_contiguous)
    np.testing.assert_array_equal(cupy_kernels.CupyAddReLU.forward(a, b), np.maximum(a + b, 0))
    expected = Im2colConv2d.forward(a, w, (1, 2), (1, 0))
    for impl in (cupy_kernels.CupyConv2d, cupy_kernels.CupyTiledConv2d):
        np.testing.assert_allclose(impl.forward(a, w, (1, 2), (1, 0)), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtypes", [("float16", "float16"), ("float32", "float64"), ("int64", "int64")])
def test_the_kernels_refuse_a_dtype_they_are_not_built_for_naming_op_dtypes_and_fix(dtypes):
    """KERNEL_DTYPES (float32, float64, one at a time) is what the .cu files are compiled for."""
    a, b = (np.ones((1, 1, 2, 2), dtype) for dtype in dtypes)
    channel = np.ones(1, dtypes[1])
    for op, call in [("add_relu", lambda: cupy_kernels.CupyAddReLU.forward(a, b)),
                     ("conv2d", lambda: cupy_kernels.CupyTiledConv2d.forward(a, b[:, :, :1, :1], (1, 1), (0, 0))),
                     ("batch_norm", lambda: cupy_kernels.CupyBatchNorm.backward(a, b, channel, channel, channel))]:
        with pytest.raises(TypeError, match=rf"{op}: the GPU kernels take float32 or float64 arrays of one dtype, "
                                            rf"got \['{dtypes[0]}', '{dtypes[1]}'.*cast with \.float\(\) or \.double\(\)"):
            call()


@pytest.mark.parametrize("param_dtype,buffer_dtype", [("float16", "float16"), ("float32", "float64")])
def test_sgd_parameters_the_kernel_is_not_built_for_take_the_array_path(monkeypatch, param_dtype, buffer_dtype):
    """A float16 parameter, or a momentum buffer of another dtype than its parameter (a checkpoint's),
    is updated by optim.sgd_update, the definition, without a launch."""
    monkeypatch.setattr(cupy_kernels, "run_1d", lambda *args: pytest.fail("launched the flat kernel"))
    rng = np.random.default_rng(5)
    param, grad = rng.standard_normal(6).astype(param_dtype), rng.standard_normal(6).astype(param_dtype)
    buffer = rng.standard_normal(6).astype(buffer_dtype)
    expected_param, expected_buffer = param.copy(), buffer.copy()
    sgd_update(expected_param, grad, expected_buffer, *SGD_SETTINGS[0])
    cupy_kernels.sgd_update(param, grad, buffer, *SGD_SETTINGS[0])
    np.testing.assert_array_equal(param, expected_param)
    np.testing.assert_array_equal(buffer, expected_buffer)
