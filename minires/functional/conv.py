r"""2-D convolution in NCHW: the NumPy reference (im2col + matmul) and the differentiable op.

Notation (used by every implementation, CPU or GPU, so their index math can be compared):

* input :math:`x` of shape :math:`(N, C, H, W)`, weight :math:`w` of shape :math:`(O, C, k_h, k_w)`,
  stride :math:`(s_h, s_w)`, zero padding :math:`(p_h, p_w)`;
* :math:`\tilde x` is :math:`x` padded, of size :math:`(H + 2p_h) \times (W + 2p_w)`;
* output :math:`y` of shape :math:`(N, O, H_o, W_o)` with
  :math:`H_o = \lfloor (H + 2p_h - k_h) / s_h \rfloor + 1` (likewise :math:`W_o`).

Like every deep-learning framework, "convolution" is a cross-correlation (the kernel is not flipped):

.. math::  y_{n,o,i,j} = \sum_{c,p,q} w_{o,c,p,q}\; \tilde x_{n,c,\; s_h i + p,\; s_w j + q}

**im2col** (:func:`im2col`) copies every receptive field into a column, so the sum becomes a matrix
product: column :math:`l = i W_o + j` of :math:`X^{\mathrm{col}}_n` holds the
:math:`C k_h k_w` values :math:`\tilde x_{n,c,s_h i+p,s_w j+q}`, rows ordered :math:`(c, p, q)`,
exactly the order of ``w.reshape(O, C*kh*kw)``. Then :math:`Y_n = W_{\mathrm{mat}} X^{\mathrm{col}}_n`.

**col2im as a gather** (:func:`gradient_canvas`) is the backward of im2col. Written per input pixel
(one GPU thread per :math:`(n, c, h, w)`, no atomics): the pixel :math:`h` was read by output row
:math:`i` through kernel tap :math:`p` exactly when :math:`s_h i + p - p_h = h`, so

.. math::  \bar x_{n,c,h,w} = \sum_{o,p,q} w_{o,c,p,q}\; \bar y_{n,o,\,(h + p_h - p)/s_h,\,(w + p_w - q)/s_w}

summed over the taps whose quotient is an integer inside :math:`[0, H_o) \times [0, W_o)`.
"""
from __future__ import annotations

import numbers

from .. import backend
from ..autograd import Function, Tensor
from .linear import check_bias_and_dtypes


# ----------------------------------------------------------------------------- geometry helpers
def pair(value, op: str, name: str, minimum: int) -> tuple[int, int]:
    """``value`` (an int or a pair of ints, PyTorch style) as ``(vertical, horizontal)``, checked."""
    values = (value, value) if isinstance(value, numbers.Integral) else value
    if not isinstance(values, (tuple, list)) or len(values) != 2 or \
            not all(isinstance(v, numbers.Integral) for v in values):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if min(values) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return int(values[0]), int(values[1])


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    r"""Output length along one axis: :math:`\lfloor (size + 2 padding - kernel) / stride \rfloor + 1`."""
    return (size + 2 * padding - kernel) // stride + 1


def check_4d(op: str, x) -> None:
    """Raise unless ``x`` is a batch of images, (N, C, H, W)."""
    if x.ndim != 4:
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W), got shape {tuple(x.shape)}; "
                         "for a single image add a batch axis with x.reshape(1, *x.shape)")


def check_window_fits(op: str, x_shape, kernel, padding) -> None:
    """Raise if a ``kernel`` window does not fit in the padded input (no output position)."""
    padded = (x_shape[2] + 2 * padding[0], x_shape[3] + 2 * padding[1])
    if kernel[0] > padded[0] or kernel[1] > padded[1]:
        raise ValueError(f"{op}: kernel {kernel[0]}x{kernel[1]} is larger than the padded input "
                         f"{padded[0]}x{padded[1]} (input shape {tuple(x_shape)}, padding {padding}); "
                         "use a smaller kernel, more padding, or a larger input")


