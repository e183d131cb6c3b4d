"""The CUDA C kernels of ``kernels/*.cu``, compiled by CuPy and registered with the backend.

============  ==============  ===========================================================
op            name            what runs
============  ==============  ===========================================================
conv2d        ``cupy``        im2col / col2im kernels around cuBLAS GEMMs (CUDA default)
conv2d        ``cupy-tiled``  the tiled implicit-GEMM kernels (no column matrix)
batch_norm    ``cupy``        fused forward (statistics + normalise), backward, and the
                              running-statistics update
relu          ``cupy``        forward and backward
add_relu      ``cupy``        the residual add fused with the ReLU after it
sgd           ``cupy``        the SGD update (weight decay, momentum) of one parameter
============  ==============  ===========================================================

Each ``.cu`` file is compiled with NVRTC once per dtype (``-DMINIRES_REAL=float`` or ``double``)
the first time one of its kernels runs; CuPy caches the binary on disk. CuPy passes Python ints
as 64-bit, so integer arguments go through :func:`int32s` to match the kernels' ``int``.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import backend, optim
from ..functional import norm
from ..kernels import source_path
from .conv_algorithms import KERNEL_DTYPES, Im2colGemm, ImplicitGemm, prepare
from .launch import SMALLER_BATCH, THREADS, blocks_for, check_int32, tiled_grid

C_TYPES = {"float32": "float", "float64": "double"}  # dtype -> the MINIRES_REAL a .cu file is built with


@functools.lru_cache(maxsize=None)
def _module(source: str, dtype_name: str):
    return _cupy().RawModule(code=source_path(source).read_text(),
                             options=(f"-DMINIRES_REAL={C_TYPES[dtype_name]}",))


_FUNCTIONS: dict = {}  # (source, name, dtype, device) -> compiled kernel: one dict lookup per launch


def kernel(source: str, name: str, dtype):
    """Kernel ``name`` of ``kernels/<source>``, compiled for ``dtype`` (float32 or float64) on the
    current device (CuPy compiles a module for each device it runs on)."""
    key = (source, name, dtype, _cupy().cuda.runtime.getDevice())
    function = _FUNCTIONS.get(key)
    if function is None:
        function = _FUNCTIONS[key] = _module(source, np.dtype(dtype).name).get_function(name)
    return function


def int32s(*values) -> tuple:
    return tuple(np.int32(v) for v in values)


def run_1d(source: str, name: str, items: int, args: tuple) -> None:
    """Launch ``name`` with one thread per item; the first argument's dtype picks the build."""
    kernel(source, name, args[0].dtype)((blocks_for(items),), (THREADS,), args)


def _cupy():
    """The ``cupy`` module; a clear error when it is missing (the kernels below cannot run without it)."""
    cupy = backend.cupy_or_none()
    if cupy is None:
        raise RuntimeError("the 'cupy' kernels need CuPy: pip install 'minires[gpu]' on a machine with a GPU")
    return cupy


# ----------------------------------------------------------------------------- conv2d
@backend.register("conv2d", "cupy", device="cuda")
class CupyConv2d(Im2colGemm):
    """im2col and col2im (a gather) from ``kernels/conv2d.cu`` around cuBLAS GEMMs."""

    @staticmethod
    def im2col(x, g):
        col = _cupy().empty((g.c_in * g.kh * g.kw, g.n * g.out_h * g.out_w), dtype=x.dtype)
        run_1d("conv2d.cu", "im2col", col.size, (x, col) + int32s(*g))
        return col

    @staticmethod
    def col2im(gcol, g):
        gx = _cupy().empty((g.n, g.c_in, g.h, g.w), dtype=gcol.dtype)
        run_1d("conv2d.cu", "col2im", gx.size, (gcol, gx) + int32s(*g))
        return gx


@backend.register("conv2d", "cupy-tiled", device="cuda")
class CupyTiledConv2d(ImplicitGemm):
    """The tiled implicit-GEMM kernels of ``kernels/conv2d.cu``."""

    @staticmethod
    def launch(direction, a_src, b_src, out, g, sizes, chunks, k_chunk):
        grid, block = tiled_grid(sizes[0], sizes[1], chunks)
        kernel("conv2d.cu", f"conv2d_{direction}_tiled", out.dtype)(
            grid, block, (a_src, b_src, out) + int32s(*g, *sizes, k_chunk))


# ----------------------------------------------------------------------------- batch_norm
def _vector_or(value, x, fill):
    """A per-channel vector, or ``fill`` in every channel when ``value`` is None (no affine part)."""
    return _cupy().full(x.shape[1], fill, dtype=x.dtype) if value is None else value


