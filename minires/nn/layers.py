"""The layers of a residual network, with PyTorch's names, arguments, parameter layouts and defaults.

Each layer holds its parameters and calls one op of :mod:`minires.functional`; the math lives
there. A layer's ``output_shape(input_shape)`` checks the input (raising :class:`LayerError`, which
names the layer by its place in the model) and infers the output shape; ``macs`` counts the
multiply-accumulates of the conv and fully connected layers (the paper's "FLOPs").
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from .. import functional as F
from ..autograd import Tensor
from ..functional.conv import pair
from ..random import default_generator
from . import init
from .module import LayerError, Module, Parameter


def _check_dimensions(layer, shape, ndims, layout) -> None:
    """Raise :class:`LayerError` unless ``shape`` has one of ``ndims`` dimensions, saying which it must have."""
    if len(shape) not in ndims:
        dims = " or ".join(f"{n}-D" for n in ndims)
        raise LayerError(layer, f"expected input of shape {layout}: the input must be {dims} {layout}, got shape "
                                f"{tuple(shape)} ({len(shape)}-D); for a single example add the batch axis with "
                                "x.reshape(1, *x.shape)")


def _check_input(layer, shape, ndims, channels, layout) -> None:
    """Raise :class:`LayerError` unless ``shape`` has one of ``ndims`` dimensions and ``channels`` in axis 1."""
    _check_dimensions(layer, shape, ndims, layout)
    if shape[1] != channels:
        raise LayerError(layer, f"expected input of shape {layout} with {channels} in axis 1, got shape "
                                f"{tuple(shape)}; give it an input of that shape, or build the layer for the "
                                "input you have (a model: pass in_channels=)")


def _window_output(layer, shape, kernel, stride, padding) -> tuple[int, int]:
    """``(H_out, W_out) = floor((H + 2p - k) / s) + 1`` per axis; an error when the window does not fit."""
    size = tuple(shape[-2:])
    out = tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, kernel, stride, padding))
    if min(out) < 1:
        raise LayerError(layer, f"input of spatial size {size[0]}x{size[1]} (padding {padding}) is smaller than "
                                f"the {kernel[0]}x{kernel[1]} window; the input image is too small for this "
                                "network, give it a larger one")
    return out


def _reset_like_torch(weight: Parameter, bias: Parameter | None) -> None:
    """PyTorch's default for Conv2d and Linear: He uniform with a = sqrt(5), bias U(+-1/sqrt(fan_in))
    (zero with no inputs: fan_in = 0)."""
    init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in = init.calculate_fan_in_and_fan_out(weight)[0]
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        init.uniform_(bias, -bound, bound)


class Conv2d(Module):
    """2-D convolution (cross-correlation) of an ``(N, C_in, H, W)`` input; weight ``(C_out, C_in, kh, kw)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, bias: bool = True):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "Conv2d", "kernel_size", 1)
        self.stride, self.padding = pair(stride, "Conv2d", "stride", 1), pair(padding, "Conv2d", "padding", 0)
        self.weight = Parameter(np.empty((self.out_channels, self.in_channels) + self.kernel_size, np.float32))
        self.bias = Parameter(np.empty(self.out_channels, np.float32)) if bias else None
        _reset_like_torch(self.weight, self.bias)

    def output_shape(self, input_shape):
        _check_input(self, input_shape, (4,), self.in_channels, "(N, C, H, W)")
        return (input_shape[0], self.out_channels) + _window_output(
            self, input_shape, self.kernel_size, self.stride, self.padding)

    def macs(self, input_shape, output_shape) -> int:
        """One multiply-accumulate per output element per weight it sees: ``N C_out H_out W_out C_in kh kw``."""
        return math.prod(output_shape) * self.in_channels * math.prod(self.kernel_size)

    def forward(self, x):
        self.output_shape(x.shape)
        return F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}" + ("" if self.bias is not None else ", bias=False"))


