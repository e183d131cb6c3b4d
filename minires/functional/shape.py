r"""Shape ops: reshape, transpose/permute, pad, indexing, concatenate, flatten.

None of these computes anything; each backward just undoes the data movement on :math:`\bar y`:
reshape back, apply the inverse permutation, crop the padding, scatter-add into the indexed places,
split along the concatenation axis.

Each backward is written with indexing and reshapes that Tensors have too, so the same code serves
``create_graph`` (``backward_graph = backward``). The two data movements that arrays do in place,
broadcasting and scatter-adding, are ops of their own here (:class:`Expand`, :class:`ScatterAdd`),
each the other's adjoint partner (sum, indexing).
"""
from __future__ import annotations

import itertools
import math
import numbers

import numpy as np

from .. import backend
from ..autograd import Function, Tensor
from .elementwise import unbroadcast


def _shape_args(shape):
    """Accept ``reshape(x, 2, 3)`` and ``reshape(x, (2, 3))``."""
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


class Reshape(Function):
    r"""Forward :math:`y = \mathrm{reshape}(x, s)`. Backward :math:`\bar x = \mathrm{reshape}(\bar y, \mathrm{shape}(x))`."""

    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {tuple(x.shape)} "
                             f"({x.size} elements) to {shape}") from None

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape), None

    backward_graph = backward


def _axis(op, axis, shape):
    """``axis`` as a non-negative index into ``shape``; a ValueError naming ``op`` if it is out of range."""
    if not -len(shape) <= axis < len(shape):
        raise ValueError(f"{op}: axis {axis} is out of range for shape {tuple(shape)}; "
                         f"use an axis in [{-len(shape)}, {len(shape) - 1}]")
    return axis % len(shape)


class Permute(Function):
    r"""Forward :math:`y = x` with axes reordered by :math:`p`. Backward :math:`\bar x = \bar y`
    permuted by :math:`p^{-1}`."""

    @staticmethod
    def forward(ctx, x, axes):
        ctx.axes = tuple(_axis("permute", a, x.shape) for a in axes)
        if sorted(ctx.axes) != list(range(x.ndim)):
            raise ValueError(f"permute: {axes} is not a permutation of the {x.ndim} axes of shape {tuple(x.shape)}")
        return x.transpose(ctx.axes)

    @staticmethod
    def backward(ctx, g):
        inverse = [0] * len(ctx.axes)
        for i, a in enumerate(ctx.axes):
            inverse[a] = i
        return g.transpose(inverse), None

    backward_graph = backward


class Pad(Function):
    r"""Forward: zero-pad (constant ``value``) each axis by ``(before, after)``.
    Backward :math:`\bar x = \bar y` with the padding cropped off."""

    @staticmethod
    def forward(ctx, x, pad_width, value=0.0):
        xp = backend.get_array_module(x)
        ctx.crop = tuple(slice(b, b + n) for (b, _), n in zip(pad_width, x.shape))
        shape = tuple(n + before + after for n, (before, after) in zip(x.shape, pad_width))
        y = xp.full_like(x, value, shape=shape)     # x's memory layout (e.g. channels last), unlike xp.pad
        y[ctx.crop] = x
        return y

    @staticmethod
    def backward(ctx, g):
        return g[ctx.crop], None

    backward_graph = backward


class GetItem(Function):
    r"""Forward :math:`y = x[\text{index}]` (basic or advanced NumPy indexing).
    Backward: :math:`\bar x = 0` with :math:`\bar y` scatter-added at ``index`` (repeated indices add up;
    a basic index, slices and integers, repeats none, so it is a plain assignment)."""

    @staticmethod
    def forward(ctx, x, index):
        ctx.shape, ctx.dtype, ctx.index = x.shape, x.dtype, index
        return x[index]

    @staticmethod
    def backward(ctx, g):
        return scatter_add(g, ctx.index, ctx.shape), None

    backward_graph = backward


def _scatter_add_array(values, index, shape):
    """Zeros of ``shape`` (``values``' memory layout) with ``values`` added at ``index``."""
    xp = backend.get_array_module(values)
    out = xp.zeros_like(values, shape=shape)
    if _is_basic(index):
        out[index] = values
    else:
        xp.add.at(out, index, values)
    return out


class ScatterAdd(Function):
    r"""Forward :math:`y = 0` of shape ``shape`` with :math:`y[\text{index}] \mathrel{+}= v` (the backward of
    indexing). Backward :math:`\bar v = \bar y[\text{index}]` (a gather: indexing is its adjoint)."""

    @staticmethod
    def forward(ctx, values, index, shape):
        ctx.index = index
        return _scatter_add_array(values, index, shape)

    @staticmethod
    def backward(ctx, g):
        return g[ctx.index], None, None

    backward_graph = backward


