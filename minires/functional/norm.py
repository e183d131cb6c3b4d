r"""Batch normalisation (Ioffe & Szegedy, 2015) with PyTorch's semantics.

Statistics are per channel (axis 1) over every other axis: for an input of shape (N, C, H, W) each
channel has :math:`m = N H W` values, for (N, C) it has :math:`m = N`.

* **Training** normalises with the batch's mean and *biased* variance and, when running buffers are
  given, updates them in place with the *unbiased* variance (PyTorch's convention):
  :math:`\hat\mu \leftarrow (1-p)\,\hat\mu + p\,\mu`,
  :math:`\hat\sigma^2 \leftarrow (1-p)\,\hat\sigma^2 + p\,\tfrac{m}{m-1}\sigma^2` with momentum
  :math:`p`.
* **Evaluation** normalises with the running buffers: a fixed per-channel affine map.

The training-mode kernels are looked up in the backend registry (op ``"batch_norm"``), so a fused
GPU kernel can replace the NumPy reference. An implementation is any object with

``forward_train(x, weight, bias, eps) -> (y, mean, var, invstd)``
    per-channel biased ``mean`` and ``var`` over all axes but 1, ``invstd`` :math:`=(\sigma^2+\epsilon)^{-1/2}`,
    all of shape (C,); ``weight``/``bias`` may be None (meaning 1 and 0);
``backward(gy, x, weight, mean, invstd) -> (gx, gweight, gbias)``
    the closed form derived in :class:`BatchNormTrain` (``weight`` may be None).

registered with ``backend.register("batch_norm", name, device=...)(Impl)``. The running-stat update
is :func:`update_running_stats`, here in the generic code, so every implementation shares it; an
implementation may provide its own ``update_running_stats`` with the same arguments (the GPU's does
it in one launch instead of seven array operations).
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..autograd import Function, Tensor
from .elementwise import array_of as _array

_SPATIAL_LETTERS = "hwd"


def _channel_view(v, ndim):
    """A (C,) vector shaped (1, C, 1, ...) so that it broadcasts along axis 1 of an ndim-array."""
    return v.reshape(_channel_shape(ndim))


def _channel_sum(a, b=None):
    r"""Per-channel :math:`\sum a` or :math:`\sum a\,b` over all axes but 1, in one pass, no temporary.

    On NumPy, float32 is summed in float64: einsum adds the values of a channel one after another
    when they are not contiguous (channels-last memory, as the CPU conv returns), and a float32
    running sum over :math:`10^5` values would then keep only about four digits.
    """
    letters = "nc" + _SPATIAL_LETTERS[:a.ndim - 2]
    xp = backend.get_array_module(a)
    accumulate = "float64" if xp is np and a.dtype.itemsize < 8 else None
    operands = (a,) if b is None else (a, b)
    spec = ",".join([letters] * len(operands)) + "->c"
    return xp.einsum(spec, *operands, dtype=accumulate).astype(a.dtype, copy=False)


def _channel_axes(ndim) -> tuple:
    """The axes the statistics are taken over: all but 1."""
    return (0,) + tuple(range(2, ndim))


def _channel_shape(ndim) -> tuple:
    """``(1, -1, 1, ...)``: the shape that makes a (C,) vector broadcast along axis 1."""
    return (1, -1) + (1,) * (ndim - 2)


def _values_per_channel(shape) -> int:
    """m: how many values each channel's statistics are taken over (all axes but 1)."""
    return math.prod(shape[:1] + shape[2:])


