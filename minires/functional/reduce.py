r"""Reductions over axes: sum, mean, max, var.

Each backward re-inserts the reduced axes (so :math:`\bar y` broadcasts back over the input) and
scales: sum copies, mean divides by the count, max routes to the arg-max, var uses
:math:`\partial \sigma^2 / \partial x_i = 2 (x_i - \mu) / (n - d)`. Every backward uses only
operations that Tensors have too (:func:`broadcast_to` is differentiable on them), so it also serves
``create_graph`` (``backward_graph = backward``).
"""
from __future__ import annotations

from ..autograd import Function
from .elementwise import array_of
from .shape import broadcast_to


def _axes(axis, ndim):
    """A tuple of non-negative axes (all of them for None)."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"reduction: axis {a} is out of range for a tensor with {ndim} dimensions")
    normalized = tuple(sorted(a % ndim for a in axes))
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"reduction: axis={axis} names an axis twice (for a tensor with {ndim} dimensions); "
                         "list each axis once")
    return normalized


def _count(shape, axes):
    n = 1
    for a in axes:
        n *= shape[a]
    return n


def _keep(g, shape, axes, keepdims):
    """Give ``g`` back the reduced axes as size-1 axes, so it broadcasts against the input."""
    return g if keepdims else g.reshape([1 if i in axes else n for i, n in enumerate(shape)])


class Sum(Function):
    r"""Forward :math:`y = \sum_{i \in \text{axes}} x_i`. Backward :math:`\bar x_i = \bar y` (broadcast)."""

    @staticmethod
    def forward(ctx, x, axis=None, keepdims=False):
        ctx.shape, ctx.axes, ctx.keepdims = x.shape, _axes(axis, x.ndim), keepdims
        return x.sum(axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        return broadcast_to(_keep(g, ctx.shape, ctx.axes, ctx.keepdims), ctx.shape)

    backward_graph = backward


class Mean(Function):
    r"""Forward :math:`y = \frac1n \sum_i x_i`. Backward :math:`\bar x_i = \bar y / n`."""

    @staticmethod
    def forward(ctx, x, axis=None, keepdims=False):
        ctx.shape, ctx.axes, ctx.keepdims = x.shape, _axes(axis, x.ndim), keepdims
        return x.mean(axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        n = _count(ctx.shape, ctx.axes)
        return broadcast_to(_keep(g, ctx.shape, ctx.axes, ctx.keepdims) / n, ctx.shape)

    backward_graph = backward


class Max(Function):
    r"""Forward :math:`y = \max_i x_i`. Backward: :math:`\bar x_i = \bar y / k` where :math:`x_i` is one
    of the :math:`k` maximal entries, 0 elsewhere (ties share the gradient, like PyTorch's ``amax``).
    """

    @staticmethod
    def forward(ctx, x, axis=None, keepdims=False):
        ctx.axes, ctx.keepdims = _axes(axis, x.ndim), keepdims
        if _count(x.shape, ctx.axes) == 0:
            raise ValueError(f"max: axes {ctx.axes} of shape {tuple(x.shape)} hold no values, so they have no "
                             "maximum; reduce over non-empty axes")
        y = x.max(axis=ctx.axes, keepdims=True)
        ctx.save_for_backward(x, y)
        return y if keepdims else y.reshape([n for i, n in enumerate(x.shape) if i not in ctx.axes])

    @staticmethod
    def backward(ctx, g):
        x, y = (array_of(t) for t in ctx.saved_tensors)
        mask = (x == y).astype(g.dtype)
        mask /= mask.sum(axis=ctx.axes, keepdims=True)
        return _keep(g, x.shape, ctx.axes, ctx.keepdims) * mask

    backward_graph = backward


class Var(Function):
    r"""Forward :math:`y = \frac{1}{n - d} \sum_i (x_i - \mu)^2` with :math:`d = 1` if ``unbiased`` else 0.
    Backward :math:`\bar x_i = \bar y \cdot 2 (x_i - \mu) / (n - d)` (the :math:`\partial\mu` term
    vanishes because :math:`\sum_i (x_i - \mu) = 0`).
    """

    @staticmethod
    def forward(ctx, x, axis=None, keepdims=False, unbiased=False):
        ctx.axes, ctx.keepdims = _axes(axis, x.ndim), keepdims
        n = _count(x.shape, ctx.axes)
        ctx.denominator = n - 1 if unbiased else n
        if ctx.denominator <= 0:
            need = "more than one value per reduction for the unbiased estimate" if unbiased else "a value to reduce"
            raise ValueError(f"var: need {need}, got {n} along axes {ctx.axes} of shape {tuple(x.shape)}")
        centered = x - x.mean(axis=ctx.axes, keepdims=True)
        ctx.save_for_backward(x)
        return (centered * centered).sum(axis=ctx.axes, keepdims=keepdims) / ctx.denominator

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        centered = x - x.mean(axis=ctx.axes, keepdims=True)
        return _keep(g, x.shape, ctx.axes, ctx.keepdims) * (2 / ctx.denominator) * centered

    backward_graph = backward


def sum(x, axis=None, keepdims=False):  # noqa: A001 - the conventional name
    return Sum.apply(x, axis=axis, keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    return Mean.apply(x, axis=axis, keepdims=keepdims)


def max(x, axis=None, keepdims=False):  # noqa: A001 - the conventional name
    return Max.apply(x, axis=axis, keepdims=keepdims)


def var(x, axis=None, keepdims=False, unbiased=False):
    return Var.apply(x, axis=axis, keepdims=keepdims, unbiased=unbiased)