def scatter_add(values, index, shape):
    """Zeros of ``shape`` with ``values`` added at ``index``; differentiable when ``values`` is a Tensor."""
    if isinstance(values, Tensor):
        return ScatterAdd.apply(values, index, tuple(shape))
    return _scatter_add_array(values, index, shape)


class Expand(Function):
    r"""Forward :math:`y = \mathrm{broadcast}(x, s)` (a view, NumPy's rules).
    Backward :math:`\bar x = \bar y` summed over the broadcast axes (:func:`unbroadcast`)."""

    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        return backend.get_array_module(x).broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, g):
        return unbroadcast(g, ctx.shape), None

    backward_graph = backward


def broadcast_to(x, shape):
    """``x`` broadcast to ``shape``: a read-only view of an array, the differentiable :class:`Expand`
    of a Tensor."""
    if isinstance(x, Tensor):
        return Expand.apply(x, tuple(shape))
    return backend.get_array_module(x).broadcast_to(x, shape)


def _is_basic(index) -> bool:
    """True for a basic NumPy index (integers, slices, ``...``, ``None``): it selects no element twice."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, np.integer, slice, type(Ellipsis), type(None))) and not isinstance(p, bool)
               for p in parts)


class Concatenate(Function):
    r"""Forward :math:`y = [x_1, \dots, x_k]` along ``axis``.
    Backward: :math:`\bar x_j` is the slice of :math:`\bar y` where :math:`x_j` was placed."""

    @staticmethod
    def forward(ctx, *arrays, axis=0):
        xp = backend.get_array_module(*arrays)
        ctx.axis = axis
        ctx.sizes = [a.shape[axis] for a in arrays]
        try:
            return xp.concatenate(arrays, axis=axis)
        except ValueError:
            shapes = [tuple(a.shape) for a in arrays]
            raise ValueError(f"concatenate: shapes {shapes} must match in every axis except {axis}") from None

    @staticmethod
    def backward(ctx, g):
        axis = ctx.axis % g.ndim
        ends = list(itertools.accumulate(ctx.sizes))
        return tuple(g[(slice(None),) * axis + (slice(end - size, end),)] for size, end in zip(ctx.sizes, ends))

    backward_graph = backward


def reshape(x, *shape):
    return Reshape.apply(x, _shape_args(shape))


def permute(x, *axes):
    return Permute.apply(x, _shape_args(axes))


def transpose(x, *axes):
    """Reverse the axes (no arguments), swap two axes ``transpose(x, i, j)`` (``torch.transpose``, also
    for a 2-D ``x``: ``transpose(x, 0, 1)`` is ``x.T``), or permute ``transpose(x, (axes...))``."""
    swap = len(axes) == 2 and all(isinstance(a, numbers.Integral) for a in axes)
    axes = _shape_args(axes)
    if not axes:
        axes = tuple(reversed(range(x.ndim)))
    elif swap:
        i, j = (_axis("transpose", a, x.shape) for a in axes)
        order = list(range(x.ndim))
        order[i], order[j] = order[j], order[i]
        axes = tuple(order)
    return Permute.apply(x, axes)


def pad(x, pad_width, value=0.0):
    """Pad with a constant. ``pad_width``: one ``(before, after)`` pair per axis (NumPy's convention)."""
    if not all(np.shape(pair) == (2,) for pair in pad_width):
        raise TypeError(f"pad: pad_width must be one (before, after) pair per axis (NumPy's convention), got "
                        f"{pad_width!r}; PyTorch's flat (left, right, top, bottom) for (N, C, H, W) reads "
                        "((0, 0), (0, 0), (top, bottom), (left, right)) here")
    pad_width = tuple((int(b), int(a)) for b, a in pad_width)
    if len(pad_width) != x.ndim:
        raise ValueError(f"pad: need one (before, after) pair per axis ({x.ndim}), got {len(pad_width)}")
    if any(min(pair) < 0 for pair in pad_width):
        raise ValueError(f"pad: pad widths must be >= 0, got {pad_width} for shape {tuple(x.shape)}; "
                         "to crop, index instead (x[:, 1:])")
    return Pad.apply(x, pad_width, value=value)


def getitem(x, index):
    index = index.data if isinstance(index, Tensor) else index
    if isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetItem.apply(x, index)


def concatenate(tensors, axis=0):
    return Concatenate.apply(*tensors, axis=axis)


cat = concatenate


def flatten(x, start_dim=0):
    """Merge the axes from ``start_dim`` on (``torch.flatten``); ``start_dim=1`` gives ``(N, C*H*W)``."""
    start_dim %= max(x.ndim, 1)
    return reshape(x, x.shape[:start_dim] + (math.prod(x.shape[start_dim:]),))  # not -1: fine for 0 items