class Linear(Module):
    """Fully connected layer ``y = x W^T + b`` on ``(N, in_features)``; weight ``(out_features, in_features)``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = Parameter(np.empty((self.out_features, self.in_features), np.float32))
        self.bias = Parameter(np.empty(self.out_features, np.float32)) if bias else None
        _reset_like_torch(self.weight, self.bias)

    def output_shape(self, input_shape):
        _check_input(self, input_shape, (2,), self.in_features, "(N, in_features)")
        return (input_shape[0], self.out_features)

    def macs(self, input_shape, output_shape) -> int:
        return math.prod(output_shape) * self.in_features

    def forward(self, x):
        self.output_shape(x.shape)
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class _BatchNorm(Module):
    """Batch normalization with PyTorch's semantics (see :func:`minires.functional.batch_norm`).

    Training: normalise with the batch's biased variance and update ``running_mean``/``running_var``
    (unbiased variance) with ``momentum``; ``num_batches_tracked`` counts the updates
    (``momentum=None`` makes the running statistics a cumulative average). Eval: use the running
    statistics. Buffers and parameters have PyTorch's names, so state dicts move across.
    """

    ndims: tuple = ()
    layout = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True):
        super().__init__()
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Parameter(np.ones(num_features, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(num_features, np.float32)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, np.float32)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, np.float32)))
            self.register_buffer("num_batches_tracked", Tensor(np.array(0, np.int64)))

    def output_shape(self, input_shape):
        _check_input(self, input_shape, self.ndims, self.num_features, self.layout)
        return tuple(input_shape)

    def forward(self, x):
        self.output_shape(x.shape)
        momentum = self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked.data)
        use_batch_stats = self.training or not self.track_running_stats
        running_mean = self.running_mean if self.track_running_stats else None
        running_var = self.running_var if self.track_running_stats else None
        return self._batch_norm(x, running_mean, running_var, self.weight, self.bias, use_batch_stats,
                                0.0 if momentum is None else momentum, self.eps)

    def _batch_norm(self, *args):
        """The op that normalizes (``minires.distributed.SyncBatchNorm`` puts a synchronized one here)."""
        return F.batch_norm(*args)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm2d(_BatchNorm):
    """Batch normalization over ``(N, C, H, W)``: statistics per channel over N, H and W."""

    ndims, layout = (4,), "(N, C, H, W)"


class BatchNorm1d(_BatchNorm):
    """Batch normalization over ``(N, C)`` or ``(N, C, L)``: statistics per feature over N (and L)."""

    ndims, layout = (2, 3), "(N, C) or (N, C, L)"


class ReLU(Module):
    """``max(x, 0)`` elementwise."""

    def forward(self, x):
        return F.relu(x)


class _Pool2d(Module):
    """Shared by the fixed-window pools: ``kernel_size``, ``stride`` (default: the kernel), ``padding``."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        layer = type(self).__name__
        self.kernel_size = pair(kernel_size, layer, "kernel_size", 1)
        self.stride = pair(kernel_size if stride is None else stride, layer, "stride", 1)
        self.padding = pair(padding, layer, "padding", 0)

    def output_shape(self, input_shape):
        _check_dimensions(self, input_shape, (4,), "(N, C, H, W)")
        return tuple(input_shape[:2]) + _window_output(self, input_shape, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """The maximum of each window (the ImageNet ResNet's stem uses 3x3, stride 2, padding 1)."""

    def forward(self, x):
        self.output_shape(x.shape)
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """The mean of each window (zero padding counts toward the mean, PyTorch's default)."""

    def forward(self, x):
        self.output_shape(x.shape)
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed ``output_size``; ``AdaptiveAvgPool2d(1)`` is global average pooling."""

    def __init__(self, output_size=1):
        super().__init__()
        self.output_size = pair(output_size, "AdaptiveAvgPool2d", "output_size", 1)

    def output_shape(self, input_shape):
        _check_dimensions(self, input_shape, (4,), "(N, C, H, W)")
        return tuple(input_shape[:2]) + self.output_size

    def forward(self, x):
        self.output_shape(x.shape)
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class Dropout(Module):
    r"""Training: zero each element with probability ``p`` and scale the survivors by :math:`1/(1-p)`
    (so the expected output equals the input); eval: the identity. Masks come from the default
    generator (:func:`minires.manual_seed`)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = default_generator().random(x.shape) >= self.p
        mask = backend.to_device((keep / (1 - self.p)).astype(x.dtype), x.device)
        return x * Tensor._wrap(mask)

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(Module):
    """Merge the axes from ``start_dim`` on: ``(N, C, 1, 1) -> (N, C)``."""

    def __init__(self, start_dim: int = 1):
        super().__init__()
        self.start_dim = start_dim

    def forward(self, x):
        return F.flatten(x, self.start_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}"


class Identity(Module):
    """Returns its input unchanged (a placeholder, or a point to hang a hook on)."""

    def forward(self, x):
        return x
