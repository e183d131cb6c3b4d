r"""Elementwise ops with NumPy broadcasting.

Notation: :math:`\bar y = \partial L/\partial y` is the gradient arriving at the output; each
backward returns :math:`\bar x = \bar y \, \partial y/\partial x`, summed over the axes that
broadcasting stretched (see :func:`unbroadcast`).

Double backward (``create_graph=True``): most backward formulas here use only operators that
Tensors have too, so ``backward_graph = backward`` runs the same code on Tensors; a factor that is
piecewise constant (the ReLU mask, sign, the arg-max share) is a constant array in both.
"""
from __future__ import annotations

import numbers

from .. import backend
from ..autograd import Function, Tensor, as_dtype, as_tensor


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: the adjoint of broadcasting ``shape`` up to ``grad.shape``.

    If :math:`y = \\mathrm{broadcast}(x)` copies :math:`x` along some axes, every copy sends its
    gradient back to the same element, so :math:`\\bar x` is :math:`\\bar y` summed over them.
    """
    if tuple(grad.shape) == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1)
    return grad.sum(axis=axes, keepdims=True).reshape(shape) if axes else grad.reshape(shape)


def array_of(x):
    """The array inside a Tensor, or ``x`` itself: for factors that are constants in any graph (masks)."""
    return x.data if isinstance(x, Tensor) else x


def _operands(a, b):
    """Turn Python numbers and arrays into constant tensors, matching the other operand's dtype."""
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        a = Tensor(a)
    if isinstance(a, Tensor):
        return a, as_tensor(b, like=a)
    return as_tensor(a, like=b), b


class NumpyAdd:
    """The reference sum, ``forward(a, b) -> a + b`` with broadcasting (NumPy, or CuPy's own kernel);
    a faster one registers under the op ``"add"``."""

    @staticmethod
    def forward(a, b):
        return a + b


backend.register("add", "numpy", device="cpu")(NumpyAdd)
backend.register("add", "cupy", device="cuda")(NumpyAdd)


class Add(Function):
    r"""Forward :math:`y = a + b`. Backward :math:`\bar a = \bar y,\ \bar b = \bar y` (unbroadcast).

    The residual add is this op: the gradient reaches both the shortcut and the branch unchanged.
    The sum comes from the registry (op ``"add"``: split over the CPU threads where Numba is installed).
    """

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return backend.lookup("add", a)[1].forward(a, b)

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        return unbroadcast(g, sa), unbroadcast(g, sb)

    backward_graph = backward


class Sub(Function):
    r"""Forward :math:`y = a - b`. Backward :math:`\bar a = \bar y,\ \bar b = -\bar y`."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return a - b

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        return unbroadcast(g, sa), unbroadcast(-g, sb)

    backward_graph = backward


class Mul(Function):
    r"""Forward :math:`y = a b`. Backward :math:`\bar a = \bar y\, b,\ \bar b = \bar y\, a`."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        ga = unbroadcast(g * b, a.shape) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(g * a, b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb

    backward_graph = backward


class Div(Function):
    r"""Forward :math:`y = a / b`. Backward :math:`\bar a = \bar y / b,\ \bar b = -\bar y\, a / b^2`."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        ga = unbroadcast(g / b, a.shape) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(-g * a / (b * b), b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb

    backward_graph = backward


class Pow(Function):
    r"""Forward :math:`y = a^b`.
    Backward :math:`\bar a = \bar y\, b\, a^{b-1},\ \bar b = \bar y\, a^b \ln a` (for :math:`a > 0`).
    """

    @staticmethod
    def forward(ctx, a, b):
        y = a ** b
        ctx.save_for_backward(a, b, y)
        return y

    @staticmethod
    def backward(ctx, g):
        a, b, y = ctx.saved_tensors
        ga = unbroadcast(g * b * a ** (b - 1), a.shape) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(g * y * _log(a), b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb

    backward_graph = backward


def _log(a):
    """Natural log of an array (fast path) or a Tensor (differentiable, for ``create_graph``)."""
    return a.log() if isinstance(a, Tensor) else backend.get_array_module(a).log(a)


class Neg(Function):
    r"""Forward :math:`y = -x`. Backward :math:`\bar x = -\bar y`."""

    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, g):
        return -g

    backward_graph = backward


class Exp(Function):
    r"""Forward :math:`y = e^x`. Backward :math:`\bar x = \bar y\, y`."""

    @staticmethod
    def forward(ctx, x):
        y = backend.get_array_module(x).exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y

    backward_graph = backward


class Log(Function):
    r"""Forward :math:`y = \ln x`. Backward :math:`\bar x = \bar y / x`."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return backend.get_array_module(x).log(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / x

    backward_graph = backward