class NumpyBatchNorm:
    """The NumPy reference of the training-mode kernels (also runs on CuPy arrays unchanged)."""

    @staticmethod
    def forward_train(x, weight, bias, eps):
        xp = backend.get_array_module(x)
        m = _values_per_channel(x.shape)
        mean = _channel_sum(x) / m
        y = x - _channel_view(mean, x.ndim)            # centred input; becomes the output in place
        var = _channel_sum(y, y) / m                    # two passes: robust when |mean| >> std
        invstd = 1 / xp.sqrt(var + eps)
        scale = invstd if weight is None else weight * invstd
        y *= _channel_view(scale, x.ndim)
        if bias is not None:
            y += _channel_view(bias, x.ndim)
        return y, mean, var, invstd

    @staticmethod
    def backward(gy, x, weight, mean, invstd):
        m = _values_per_channel(x.shape)
        gx = x - _channel_view(mean, x.ndim)            # centred input; becomes gx in place
        gbias = _channel_sum(gy)
        gweight = _channel_sum(gy, gx) * invstd         # sum(gy * xhat)
        # gx = gamma * invstd * (gy - sum(gy)/m - xhat * sum(gy * xhat)/m), xhat = centred * invstd
        gx *= _channel_view(-gweight * invstd / m, x.ndim)
        gx += gy
        gx -= _channel_view(gbias / m, x.ndim)
        gx *= _channel_view(invstd if weight is None else weight * invstd, x.ndim)
        return gx, gweight, gbias


backend.register("batch_norm", "numpy", device="cpu")(NumpyBatchNorm)