def sliding_windows(x, kernel, stride, padding, pad_value=0):
    r"""A strided *view* of every window of ``x``: shape :math:`(N, C, H_o, W_o, k_h, k_w)`.

    ``windows[n, c, i, j, p, q]`` is :math:`\tilde x_{n,c,s_h i+p,s_w j+q}`. Only the padding is
    copied; the windows share memory with the padded input (so do not write into them).
    """
    xp = backend.get_array_module(x)
    ph, pw = padding
    if ph or pw:
        x = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    windows = xp.lib.stride_tricks.sliding_window_view(x, kernel, axis=(2, 3))
    return windows[:, :, ::stride[0], ::stride[1]]


def im2col(x, kernel, stride, padding):
    """Receptive fields as columns: shape :math:`(N, C k_h k_w, H_o W_o)`, rows ordered ``(c, p, q)``.

    ``cols[n, (c*kh + p)*kw + q, i*W_o + j] = x_padded[n, c, s_h*i + p, s_w*j + q]``. This is the one
    big copy of the forward pass (the window view is rearranged into contiguous memory).
    """
    xp = backend.get_array_module(x)
    windows = sliding_windows(x, kernel, stride, padding)
    n, c, h_out, w_out, kh, kw = windows.shape
    cols = xp.ascontiguousarray(windows.transpose(0, 1, 4, 5, 2, 3))
    return cols.reshape(n, c * kh * kw, h_out * w_out)


