r"""Matrix products: ``matmul`` and the fully connected layer ``linear``.

Their backward formulas are matrix products again, written with operations that Tensors have too,
so the same code serves ``create_graph`` (``backward_graph = backward``).
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function, Tensor
from .elementwise import unbroadcast


def _swap_last_two(m):
    """``m`` with its last two axes swapped (an array, or a Tensor through the differentiable transpose)."""
    return m.transpose(-1, -2) if isinstance(m, Tensor) else m.swapaxes(-1, -2)


class MatMul(Function):
    r"""Forward :math:`Y = A B` (batched over leading axes, NumPy's ``@`` rules; 1-D operands are
    treated as a row / column vector).
    Backward :math:`\bar A = \bar Y B^\top,\ \bar B = A^\top \bar Y` (summed over broadcast batch axes).
    """

    @staticmethod
    def forward(ctx, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("matmul: both operands need at least one dimension; use * for scalars")
        k_a, k_b = a.shape[-1], b.shape[-2] if b.ndim > 1 else b.shape[0]
        if k_a != k_b:
            raise ValueError(f"matmul: inner dimensions differ, {tuple(a.shape)} @ {tuple(b.shape)} "
                             f"({k_a} != {k_b}); transpose one operand or fix the layer sizes")
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        a2 = a if a.ndim > 1 else a[None, :]  # promote vectors to matrices; reshape back at the end
        b2 = b if b.ndim > 1 else b[:, None]
        batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
        g2 = g.reshape(batch + (a2.shape[-2], b2.shape[-1]))
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = unbroadcast(g2 @ _swap_last_two(b2), a2.shape).reshape(a.shape)
        if ctx.needs_input_grad[1]:
            gb = unbroadcast(_swap_last_two(a2) @ g2, b2.shape).reshape(b.shape)
        return ga, gb

    backward_graph = backward


def _check_linear(x, w, b):
    """Shape and dtype errors a person can act on (NumPy would broadcast a wrong bias, or promote)."""
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"linear: input {tuple(x.shape)} and weight {tuple(w.shape)} do not fit; "
                         "expected input (N, in_features) and weight (out_features, in_features)")
    check_bias_and_dtypes("linear", x, w, b, "output feature")


def check_bias_and_dtypes(op: str, x, w, b, output: str) -> None:
    """The bias (if any) must hold one value per ``output`` (a row of ``w``) and ``w`` and ``b`` must have ``x``'s
    dtype: NumPy would broadcast a wrong bias, or promote float32 to float64, without a word."""
    if b is not None and tuple(b.shape) != (w.shape[0],):
        raise ValueError(f"{op}: bias shape {tuple(b.shape)} does not match weight shape {tuple(w.shape)}; "
                         f"the bias needs one value per {output}, shape ({w.shape[0]},)")
    for name, other in (("weight", w), ("bias", b)):
        if other is not None and other.dtype != x.dtype:
            raise TypeError(f"{op}: input dtype {x.dtype} and {name} dtype {other.dtype} differ; cast one "
                            f"to the other, e.g. x.to(dtype='{other.dtype}')")


class Linear(Function):
    r"""Forward :math:`Y = X W^\top + b` with :math:`X: (N, \text{in})`, :math:`W: (\text{out}, \text{in})`.
    Backward :math:`\bar X = \bar Y W,\ \bar W = \bar Y^\top X,\ \bar b = \sum_n \bar Y_n`.
    """

    @staticmethod
    def forward(ctx, x, w, b=None):
        _check_linear(x, w, b)
        ctx.save_for_backward(x, w)
        y = x @ w.T
        return y if b is None else y + b

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gx = g @ w if ctx.needs_input_grad[0] else None
        gw = g.T @ x if ctx.needs_input_grad[1] else None
        gb = g.sum(axis=0) if len(ctx.needs_input_grad) > 2 and ctx.needs_input_grad[2] else None
        return gx, gw, gb

    backward_graph = backward


def matmul(a, b):
    return MatMul.apply(a, b)


def linear(x, weight, bias=None):
    """``x @ weight.T + bias`` with PyTorch's weight layout ``(out_features, in_features)``."""
    return Linear.apply(x, weight, bias)
