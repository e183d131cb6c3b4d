r"""Weight initialisation, in place, with PyTorch's names and arguments.

He (Kaiming) initialisation keeps the variance of the activations (``mode="fan_in"``) or of the
gradients (``mode="fan_out"``) constant from layer to layer in a ReLU net:

.. math:: \mathrm{std} = \frac{\mathrm{gain}}{\sqrt{\mathrm{fan}}}, \qquad
          \mathrm{gain}_{\mathrm{relu}} = \sqrt 2, \qquad
          \mathrm{fan\_in} = C_\mathrm{in} k_h k_w, \quad \mathrm{fan\_out} = C_\mathrm{out} k_h k_w

The uniform variant draws from :math:`U(-b, b)` with :math:`b = \sqrt 3\,\mathrm{std}` (same variance).
Random draws come from ``generator`` or from :func:`minires.manual_seed`'s default generator.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .. import backend
from ..random import default_generator


def calculate_gain(nonlinearity: str = "leaky_relu", param: float | None = None) -> float:
    """The factor that keeps the variance of a layer's output equal to its input's, after ``nonlinearity``."""
    if nonlinearity in ("linear", "conv2d", "sigmoid", "identity"):
        return 1.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "tanh":
        return 5.0 / 3
    raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}; "
                     "use 'relu', 'leaky_relu', 'tanh' or 'linear'")


def calculate_fan_in_and_fan_out(tensor) -> tuple[int, int]:
    """``(C_in * receptive field, C_out * receptive field)`` for a weight of shape ``(out, in, *kernel)``."""
    if tensor.ndim < 2:
        raise ValueError(f"init: fan in/out need a weight with at least 2 dimensions, got shape {tensor.shape}")
    receptive_field = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


def _fill(tensor, values: np.ndarray):
    tensor.data[...] = backend.to_device(values.astype(tensor.dtype, copy=False), tensor.device)
    tensor._bump_version()
    return tensor


def _draw_dtype(tensor):
    """Draw float32 numbers for float32 weights: half the bytes of float64, and no copy to convert."""
    return np.float32 if tensor.dtype == np.float32 else np.float64


def uniform_(tensor, a: float = 0.0, b: float = 1.0, generator=None):
    rng = generator or default_generator()
    return _fill(tensor, a + (b - a) * rng.random(tensor.shape, dtype=_draw_dtype(tensor)))


def normal_(tensor, mean: float = 0.0, std: float = 1.0, generator=None):
    rng = generator or default_generator()
    return _fill(tensor, mean + std * rng.standard_normal(tensor.shape, dtype=_draw_dtype(tensor)))


def constant_(tensor, value: float):
    return _fill(tensor, np.full(tensor.shape, value))


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def _has_no_elements(tensor) -> bool:
    """Whether ``tensor`` has nothing to initialise; PyTorch's He init then warns and leaves it alone."""
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=3)
        return True
    return False


def _kaiming_std(tensor, a, mode, nonlinearity) -> float:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming init: mode must be 'fan_in' or 'fan_out', not {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return calculate_gain(nonlinearity, a) / math.sqrt(fan_in if mode == "fan_in" else fan_out)


def kaiming_normal_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", generator=None):
    """He normal: :math:`N(0, \\mathrm{std}^2)`, std from the module docstring."""
    if _has_no_elements(tensor):
        return tensor
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity), generator)


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", generator=None):
    """He uniform: :math:`U(-\\sqrt 3\\,\\mathrm{std}, \\sqrt 3\\,\\mathrm{std})`."""
    if _has_no_elements(tensor):
        return tensor
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound, generator)
