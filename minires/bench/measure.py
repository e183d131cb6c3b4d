"""Time minires on a device ("cpu" or "cuda"): one conv implementation on one layer shape, and one
training step of a model (forward, cross-entropy, backward, SGD with momentum and weight decay)."""
from __future__ import annotations

import time

import numpy as np

from .. import backend
from ..functional.conv import conv2d_gradients
from .cost import ConvShape
from .timing import median_seconds


def synchronizer(device: str):
    """A function that waits until ``device`` has finished its queued work."""
    if backend.parse_device(device) == "cpu":
        return lambda: None
    return backend.cupy_or_none().cuda.Device().synchronize


def random_array(shape, device: str, seed: int, dtype="float32"):
    rng = np.random.default_rng(seed)
    return backend.to_device(rng.standard_normal(shape).astype(dtype), device)


def time_conv(shape: ConvShape, device: str, repeat: int, warmup: int, impl: str) -> tuple[float, float]:
    """``(forward, backward)`` seconds of conv implementation ``impl`` (backward = the gradients a
    training step asks for: data and weight, only the weight's for the network's first conv), calling
    the kernels directly (no autograd bookkeeping).

    As in a network, the input and the output gradient are laid out in memory the way the
    implementation lays out its own outputs (the CPU conv's are channels last), except the input of
    a network's first conv: the images, NCHW.
    """
    x, w = random_array(shape.x_shape, device, 0), random_array(shape.w_shape, device, 1)
    kernels = backend.lookup("conv2d", x, impl)[1]
    stride, padding = (shape.stride,) * 2, (shape.padding,) * 2
    y = kernels.forward(x, w, stride, padding)
    gy = laid_out_like(y, random_array(shape.y_shape, device, 2))
    if not shape.first:
        x = laid_out_like(y, x)
    sync = synchronizer(device)

    def backward():
        conv2d_gradients(kernels, gy, x, w, stride, padding, need_input=not shape.first)

    forward_s = median_seconds(lambda: kernels.forward(x, w, stride, padding), sync, repeat, warmup)
    return forward_s, median_seconds(backward, sync, repeat, warmup)


def laid_out_like(template, a):
    """A copy of ``a`` whose memory layout (axis order) is ``template``'s."""
    out = backend.get_array_module(template).empty_like(template, shape=a.shape)
    out[...] = a
    return out


def training_step(model_name: str, batch: int, device: str) -> "PhasedStep":
    """A :class:`PhasedStep`, called to run one training step of ``model_name`` on random 32x32 images
    (forward, cross-entropy, backward, SGD with lr 0.1, momentum 0.9, weight decay 1e-4, as in the paper)."""
    from .. import models, optim
    from ..autograd import Tensor
    from ..functional import cross_entropy

    model = models.get_model(model_name).to(device)
    model.train()
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    images = Tensor(random_array((batch, 3, 32, 32), device, 3))
    labels = backend.to_device(np.random.default_rng(4).integers(0, 10, batch), device)
    return PhasedStep(model, optimizer, images, labels, cross_entropy)


PHASES = ("zero_grad", "forward", "loss", "backward", "optimizer")


class PhasedStep:
    """One training step of ``model`` (``step()``): ``optimizer.zero_grad()``, the forward, the loss
    ``loss_fn(output, labels)``, its backward and ``optimizer.step()``. ``timed()`` runs one and
    returns the wall-clock seconds of each of :data:`PHASES` (on the CPU, where nothing runs
    asynchronously). Framework-neutral: ``benchmarks/torch_reference.py`` builds PyTorch's with it."""

    def __init__(self, model, optimizer, images, labels, loss_fn):
        self.model, self.optimizer, self.images, self.labels, self.loss_fn = model, optimizer, images, labels, loss_fn

    def __call__(self) -> None:
        self.optimizer.zero_grad()
        self.loss_fn(self.model(self.images), self.labels).backward()
        self.optimizer.step()

    def timed(self) -> dict[str, float]:
        marks = [time.perf_counter()]
        self.optimizer.zero_grad()
        marks.append(time.perf_counter())
        output = self.model(self.images)
        marks.append(time.perf_counter())
        loss = self.loss_fn(output, self.labels)
        marks.append(time.perf_counter())
        loss.backward()
        marks.append(time.perf_counter())
        self.optimizer.step()
        marks.append(time.perf_counter())
        return {phase: end - start for phase, start, end in zip(PHASES, marks, marks[1:])}


def interleaved_step_medians(step, turns: dict, rounds: int) -> dict[str, float]:
    """``{name: median seconds of a step}`` (wall clock) of steps taking turns: for each ``name``,
    ``turns[name]()`` sets that variant up, then two steps run; ``rounds`` times, after one round
    that warms up (compilation, buffers) and is not counted. Each variant meets the same machine."""
    times = {name: [] for name in turns}
    for round_ in range(rounds + 1):
        for name, set_up in turns.items():
            set_up()
            for _ in range(2):
                start = time.perf_counter()
                step()
                if round_:
                    times[name].append(time.perf_counter() - start)
    return {name: float(np.median(seconds)) for name, seconds in times.items()}


def time_training_step(model_name: str, batch: int, device: str, repeat: int, warmup: int,
                       conv_impl: str | None = None) -> float:
    """Seconds per :func:`training_step` of ``model_name``, with ``conv_impl`` as the device's conv2d
    implementation (None: the default)."""
    step = training_step(model_name, batch, device)
    if conv_impl is None:
        return median_seconds(step, synchronizer(device), repeat, warmup)
    with backend.using("conv2d", conv_impl):
        return median_seconds(step, synchronizer(device), repeat, warmup)