def _channel_layout(x) -> tuple:
    """``(n, c, hw)``: x viewed as (n, c, hw) for the per-channel kernels."""
    n, c = x.shape[:2]
    check_int32("batch_norm", SMALLER_BATCH, input=x.size)
    return int32s(n, c, x.size // (n * c))


@backend.register("batch_norm", "cupy", device="cuda")
class CupyBatchNorm:
    """The fused training-mode kernels of ``kernels/batchnorm.cu`` (one block per channel)."""

    @staticmethod
    def forward_train(x, weight, bias, eps):
        x, weight, bias = prepare("batch_norm", x, _vector_or(weight, x, 1), _vector_or(bias, x, 0))
        cupy, c = _cupy(), x.shape[1]
        y = cupy.empty_like(x)
        mean, var, invstd = (cupy.empty(c, dtype=x.dtype) for _ in range(3))
        kernel("batchnorm.cu", "batch_norm_forward_train", x.dtype)(
            (c,), (THREADS,), (x, weight, bias, y, mean, var, invstd) + _channel_layout(x) + (x.dtype.type(eps),))
        return y, mean, var, invstd

    @staticmethod
    def backward(gy, x, weight, mean, invstd):
        gy, x, weight, mean, invstd = prepare("batch_norm", gy, x, _vector_or(weight, x, 1), mean, invstd)
        cupy, c = _cupy(), x.shape[1]
        gx = cupy.empty_like(x)
        gweight, gbias = cupy.empty(c, dtype=x.dtype), cupy.empty(c, dtype=x.dtype)
        kernel("batchnorm.cu", "batch_norm_backward", x.dtype)(
            (c,), (THREADS,), (gy, x, weight, mean, invstd, gx, gweight, gbias) + _channel_layout(x))
        return gx, gweight, gbias

    @staticmethod
    def update_running_stats(running_mean, running_var, mean, var, momentum, m):
        """:func:`minires.functional.norm.update_running_stats` in one launch of ``kernels/batchnorm.cu``
        (buffers of another dtype than the batch's statistics, or not one C-contiguous block, take the
        array-operation path)."""
        if not all(a.dtype == mean.dtype and a.flags.c_contiguous for a in (running_mean, running_var, var)):
            return norm.update_running_stats(running_mean, running_var, mean, var, momentum, m)
        real = mean.dtype.type
        run_1d("batchnorm.cu", "batch_norm_update_running", mean.size,
               (running_mean, running_var, mean, var) + int32s(mean.size) + (real(1 - momentum), real(momentum),
                                                                             real(m / (m - 1))))


# ----------------------------------------------------------------------------- relu, add_relu
def _elementwise(name: str, op: str, *inputs):
    """Run the one-thread-per-element kernel ``name`` on same-shape ``inputs``; return its output."""
    inputs = prepare(op, *inputs)
    check_int32(op, SMALLER_BATCH, input=inputs[0].size)
    out = _cupy().empty_like(inputs[0])
    run_1d("elementwise.cu", name, out.size, tuple(inputs) + (out, np.int32(out.size)))
    return out


@backend.register("relu", "cupy", device="cuda")
class CupyReLU:
    """``forward(x) -> y``, ``backward(gy, y) -> gx`` from ``kernels/elementwise.cu``."""

    @staticmethod
    def forward(x):
        return _elementwise("relu_forward", "relu", x)

    @staticmethod
    def backward(gy, y):
        return _elementwise("relu_backward", "relu", gy, y)


@backend.register("add_relu", "cupy", device="cuda")
class CupyAddReLU:
    """``forward(a, b) -> relu(a + b)`` in one pass; ``backward(gy, y)`` is ReLU's (for both inputs)."""

    @staticmethod
    def forward(a, b):
        return _elementwise("add_relu_forward", "add_relu", a, b)

    backward = staticmethod(CupyReLU.backward)


# ----------------------------------------------------------------------------- sgd
@backend.register("sgd", "cupy", device="cuda", default=True)
def sgd_update(param, grad, buffer, lr, momentum, weight_decay, dampening, nesterov):
    """:func:`minires.optim.sgd_update` in one launch of ``kernels/optim.cu`` (in place; returns the
    momentum buffer, a new one on the first step, None without momentum). A parameter that is not one
    C-contiguous block of float32 or float64, or a buffer that is not one such block of the parameter's
    dtype, takes the array-operation path instead."""
    arrays = (param,) if buffer is None else (param, buffer)
    if param.dtype not in KERNEL_DTYPES or not all(a.flags.c_contiguous and a.dtype == param.dtype for a in arrays):
        return optim.sgd_update(param, grad, buffer, lr, momentum, weight_decay, dampening, nesterov)
    check_int32("sgd", "update it with array operations: backend.use('sgd', 'cupy-ops')", parameter=param.size)
    grad = _cupy().ascontiguousarray(grad, dtype=param.dtype)
    first_step = momentum and buffer is None
    if first_step:
        buffer = _cupy().empty_like(param)
    real = param.dtype.type
    run_1d("optim.cu", "sgd_update", param.size,
           (param, grad, buffer if momentum else param) + int32s(param.size)
           + (real(lr), real(momentum), real(weight_decay), real(dampening)) + int32s(nesterov, first_step))
    return buffer if momentum else None