def _canvas_slices(n_out: int, size: int, offset: int, stride: int) -> tuple[slice, slice]:
    """Along one axis: where ``gy[i]`` lands on the canvas (``offset + i*stride``), and which ``i`` land.

    Outputs that would fall outside ``[0, size)`` read only zero padding, so their gradient reaches
    no input pixel and is dropped.
    """
    first = max(0, -(offset // stride))              # smallest i with offset + i*stride >= 0
    last = min(n_out, -(-(size - offset) // stride))  # one past the largest i with position < size
    if last <= first:
        return slice(0, 0), slice(0, 0)
    start = offset + first * stride
    return slice(start, start + (last - first - 1) * stride + 1, stride), slice(first, last)


def gradient_canvas(gy, input_hw, kernel, stride, padding):
    r"""The output gradient spread out so that backward-data is a plain stride-1 correlation.

    Returns :math:`G` of shape :math:`(N, O, H + k_h - 1, W + k_w - 1)`, zero except
    :math:`G_{n,o,\,s_h i + k_h - 1 - p_h,\; s_w j + k_w - 1 - p_w} = \bar y_{n,o,i,j}`
    ("dilated by the stride, padded by :math:`k - 1 - p`"). Then, for every input pixel,

    .. math::  \bar x_{n,c,h,w} = \sum_{o,p',q'} G_{n,o,h+p',w+q'}\; w_{o,c,k_h-1-p',k_w-1-q'}

    which is the gather formula of the module docstring with :math:`p' = k_h - 1 - p`: a window of
    :math:`G` at :math:`(h, w)` holds, tap by tap, the output gradients that read pixel :math:`(h, w)`.
    """
    xp = backend.get_array_module(gy)
    n, o, h_out, w_out = gy.shape
    size = (input_hw[0] + kernel[0] - 1, input_hw[1] + kernel[1] - 1)
    rows = _canvas_slices(h_out, size[0], kernel[0] - 1 - padding[0], stride[0])
    cols = _canvas_slices(w_out, size[1], kernel[1] - 1 - padding[1], stride[1])
    canvas = xp.zeros((n, o) + size, dtype=gy.dtype)
    canvas[:, :, rows[0], cols[0]] = gy[:, :, rows[1], cols[1]]
    return canvas


def correlate(x, weight, stride, padding):
    r""":math:`y_{n,o,i,j} = \sum_{c,p,q} w_{o,c,p,q} \tilde x_{n,c,s_h i+p,s_w j+q}` as im2col + one matmul."""
    n, (o, _, kh, kw) = x.shape[0], weight.shape
    h_out = conv_output_size(x.shape[2], kh, stride[0], padding[0])
    w_out = conv_output_size(x.shape[3], kw, stride[1], padding[1])
    y = weight.reshape(o, -1) @ im2col(x, (kh, kw), stride, padding)  # (O, CKK) @ (N, CKK, L)
    return y.reshape(n, o, h_out, w_out)


# ----------------------------------------------------------------------------- the reference kernels
@backend.register("conv2d", "numpy", device="cpu")
class Im2colConv2d:
    """The NumPy reference of conv2d (also runs on CuPy arrays, through ``xp``).

    The contract every registered conv2d implementation follows (``stride``/``padding`` are int pairs;
    no bias, the op adds it):
    ``forward(x, w, stride, padding) -> y``,
    ``backward_data(gy, w, x_shape, stride, padding) -> gx``,
    ``backward_weight(gy, x, w_shape, stride, padding) -> gw``;
    optionally ``backward(gy, x, w, stride, padding) -> (gx, gw)``, for when both gradients are
    wanted and computing them together saves work (:func:`conv2d_gradients` calls it).
    """

    @staticmethod
    def forward(x, w, stride, padding):
        r""":math:`Y_n = W_{\mathrm{mat}} X^{\mathrm{col}}_n`."""
        return correlate(x, w, stride, padding)

    @staticmethod
    def backward_data(gy, w, x_shape, stride, padding):
        """col2im as a gather: the gradient canvas correlated (stride 1, no padding) with the kernel
        flipped in space and with in/out channels swapped, :math:`w'_{c,o,p',q'} = w_{o,c,k_h-1-p',k_w-1-q'}`.

        For stride > 1 most of the canvas is zeros (3/4 of it at stride 2): simple, not frugal.
        """
        kernel = w.shape[2:]
        flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
        canvas = gradient_canvas(gy, x_shape[2:], kernel, stride, padding)
        return correlate(canvas, flipped, (1, 1), (0, 0))

    @staticmethod
    def backward_weight(gy, x, w_shape, stride, padding):
        r""":math:`\bar W_{\mathrm{mat}} = \sum_n \bar Y_n (X^{\mathrm{col}}_n)^\top` (im2col recomputed,
        not kept from the forward, to save memory)."""
        n, o = gy.shape[:2]
        cols = im2col(x, w_shape[2:], stride, padding)                   # (N, CKK, L)
        per_sample = gy.reshape(n, o, -1) @ cols.transpose(0, 2, 1)       # (N, O, CKK)
        return per_sample.sum(axis=0).reshape(w_shape)


# ----------------------------------------------------------------------------- the op
def _check_conv2d(x, w, b):
    """Shape and dtype errors a person can act on."""
    check_4d("conv2d", x)
    if w.ndim != 4:
        raise ValueError(f"conv2d: weight must be 4-D (out_channels, in_channels, kh, kw), got shape "
                         f"{tuple(w.shape)}")
    if x.shape[1] == 0:
        raise ValueError(f"conv2d: input shape {tuple(x.shape)} has no channels, so there is nothing to convolve; "
                         "give the layer at least one input channel")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"conv2d: input shape {tuple(x.shape)} has {x.shape[1]} channels but weight shape "
                         f"{tuple(w.shape)} expects {w.shape[1]}: dimension 1 of the input must equal "
                         "dimension 1 of the weight; fix in_channels of the layer or the input")
    check_bias_and_dtypes("conv2d", x, w, b, "output channel")


class Conv2d(Function):
    r"""2-D convolution (cross-correlation), NCHW, with optional bias.

    **Forward.** With :math:`\tilde x` the zero-padded input,

    .. math::  y_{n,o,i,j} = b_o + \sum_{c=0}^{C-1} \sum_{p=0}^{k_h-1} \sum_{q=0}^{k_w-1}
               w_{o,c,p,q}\; \tilde x_{n,c,\, s_h i + p,\, s_w j + q}

    or, with im2col, :math:`Y_n = W_{\mathrm{mat}} X^{\mathrm{col}}_n + b\,\mathbf 1^\top`.

    **Backward-weight.** :math:`y` is linear in :math:`w`, with
    :math:`\partial y_{n,o,i,j} / \partial w_{o,c,p,q} = \tilde x_{n,c,s_h i+p,s_w j+q}`, so

    .. math::  \bar w_{o,c,p,q} = \sum_{n,i,j} \bar y_{n,o,i,j}\; \tilde x_{n,c,\,s_h i+p,\,s_w j+q},
               \qquad \bar W_{\mathrm{mat}} = \sum_n \bar Y_n \,(X^{\mathrm{col}}_n)^\top,
               \qquad \bar b_o = \sum_{n,i,j} \bar y_{n,o,i,j}.

    **Backward-data.** :math:`\partial y_{n,o,i,j} / \partial x_{n,c,h,w} = w_{o,c,p,q}` when
    :math:`h = s_h i + p - p_h` and :math:`w = s_w j + q - p_w`, else 0. Summing over everything
    that touched the pixel (a gather),

    .. math::  \bar x_{n,c,h,w} = \sum_{o,p,q} w_{o,c,p,q}\;
               \bar y_{n,o,\,(h + p_h - p)/s_h,\,(w + p_w - q)/s_w}

    over the taps with integer, in-range indices. Spreading :math:`\bar y` on a canvas
    (:func:`gradient_canvas`) turns this into the forward formula again: a stride-1 correlation with
    the spatially flipped kernel and channels swapped — the "transposed convolution".

    The kernel math is delegated to a registered implementation (``backend.lookup("conv2d", ...)``),
    kept in ``ctx`` so that backward runs on the same one.
    """

    @staticmethod
    def forward(ctx, x, w, b=None, stride=1, padding=0, impl=None):
        _check_conv2d(x, w, b)
        stride, padding = pair(stride, "conv2d", "stride", 1), pair(padding, "conv2d", "padding", 0)
        check_window_fits("conv2d", x.shape, w.shape[2:], padding)
        ctx.impl_name, ctx.impl = backend.lookup("conv2d", x, impl)
        ctx.stride, ctx.padding = stride, padding
        ctx.save_for_backward(x, w)
        y = ctx.impl.forward(x, w, stride, padding)
        return y if b is None else y + b.reshape(1, -1, 1, 1)

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        need_x, need_w, need_b = (ctx.needs_input_grad + (False,) * 3)[:3]
        gx, gw = conv2d_gradients(ctx.impl, gy, x, w, ctx.stride, ctx.padding, need_x, need_w)
        gb = gy.sum(axis=(0, 2, 3)) if need_b else None
        return gx, gw, gb

    @staticmethod
    def backward_graph(ctx, gy):
        """The same gradients as differentiable ops (:class:`Conv2dBackwardData`,
        :class:`Conv2dBackwardWeight`), for ``create_graph``."""
        x, w = ctx.saved_tensors
        need_x, need_w, need_b = (ctx.needs_input_grad + (False,) * 3)[:3]
        gx = _backward_data(gy, w, x.shape, ctx) if need_x else None
        gw = _backward_weight(gy, x, w.shape, ctx) if need_w else None
        gb = gy.sum(axis=(0, 2, 3)) if need_b else None
        return gx, gw, gb


# ----------------------------------------------------------------------------- double backward
# conv2d's two gradients are ops of their own, whose gradients are again conv2d and these two: the
# family is closed, so gradients of any order go through the same registered kernels.
class Conv2dBackwardData(Function):
    r"""conv2d's backward-data :math:`\bar x = D(\bar y, w)` (the transposed convolution) as an op.

    **Backward.** :math:`D` is linear in each argument and is the adjoint of conv2d in its input:
    :math:`\langle D(\bar y, w), u \rangle = \langle \bar y, \mathrm{conv}(u, w) \rangle`. So for an
    incoming :math:`\bar{\bar x}`: :math:`\bar{\bar y} = \mathrm{conv}(\bar{\bar x}, w)` and
    :math:`\bar w = W(\bar y, \bar{\bar x})`, conv2d's backward-weight with :math:`\bar{\bar x}` in
    the place of the input.
    """

    @staticmethod
    def forward(ctx, gy, w, x_shape=None, stride=(1, 1), padding=(0, 0), impl=None):
        _keep_geometry(ctx, impl, stride, padding, gy, w)
        return ctx.impl.backward_data(gy, w, x_shape, stride, padding)

    @staticmethod
    def backward(ctx, g):
        gy, w = ctx.saved_tensors
        return (_convolve(g, w, ctx) if ctx.needs_input_grad[0] else None,
                _backward_weight(gy, g, w.shape, ctx) if ctx.needs_input_grad[1] else None)

    backward_graph = backward


class Conv2dBackwardWeight(Function):
    r"""conv2d's backward-weight :math:`\bar w = W(\bar y, x)` as an op.

    **Backward.** :math:`W` is linear in each argument, with
    :math:`\langle W(\bar y, x), v \rangle = \langle \bar y, \mathrm{conv}(x, v) \rangle`. So for an
    incoming :math:`\bar{\bar w}`: :math:`\bar{\bar y} = \mathrm{conv}(x, \bar{\bar w})` and
    :math:`\bar x = D(\bar y, \bar{\bar w})`, conv2d's backward-data with :math:`\bar{\bar w}` as kernel.
    """

    @staticmethod
    def forward(ctx, gy, x, w_shape=None, stride=(1, 1), padding=(0, 0), impl=None):
        _keep_geometry(ctx, impl, stride, padding, gy, x)
        return ctx.impl.backward_weight(gy, x, w_shape, stride, padding)

    @staticmethod
    def backward(ctx, g):
        gy, x = ctx.saved_tensors
        return (_convolve(x, g, ctx) if ctx.needs_input_grad[0] else None,
                _backward_data(gy, g, x.shape, ctx) if ctx.needs_input_grad[1] else None)

    backward_graph = backward


def _keep_geometry(ctx, impl, stride, padding, *arrays) -> None:
    """Save ``arrays`` and what the backward of a conv2d gradient op needs: the kernels, stride, padding."""
    ctx.impl_name, ctx.impl = backend.lookup("conv2d", arrays[0], impl)
    ctx.stride, ctx.padding = stride, padding
    ctx.save_for_backward(*arrays)


def _any_tensor(*values) -> bool:
    return any(isinstance(v, Tensor) for v in values)


def _convolve(x, w, ctx):
    """conv2d without bias, with ``ctx``'s stride, padding and kernels: differentiable on Tensors."""
    if _any_tensor(x, w):
        return Conv2d.apply(x, w, None, stride=ctx.stride, padding=ctx.padding, impl=ctx.impl_name)
    return ctx.impl.forward(x, w, ctx.stride, ctx.padding)


def _backward_data(gy, w, x_shape, ctx):
    if _any_tensor(gy, w):
        return Conv2dBackwardData.apply(gy, w, x_shape=tuple(x_shape), stride=ctx.stride, padding=ctx.padding,
                                        impl=ctx.impl_name)
    return ctx.impl.backward_data(gy, w, x_shape, ctx.stride, ctx.padding)


def _backward_weight(gy, x, w_shape, ctx):
    if _any_tensor(gy, x):
        return Conv2dBackwardWeight.apply(gy, x, w_shape=tuple(w_shape), stride=ctx.stride, padding=ctx.padding,
                                          impl=ctx.impl_name)
    return ctx.impl.backward_weight(gy, x, w_shape, ctx.stride, ctx.padding)


def conv2d_gradients(kernels, gy, x, w, stride, padding, need_input=True, need_weight=True):
    """``(gx, gw)`` from the conv2d implementation ``kernels``, None where not needed: both at once
    through its ``backward`` when it has one, else through ``backward_data`` and ``backward_weight``."""
    if need_input and need_weight and hasattr(kernels, "backward"):
        return kernels.backward(gy, x, w, stride, padding)
    gx = kernels.backward_data(gy, w, x.shape, stride, padding) if need_input else None
    gw = kernels.backward_weight(gy, x, w.shape, stride, padding) if need_weight else None
    return gx, gw


def conv2d(x, weight, bias=None, stride=1, padding=0, impl=None):
    """2-D convolution of ``x`` (N, C, H, W) with ``weight`` (O, C, kh, kw), PyTorch's signature.

    ``stride`` and ``padding`` are ints or ``(vertical, horizontal)`` pairs; ``impl`` names a
    registered implementation (``backend.available("conv2d")``), None for the device's default.
    """
    return Conv2d.apply(x, weight, bias, stride=stride, padding=padding, impl=impl)
