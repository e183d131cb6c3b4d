r"""Pooling over 2-D windows, NCHW: max, average, adaptive average and global average.

Same geometry as :mod:`minires.functional.conv` (and its helpers): a :math:`k_h \times k_w` window
moved by stride :math:`(s_h, s_w)` (default: the kernel size) over the input padded by
:math:`(p_h, p_w)`, with :math:`p \le k/2` as in PyTorch, so every window holds a real pixel.
``windows[n, c, i, j, p, q]`` is :math:`\tilde x_{n,c,s_h i+p,s_w j+q}` (:func:`sliding_windows`).
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..autograd import Function, Tensor
from .conv import Conv2dBackwardData, check_4d, check_window_fits, gradient_canvas, pair, sliding_windows
from .elementwise import array_of
from .linear import matmul
from .reduce import mean
from .shape import scatter_add


def _pool_geometry(op: str, x, kernel_size, stride, padding):
    """Checked ``(kernel, stride, padding)`` pairs; ``stride=None`` means the kernel size."""
    check_4d(op, x)
    kernel = pair(kernel_size, op, "kernel_size", 1)
    stride = kernel if stride is None else pair(stride, op, "stride", 1)
    padding = pair(padding, op, "padding", 0)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{op}: padding {padding} is more than half of the kernel {kernel}, so a window "
                         "could hold only padding; use padding <= kernel_size // 2")
    check_window_fits(op, x.shape, kernel, padding)
    return kernel, stride, padding


class MaxPool2d(Function):
    r"""Max pooling (padding counts as :math:`-\infty`).

    **Forward.** :math:`y_{n,c,i,j} = \max_{p,q} \tilde x_{n,c,\,s_h i+p,\,s_w j+q}`; the winning tap
    :math:`(p^*, q^*)_{n,c,i,j}` is remembered.

    **Backward.** :math:`\partial y_{n,c,i,j} / \partial \tilde x_{n,c,u,v} = 1` for the winner
    :math:`(u, v) = (s_h i + p^*, s_w j + q^*)` and 0 otherwise, so

    .. math::  \bar x_{n,c,u,v} = \sum_{i,j\,:\;(s_h i + p^*,\, s_w j + q^*) = (u,v)} \bar y_{n,c,i,j}

    (a pixel that wins several overlapping windows collects all their gradients; done as one
    scatter-add, ``bincount``). **Ties**: the winner is the *first* maximum in row-major window
    order, as in PyTorch, so exactly one pixel per window gets the gradient.
    """

    @staticmethod
    def forward(ctx, x, kernel_size, stride=None, padding=0):
        xp = backend.get_array_module(x)
        kernel, stride, padding = _pool_geometry("max_pool2d", x, kernel_size, stride, padding)
        windows = sliding_windows(x, kernel, stride, padding, pad_value=-xp.inf)
        n, c, h_out, w_out = windows.shape[:4]
        flat = windows.reshape(n, c, h_out, w_out, kernel[0] * kernel[1])
        winner = flat.argmax(axis=-1)
        ctx.save_for_backward(winner)
        ctx.x_shape, ctx.kernel, ctx.stride, ctx.padding = x.shape, kernel, stride, padding
        return xp.take_along_axis(flat, winner[..., None], axis=-1)[..., 0]

    @staticmethod
    def backward(ctx, gy):
        index, padded_shape, crop = _winner_places(ctx, gy)
        xp = backend.get_array_module(gy)
        gx = xp.bincount(index.ravel(), weights=gy.ravel(), minlength=math.prod(padded_shape))
        return gx.astype(gy.dtype, copy=False).reshape(padded_shape)[crop], None, None, None

    @staticmethod
    def backward_graph(ctx, gy):
        """The same scatter-add, differentiable (:func:`scatter_add`; its backward gathers at the winners)."""
        index, padded_shape, crop = _winner_places(ctx, gy)
        gx = scatter_add(gy.reshape(-1), index.ravel(), (math.prod(padded_shape),))
        return gx.reshape(padded_shape)[crop], None, None, None


def _winner_places(ctx, gy):
    """Where each window's winner sits: its flat index in the padded input (same shape as ``gy``), the
    padded shape, and the index that crops the padding off."""
    winner = array_of(ctx.saved_tensors[0])
    xp = backend.get_array_module(winner)
    n, c, h, w = ctx.x_shape
    (ph, pw), (sh, sw), kw = ctx.padding, ctx.stride, ctx.kernel[1]
    h_pad, w_pad = h + 2 * ph, w + 2 * pw
    h_out, w_out = gy.shape[2:]
    # coordinates of each window's winner in the padded input, then its flat index there
    row = sh * xp.arange(h_out).reshape(1, 1, -1, 1) + winner // kw
    col = sw * xp.arange(w_out).reshape(1, 1, 1, -1) + winner % kw
    plane = xp.arange(n * c).reshape(n, c, 1, 1)
    index = (plane * h_pad + row) * w_pad + col
    return index, (n, c, h_pad, w_pad), (slice(None), slice(None), slice(ph, ph + h), slice(pw, pw + w))


class AvgPool2d(Function):
    r"""Average pooling, padding counted as zeros in the average (PyTorch's ``count_include_pad=True``).

    **Forward.** :math:`y_{n,c,i,j} = \frac{1}{k_h k_w} \sum_{p,q} \tilde x_{n,c,\,s_h i+p,\,s_w j+q}`.

    **Backward.** Every pixel a window covers gets :math:`1/(k_h k_w)` of its gradient:

    .. math::  \bar x_{n,c,h,w} = \frac{1}{k_h k_w} \sum_{p,q}
               \bar y_{n,c,\,(h + p_h - p)/s_h,\,(w + p_w - q)/s_w}

    over integer, in-range indices — conv2d's backward-data with an all-ones kernel per channel, so
    it is computed the same way: a box sum over :func:`gradient_canvas`.
    """

    @staticmethod
    def forward(ctx, x, kernel_size, stride=None, padding=0):
        kernel, stride, padding = _pool_geometry("avg_pool2d", x, kernel_size, stride, padding)
        ctx.x_shape, ctx.kernel, ctx.stride, ctx.padding = x.shape, kernel, stride, padding
        return sliding_windows(x, kernel, stride, padding).mean(axis=(-2, -1))

    @staticmethod
    def backward(ctx, gy):
        canvas = gradient_canvas(gy, ctx.x_shape[2:], ctx.kernel, ctx.stride, ctx.padding)
        box = sliding_windows(canvas, ctx.kernel, (1, 1), (0, 0)).sum(axis=(-2, -1))
        return box / (ctx.kernel[0] * ctx.kernel[1]), None, None, None

    @staticmethod
    def backward_graph(ctx, gy):
        """The same map as a differentiable op: conv2d's backward-data of each channel on its own (a
        batch of N*C one-channel images) with the constant kernel :math:`1/(k_h k_w)`."""
        n, c, h, w = ctx.x_shape
        box = backend.get_array_module(gy.data).full((1, 1) + ctx.kernel, 1 / math.prod(ctx.kernel), gy.dtype)
        gx = Conv2dBackwardData.apply(gy.reshape(n * c, 1, *gy.shape[2:]), box, x_shape=(n * c, 1, h, w),
                                      stride=ctx.stride, padding=ctx.padding)
        return gx.reshape(ctx.x_shape), None, None, None


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max over each ``kernel_size`` window (stride defaults to the kernel size), PyTorch's signature."""
    return MaxPool2d.apply(x, kernel_size, stride, padding)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Mean over each ``kernel_size`` window, zero padding included in the count (PyTorch's default)."""
    return AvgPool2d.apply(x, kernel_size, stride, padding)


def global_avg_pool2d(x):
    r"""(N, C, H, W) -> **(N, C)**: :math:`y_{n,c} = \frac{1}{HW} \sum_{h,w} x_{n,c,h,w}`,
    :math:`\bar x_{n,c,h,w} = \bar y_{n,c} / (HW)`. The pooling before ResNet's final ``fc``, already
    flattened; it is the ``Mean`` op over axes (2, 3).
    """
    check_4d("global_avg_pool2d", x)
    return mean(x, axis=(2, 3))


def adaptive_avg_pool2d(x, output_size):
    r"""(N, C, H, W) -> (N, C, out_h, out_w), PyTorch's windows and layout (``output_size=1`` keeps a 1x1 map).

    Output row :math:`i` averages input rows :math:`[\lfloor iH/o_h \rfloor, \lceil (i+1)H/o_h \rceil)`,
    and the same for columns (neighbouring windows overlap when :math:`o_h` does not divide :math:`H`;
    :math:`o_h > H` repeats rows). A window is a product of a row range and a column range, so

    .. math::  y_{n,c} = A_h\, x_{n,c}\, A_w^\top, \qquad \bar x_{n,c} = A_h^\top\, \bar y_{n,c}\, A_w,

    with :math:`A_h` the :math:`o_h \times H` matrix whose row :math:`i` holds :math:`1/|\text{window}_i|` on
    its window (:func:`averaging_matrix`): two constant matmuls, differentiated by
    :class:`~minires.functional.linear.MatMul`. When the output size divides the input size the windows
    tile it and it is :func:`avg_pool2d` with kernel = stride = :math:`(H / o_h, W / o_w)` (same math, one
    window op); ``output_size=1`` is the mean over (H, W) with the axes kept.
    """
    check_4d("adaptive_avg_pool2d", x)
    out_h, out_w = pair(output_size, "adaptive_avg_pool2d", "output_size", 1)
    h, w = x.shape[2:]
    if (out_h, out_w) == (1, 1):
        return mean(x, axis=(2, 3), keepdims=True)
    if h == 0 or w == 0:
        raise ValueError(f"adaptive_avg_pool2d: input of shape {tuple(x.shape)} has no pixels to average")
    if h % out_h == 0 and w % out_w == 0:
        return avg_pool2d(x, (h // out_h, w // out_w))
    xp, dtype = backend.get_array_module(array_of(x)), array_of(x).dtype
    rows, columns = (Tensor(averaging_matrix(n, o, xp, dtype)) for n, o in ((h, out_h), (w, out_w)))
    return matmul(matmul(rows, x), columns.T)


def averaging_matrix(size: int, out: int, xp=np, dtype="float64"):
    """``(out, size)``: row ``i`` averages PyTorch's adaptive window ``[floor(i size/out), ceil((i+1) size/out))``."""
    a = np.zeros((out, size))
    for i in range(out):
        start, stop = i * size // out, -(-(i + 1) * size // out)
        a[i, start:stop] = 1 / (stop - start)
    return xp.asarray(a, dtype=dtype)