class BatchNormTrain(Function):
    r"""Batch normalisation with batch statistics; per channel, over its :math:`m` values :math:`x_i`.

    **Forward**

    .. math::
        \mu = \frac1m \sum_i x_i, \qquad
        \sigma^2 = \frac1m \sum_i (x_i - \mu)^2, \qquad
        s = (\sigma^2 + \epsilon)^{-1/2}, \qquad
        \hat x_i = (x_i - \mu)\, s, \qquad
        y_i = \gamma \hat x_i + \beta .

    **Backward**, step by step. The affine part gives
    :math:`\bar\beta = \sum_i \bar y_i`, :math:`\bar\gamma = \sum_i \bar y_i \hat x_i` and
    :math:`\bar{\hat x}_i = \gamma \bar y_i`. Every :math:`\hat x_i` depends on every :math:`x_j`
    through :math:`\mu` and :math:`s`:

    .. math::
        \frac{\partial \mu}{\partial x_j} = \frac1m, \qquad
        \frac{\partial \sigma^2}{\partial x_j} = \frac2m (x_j - \mu)
        \quad\text{(the } \mu \text{ term vanishes since } \textstyle\sum_i (x_i - \mu) = 0\text{)}, \qquad
        \frac{\partial s}{\partial x_j} = -\tfrac12 s^3 \frac{\partial \sigma^2}{\partial x_j}
        = -\frac{s^2}{m}\, \hat x_j ,

    .. math::
        \frac{\partial \hat x_i}{\partial x_j}
        = s\Big(\delta_{ij} - \frac1m\Big) + (x_i - \mu)\frac{\partial s}{\partial x_j}
        = \frac{s}{m}\big(m\,\delta_{ij} - 1 - \hat x_i \hat x_j\big).

    Contracting with :math:`\bar{\hat x}_i = \gamma \bar y_i`:

    .. math::
        \bar x_j = \sum_i \bar{\hat x}_i \frac{\partial \hat x_i}{\partial x_j}
        = \frac{\gamma s}{m}\Big(m\,\bar y_j - \sum_i \bar y_i - \hat x_j \sum_i \bar y_i \hat x_i\Big)
        = \frac{\gamma s}{m}\big(m\,\bar y_j - \bar\beta - \hat x_j\,\bar\gamma\big).

    So :math:`\bar x` is :math:`\bar y` with its mean and its projection on :math:`\hat x` removed:
    per channel, :math:`\sum_j \bar x_j = 0` and :math:`\sum_j \bar x_j \hat x_j = 0` (the output does
    not change when the input is shifted or scaled). The two sums are the same ones that give
    :math:`\bar\beta` and :math:`\bar\gamma`, so a fused kernel needs a single reduction pass over
    :math:`(\bar y, x)` and one elementwise pass.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean=None, running_var=None, momentum=0.1, eps=1e-5,
                impl=None):
        _, kernels = backend.lookup("batch_norm", x, impl)
        y, mean, var, invstd = kernels.forward_train(x, weight, bias, eps)
        if running_mean is not None:
            update = getattr(kernels, "update_running_stats", update_running_stats)
            update(running_mean, running_var, mean, var, momentum, _values_per_channel(x.shape))
        ctx.kernels, ctx.eps = kernels, eps
        ctx.save_for_backward(x, weight, mean, invstd)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, weight, mean, invstd = ctx.saved_tensors
        gx, gweight, gbias = ctx.kernels.backward(gy, x, weight, mean, invstd)
        return (gx if ctx.needs_input_grad[0] else None,
                gweight if ctx.needs_input_grad[1] else None,
                gbias if ctx.needs_input_grad[2] else None)

    @staticmethod
    def backward_graph(ctx, gy):
        r"""The closed form above with differentiable Tensor ops, for ``create_graph``: :math:`\mu`,
        :math:`s` and :math:`\hat x` are recomputed from :math:`x` in the graph (the saved ones are
        constants), so second derivatives see how they depend on :math:`x`."""
        x, weight, _, _ = ctx.saved_tensors
        axes, view, m = _channel_axes(x.ndim), _channel_shape(x.ndim), _values_per_channel(x.shape)
        centered = x - x.mean(axis=axes, keepdims=True)
        s = ((centered * centered).mean(axis=axes, keepdims=True) + ctx.eps) ** -0.5
        x_hat = centered * s
        gbias, gweight = gy.sum(axis=axes), (gy * x_hat).sum(axis=axes)
        scale = s if weight is None else weight.reshape(view) * s
        gx = scale * (gy - gbias.reshape(view) / m - x_hat * gweight.reshape(view) / m)
        return gx, gweight, gbias


def update_running_stats(running_mean, running_var, mean, var, momentum, m):
    r"""In place (the buffers keep their identity and dtype): :math:`\hat\mu \leftarrow (1-p)\,\hat\mu + p\,\mu`,
    :math:`\hat\sigma^2 \leftarrow (1-p)\,\hat\sigma^2 + p\,\tfrac{m}{m-1}\sigma^2` (``var`` is the batch's
    biased variance over ``m`` values per channel)."""
    _blend_into(running_mean, mean, momentum)
    _blend_into(running_var, var * (m / (m - 1)), momentum)


def _blend_into(running, batch, momentum):
    r"""In place: :math:`r \leftarrow (1 - p)\, r + p\, b`."""
    running *= 1 - momentum
    running += momentum * batch


class BatchNormEval(Function):
    r"""Batch normalisation with fixed running statistics :math:`\hat\mu, \hat\sigma^2`: an affine map.

    Forward :math:`s = (\hat\sigma^2 + \epsilon)^{-1/2}`, :math:`\hat x = (x - \hat\mu)\, s`,
    :math:`y = \gamma \hat x + \beta`.
    Backward (:math:`\hat\mu, \hat\sigma^2` are constants): :math:`\bar x = \gamma s\, \bar y`,
    :math:`\bar\gamma = \sum \bar y\, \hat x`, :math:`\bar\beta = \sum \bar y` (sums over all axes but 1).

    The forward is :math:`y = x s' + b'`, with :math:`s' = \gamma s` and :math:`b' = \beta - \hat\mu s'`
    folded per channel: two NumPy passes here, or one where the op ``"batch_norm"``'s implementation has
    a ``forward_eval`` (the CPU's ``numba``: the same bits).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean=None, running_var=None, eps=1e-5):
        xp = backend.get_array_module(x)
        invstd = 1 / xp.sqrt(running_var + eps)
        scale = invstd if weight is None else weight * invstd
        shift = -running_mean * scale if bias is None else bias - running_mean * scale
        ctx.save_for_backward(x, weight, running_mean, invstd, scale)
        fast = getattr(backend.lookup("batch_norm", x)[1], "forward_eval", None)     # one pass (the same bits)
        y = None if fast is None else fast(x, scale, shift)
        if y is None:
            y = x * _channel_view(scale, x.ndim)
            y += _channel_view(shift, x.ndim)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, _, running_mean, invstd, scale = ctx.saved_tensors
        gx = gy * _channel_view(scale, x.ndim) if ctx.needs_input_grad[0] else None
        gweight = None
        if ctx.needs_input_grad[1]:
            gweight = _channel_sum(gy, x - _channel_view(running_mean, x.ndim)) * invstd
        gbias = _channel_sum(gy) if ctx.needs_input_grad[2] else None
        return gx, gweight, gbias

    @staticmethod
    def backward_graph(ctx, gy):
        r"""The same on Tensors: :math:`\bar x = \gamma s \bar y` depends on :math:`\gamma` in the graph."""
        x, weight, running_mean, invstd, _ = ctx.saved_tensors
        axes, view = _channel_axes(x.ndim), _channel_shape(x.ndim)
        s = invstd.data.reshape(view)
        gx = gy * (s if weight is None else weight.reshape(view) * s)
        gweight = (gy * ((x - running_mean.data.reshape(view)) * s)).sum(axis=axes)
        return gx, gweight, gy.sum(axis=axes)


def _check_batch_norm_args(x, running_mean, running_var, weight, bias, training):
    if x.ndim not in (2, 3, 4):
        raise ValueError(f"batch_norm: expected an input of shape (N, C), (N, C, L) or (N, C, H, W), "
                         f"got shape {tuple(x.shape)}; reshape it so that channels are axis 1")
    if x.dtype.kind != "f":
        raise TypeError(f"batch_norm: the input must be floating point, got {x.dtype}; use .float()")
    channels = x.shape[1]
    for name, v in [("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var)]:
        if v is not None and tuple(v.shape) != (channels,):
            raise ValueError(f"batch_norm: {name} has shape {tuple(v.shape)} but the input {tuple(x.shape)} "
                             f"has {channels} channels (axis 1); it needs shape ({channels},)")
        if v is not None and v.dtype != x.dtype:
            raise TypeError(f"batch_norm: input dtype {x.dtype} and {name} dtype {v.dtype} differ; cast one to "
                            f"the other, e.g. x.to(dtype='{v.dtype}') or, for a layer, layer.to('{x.dtype}')")
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm: pass both running_mean and running_var, or neither")
    if not training and running_mean is None:
        raise ValueError("batch_norm: evaluation mode (training=False) normalises with running_mean and "
                         "running_var, but they are None; pass them or use training=True")
    if training and _values_per_channel(x.shape) == 1:
        raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input "
                         f"shape {tuple(x.shape)}; use a batch of at least 2 or training=False")


def bump_running_versions(*running) -> None:
    """The op updated these running statistics in place: count it on those that are Tensors (a graph
    that saved them, e.g. an evaluation-mode batch norm, then refuses to run its backward)."""
    for r in running:
        if isinstance(r, Tensor):
            r._bump_version()


def _empty_batch_norm(input, weight, bias):
    """A zero-size batch in training, as PyTorch does it: an empty output, the running statistics left
    as they are, zero gradients for ``weight`` and ``bias``. Written with broadcast ops (their backward
    sums over the empty batch), since there are no batch statistics to take."""
    channel = _channel_shape(_array(input).ndim)
    y = input * (1.0 if weight is None else weight.reshape(*channel))
    return y if bias is None else y + bias.reshape(*channel)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5, *, impl=None):
    r"""Batch normalisation over axis 1 of an (N, C), (N, C, L) or (N, C, H, W) input, as
    ``torch.nn.functional.batch_norm``.

    ``running_mean``/``running_var`` are (C,) arrays or Tensors (or both None); in training they are
    updated in place. ``weight``/``bias`` (:math:`\gamma, \beta`) may be None. ``impl`` names a
    registered training kernel (default: the device's default, see ``backend.available("batch_norm")``).
    """
    _check_batch_norm_args(_array(input), _array(running_mean), _array(running_var), weight, bias, training)
    if training and _array(input).size == 0:
        return _empty_batch_norm(input, weight, bias)
    if training:
        out = BatchNormTrain.apply(input, weight, bias, running_mean=running_mean, running_var=running_var,
                                   momentum=momentum, eps=eps, impl=impl)
        bump_running_versions(running_mean, running_var)
        return out
    return BatchNormEval.apply(input, weight, bias, running_mean=running_mean, running_var=running_var,
                               eps=eps)