class Sqrt(Function):
    r"""Forward :math:`y = \sqrt{x}`. Backward :math:`\bar x = \bar y / (2 y)`."""

    @staticmethod
    def forward(ctx, x):
        y = backend.get_array_module(x).sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g / (2 * y)

    backward_graph = backward


class Abs(Function):
    r"""Forward :math:`y = |x|`. Backward :math:`\bar x = \bar y\,\mathrm{sign}(x)` (0 at 0)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return backend.get_array_module(x).abs(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        x = array_of(x)
        return g * backend.get_array_module(x).sign(x)

    backward_graph = backward


class Maximum(Function):
    r"""Forward :math:`y = \max(a, b)`. Backward: :math:`\bar y` goes to the larger input; on a tie it is
    split equally, :math:`\bar a = \bar b = \bar y / 2` (PyTorch's convention).
    """

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return backend.get_array_module(a).maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = (array_of(t) for t in ctx.saved_tensors)
        share_a = ((a > b) + 0.5 * (a == b)).astype(g.dtype)
        ga = unbroadcast(g * share_a, a.shape) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(g * (1 - share_a), b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb

    backward_graph = backward


class NumpyReLU:
    """The reference ReLU kernels, ``forward(x) -> y`` and ``backward(gy, y) -> gx`` (NumPy, or CuPy
    through ``xp``). Faster ones register under the op ``"relu"``, and for the fused residual add
    under ``"add_relu"`` (``forward(a, b) -> y``, same backward)."""

    @staticmethod
    def forward(x):
        return backend.get_array_module(x).maximum(x, 0)

    @staticmethod
    def backward(gy, y):
        return gy * (y > 0)


class NumpyAddReLU:
    """The reference fused add + ReLU: ``forward(a, b) -> relu(a + b)``, ``backward(gy, y) -> gx``."""

    @staticmethod
    def forward(a, b):
        y = a + b
        return backend.get_array_module(y).maximum(y, 0, out=y)

    backward = staticmethod(NumpyReLU.backward)


backend.register("relu", "numpy", device="cpu")(NumpyReLU)
backend.register("add_relu", "numpy", device="cpu")(NumpyAddReLU)


class ReLU(Function):
    r"""Forward :math:`y = \max(x, 0)`. Backward :math:`\bar x = \bar y\,[x > 0]` (0 at 0, as PyTorch).

    The mask is recovered from the output (:math:`y > 0 \iff x > 0`), so only ``y`` is kept.
    The kernels come from the registry (op ``"relu"``): NumPy on the CPU, CUDA kernels on the GPU.
    """

    @staticmethod
    def forward(ctx, x):
        ctx.kernels = backend.lookup("relu", x)[1]
        y = ctx.kernels.forward(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return ctx.kernels.backward(g, y)

    @staticmethod
    def backward_graph(ctx, g):
        r""":math:`\bar x = \bar y\,[y > 0]` on Tensors; the mask is a constant (its derivative is 0)."""
        (y,) = ctx.saved_tensors
        return g * (y.data > 0).astype(g.dtype)


class AddReLU(Function):
    r"""The residual add fused with the ReLU after it. Forward :math:`y = \max(a + b, 0)`.
    Backward :math:`\bar a = \bar b = \bar y\,[y > 0]`: one mask, sent to both inputs.

    For ``relu(branch + shortcut)`` at the end of a residual block: on the GPU one pass over memory
    instead of two. Equal shapes only (no broadcasting). Kernels: registry op ``"add_relu"``.
    """

    @staticmethod
    def forward(ctx, a, b):
        if a.shape != b.shape:
            raise ValueError(f"add_relu: shapes {tuple(a.shape)} and {tuple(b.shape)} differ; add_relu fuses "
                             "the residual add of equal shapes, use relu(a + b) to broadcast")
        ctx.kernels = backend.lookup("add_relu", a)[1]
        y = ctx.kernels.forward(a, b)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        grad = ctx.kernels.backward(g, y)
        return grad, grad

    @staticmethod
    def backward_graph(ctx, g):
        grad = ReLU.backward_graph(ctx, g)
        return grad, grad


class To(Function):
    r"""Move to a device and/or cast. Backward: :math:`\bar x` = :math:`\bar y` moved and cast back."""

    @staticmethod
    def forward(ctx, x, device=None, dtype=None):
        ctx.device, ctx.dtype = backend.device_of(x), x.dtype
        y = x if device is None else backend.to_device(x, device)
        return y if dtype is None else y.astype(as_dtype(dtype), copy=False)

    @staticmethod
    def backward(ctx, g):
        return backend.to_device(g, ctx.device).astype(ctx.dtype, copy=False)

    @staticmethod
    def backward_graph(ctx, g):
        return to(g, ctx.device, ctx.dtype)


class Clone(Function):
    r"""A copy (``torch.clone``). Forward :math:`y = x`, new memory. Backward :math:`\bar x = \bar y`."""

    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, g):
        return g

    backward_graph = backward


def add(a, b):
    return Add.apply(*_operands(a, b))


def sub(a, b):
    return Sub.apply(*_operands(a, b))


def mul(a, b):
    return Mul.apply(*_operands(a, b))


def div(a, b):
    return Div.apply(*_operands(a, b))


def pow(a, b):  # noqa: A001 - the conventional name
    if isinstance(b, numbers.Number) and isinstance(a, Tensor):
        return PowScalar.apply(a, b)
    return Pow.apply(*_operands(a, b))


class PowScalar(Function):
    r"""Forward :math:`y = x^p` for a constant :math:`p`. Backward :math:`\bar x = \bar y\, p\, x^{p-1}`."""

    @staticmethod
    def forward(ctx, x, p):
        ctx.save_for_backward(x)
        ctx.p = p
        return x ** p

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * ctx.p * x ** (ctx.p - 1), None

    backward_graph = backward


def neg(x):
    return Neg.apply(x)


def clone(x):
    return Clone.apply(x)


def exp(x):
    return Exp.apply(x)


def log(x):
    return Log.apply(x)


def sqrt(x):
    return Sqrt.apply(x)


def abs(x):  # noqa: A001 - the conventional name
    return Abs.apply(x)


def maximum(a, b):
    return Maximum.apply(*_operands(a, b))


def relu(x):
    return ReLU.apply(x)


def add_relu(a, b):
    """``relu(a + b)`` as one op: the end of a residual block (fused into one kernel on the GPU)."""
    return AddReLU.apply(*_operands(a, b))


def to(x, device=None, dtype=None):
    """Differentiable move/cast: ``to(x, "cuda")``, ``to(x, dtype="float64")``."""
    if device is not None:
        device = backend.parse_device(device)
        if device == x.device:
            device = None
    if dtype is not None and as_dtype(dtype) == x.dtype:
        dtype = None
    if device is None and dtype is None:
        return x
    return To.apply(x, device=device, dtype=dtype)
