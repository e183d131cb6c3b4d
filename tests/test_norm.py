"""Batch normalisation: gradcheck, PyTorch parity, running statistics, the kernel contract, bad input."""
import copy

import numpy as np
import pytest
from conftest import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st

import minires as mr
import minires.functional as F
import minires.nn as nn
from minires import backend
from minires.functional.norm import NumpyBatchNorm

EPS = 1e-5


@st.composite
def cases(draw):
    """A batch-norm problem: (N, C), (N, C, L) or (N, C, H, W) with N >= 2 and odd sizes, random values."""
    batch, channels = draw(st.integers(2, 4), label="N"), draw(st.integers(1, 3), label="C")
    spatial = draw(st.sampled_from([(), (5,), (1, 1), (1, 3), (3, 2), (3, 3)]), label="L or H, W")
    return Case((batch, channels) + spatial, seed=draw(st.integers(0, 2 ** 16), label="seed"),
                noncontiguous=draw(st.booleans(), label="non-contiguous"),
                affine=draw(st.booleans(), label="affine"))


class Case:
    """Float64 arrays for one problem. Each channel gets its own offset and spread, so a per-channel
    bug cannot hide behind identical statistics."""

    def __init__(self, shape, seed=0, noncontiguous=False, affine=True):
        rng = np.random.default_rng(seed)
        channels, per_channel = shape[1], (1, shape[1]) + (1,) * (len(shape) - 2)
        x = rng.standard_normal(shape) * rng.uniform(0.5, 3.0, per_channel) + rng.uniform(-2, 2, per_channel)
        if noncontiguous:  # the same values, stored channel-major: a strided view
            x = np.ascontiguousarray(x.swapaxes(0, 1)).swapaxes(0, 1)
        self.shape, self.x, self.affine = shape, x, affine
        self.weight = rng.uniform(0.5, 1.5, channels) * rng.choice([-1, 1], channels) if affine else None
        self.bias = rng.standard_normal(channels) if affine else None
        self.running_mean = rng.standard_normal(channels)
        self.running_var = rng.uniform(0.5, 2.0, channels)
        self.grad_out = rng.standard_normal(shape)

    def tensors(self):
        """x, weight, bias as float64 leaves (x keeps its strides; None stays None)."""
        return [None if a is None else mr.Tensor(a, requires_grad=True) for a in (self.x, self.weight, self.bias)]

    def running(self):
        return self.running_mean.copy(), self.running_var.copy()


def channel_axes(ndim):
    return (0,) + tuple(range(2, ndim))


def gradcheck_batch_norm(case, training, running):
    x, weight, bias = case.tensors()
    inputs = [t for t in (x, weight, bias) if t is not None]

    def fn(x, weight=None, bias=None):
        return F.batch_norm(x, *running, weight, bias, training=training)

    assert mr.gradcheck(fn, inputs)


@settings(max_examples=20, deadline=None)
@given(case=cases(), track_running=st.booleans())
def test_gradcheck_training(case, track_running):
    gradcheck_batch_norm(case, training=True, running=case.running() if track_running else (None, None))


@settings(max_examples=12, deadline=None)
@given(case=cases())
def test_gradcheck_eval(case):
    gradcheck_batch_norm(case, training=False, running=case.running())


@settings(max_examples=15, deadline=None)
@given(case=cases())
def test_training_input_gradient_sums_to_zero_per_channel(case):
    # The output does not change when a channel's input is shifted, so its input gradient sums to zero.
    # With eps = 0 it does not change under scaling either: the gradient is orthogonal to x_hat.
    axes = channel_axes(len(case.shape))
    for eps in (EPS, 0.0):
        x, weight, bias = case.tensors()
        F.batch_norm(x, None, None, weight, bias, training=True, eps=eps).backward(case.grad_out)
        gx = x.grad.numpy()
        centred, invstd = case.x - case.x.mean(axes, keepdims=True), 1 / np.sqrt(case.x.var(axes) + eps)
        gamma = np.ones(case.shape[1]) if weight is None else np.abs(case.weight)
        rounding = 1e-13 * gamma * invstd * np.abs(case.grad_out).sum(axes)  # size of the cancelling terms
        assert np.all(np.abs(gx.sum(axes)) <= rounding)
    assert np.all(np.abs((gx * centred).sum(axes)) <= rounding * np.abs(centred).max(axes))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@settings(max_examples=10, deadline=None)
@given(case=cases())
def test_matches_pytorch(torch_oracle, training, case):
    torch = torch_oracle
    x, weight, bias = case.tensors()
    running = case.running()
    y = F.batch_norm(x, *running, weight, bias, training=training)
    y.backward(case.grad_out)

    t_x, t_weight, t_bias = [None if a is None else torch.tensor(a, requires_grad=True)
                             for a in (case.x, case.weight, case.bias)]
    t_running = [torch.tensor(a) for a in case.running()]
    t_y = torch.nn.functional.batch_norm(t_x, *t_running, t_weight, t_bias, training=training)
    t_y.backward(torch.tensor(case.grad_out))

    assert_close(y, t_y, 1e-10)
    # the input gradient is a difference of terms of size |gy| |weight| / std: scale the tolerance by them
    std = np.sqrt(case.x.var(axis=channel_axes(x.ndim)).min() + 1e-5)
    terms = np.abs(case.grad_out).max() * (np.abs(case.weight).max() if case.affine else 1.0) / std
    assert_close(x.grad, t_x.grad, 1e-10, scale=terms if training else None)
    if case.affine:
        assert_close(weight.grad, t_weight.grad, 1e-10)
        assert_close(bias.grad, t_bias.grad, 1e-10)
    for ours, theirs in zip(running, t_running):
        assert_close(ours, theirs, 1e-10)


def test_running_stats_blend_in_the_unbiased_batch_variance():
    case = Case((5, 2, 3, 3), seed=1)
    running_mean, running_var = np.zeros(2), np.ones(2)
    F.batch_norm(mr.tensor(case.x), running_mean, running_var, training=True, momentum=0.25)
    axes = channel_axes(4)
    assert_close(running_mean, 0.25 * case.x.mean(axes), 1e-12)
    unbiased = np.array([np.var(case.x[:, c], ddof=1) for c in range(2)])
    assert_close(running_var, 0.75 + 0.25 * unbiased, 1e-12)


def test_tensor_buffers_are_updated_in_place():
    case = Case((4, 3), seed=2)
    running_mean, running_var = mr.tensor(np.zeros(3)), mr.tensor(np.ones(3))
    arrays = running_mean.data, running_var.data
    F.batch_norm(mr.tensor(case.x), running_mean, running_var, training=True)
    assert running_mean.data is arrays[0] and running_var.data is arrays[1]
    assert_close(running_mean, 0.1 * case.x.mean(0), 1e-12)
    assert_close(running_var, 0.9 + 0.1 * case.x.var(0, ddof=1), 1e-12)


def test_eval_normalises_with_the_running_stats_and_leaves_them_alone():
    case = Case((3, 2, 2, 3), seed=3)
    running = case.running()
    y = F.batch_norm(mr.tensor(case.x), *running, mr.tensor(case.weight), mr.tensor(case.bias))
    view = (1, 2, 1, 1)
    expected = ((case.x - case.running_mean.reshape(view)) / np.sqrt(case.running_var.reshape(view) + EPS)
                * case.weight.reshape(view) + case.bias.reshape(view))
    assert_close(y, expected, 1e-12)
    np.testing.assert_array_equal(running[0], case.running_mean)
    np.testing.assert_array_equal(running[1], case.running_var)


def test_training_output_has_zero_mean_and_unit_variance_per_channel():
    case = Case((8, 3, 4, 4), seed=4)
    y = F.batch_norm(mr.tensor(case.x), None, None, training=True, eps=0.0).numpy()
    np.testing.assert_allclose(y.mean(channel_axes(4)), np.zeros(3), atol=1e-12)
    np.testing.assert_allclose(y.var(channel_axes(4)), np.ones(3), rtol=1e-12)


def test_float32_stays_float32():
    case = Case((4, 3, 2, 2), seed=5)
    x = mr.tensor(case.x, dtype="float32", requires_grad=True)
    running = np.zeros(3, np.float32), np.ones(3, np.float32)
    y = F.batch_norm(x, *running, mr.tensor(case.weight, dtype="float32"), training=True)
    y.backward(case.grad_out.astype(np.float32))
    assert y.dtype == np.float32 and x.grad.dtype == np.float32
    assert running[0].dtype == np.float32 and running[1].dtype == np.float32
    expected = F.batch_norm(mr.tensor(case.x), None, None, mr.tensor(case.weight), training=True)
    assert_close(y, expected, 1e-5)


@pytest.mark.parametrize("shape", [(6, 3), (2, 3, 5, 3)])
def test_numpy_kernels_meet_the_registry_contract(shape):
    # The contract every "batch_norm" implementation (e.g. a fused CUDA kernel) must meet.
    case = Case(shape, seed=6)
    axes = channel_axes(len(shape))
    y, mean, var, invstd = NumpyBatchNorm.forward_train(case.x, None, None, EPS)
    assert_close(mean, case.x.mean(axes), 1e-12)
    assert_close(var, case.x.var(axes), 1e-12)
    assert_close(invstd, 1 / np.sqrt(case.x.var(axes) + EPS), 1e-12)
    view = (1, -1) + (1,) * (len(shape) - 2)
    x_hat = (case.x - mean.reshape(view)) * invstd.reshape(view)
    assert_close(y, x_hat, 1e-12)
    gx, gweight, gbias = NumpyBatchNorm.backward(case.grad_out, case.x, None, mean, invstd)
    assert gx.shape == shape
    assert_close(gweight, (case.grad_out * x_hat).sum(axes), 1e-12)
    assert_close(gbias, case.grad_out.sum(axes), 1e-12)


def test_training_kernels_come_from_the_registry(monkeypatch):
    monkeypatch.setattr(backend, "_REGISTRY", copy.deepcopy(backend._REGISTRY))
    calls = []

    class Spy:
        @staticmethod
        def forward_train(*args):
            calls.append("forward_train")
            return NumpyBatchNorm.forward_train(*args)

        @staticmethod
        def backward(*args):
            calls.append("backward")
            return NumpyBatchNorm.backward(*args)

    backend.register("batch_norm", "spy", device="cpu")(Spy)
    assert "numpy" in backend.available("batch_norm")
    case = Case((3, 2), seed=7)
    x, weight, bias = case.tensors()
    F.batch_norm(x, None, None, weight, bias, training=True, impl="spy").backward(case.grad_out)
    assert calls == ["forward_train", "backward"]
    with backend.using("batch_norm", "spy"):
        F.batch_norm(x, None, None, training=True)
    assert calls[-1] == "forward_train"


def _bn(shape, training=True, channels=3, **kwargs):
    """batch_norm on zeros of ``shape``, with running buffers of ``channels`` entries unless given."""
    args = dict(running_mean=np.zeros(channels), running_var=np.ones(channels))
    args.update(kwargs)
    return F.batch_norm(mr.tensor(np.zeros(shape)), training=training, **args)


@pytest.mark.parametrize("call, message", [
    (lambda: _bn((1, 3)), r"more than 1 value per channel.*\(1, 3\)"),
    (lambda: _bn((1, 3, 1, 1)), r"more than 1 value per channel.*\(1, 3, 1, 1\)"),
    (lambda: _bn((2, 3, 2, 2), channels=4), r"running_mean has shape \(4,\).*3 channels"),
    (lambda: _bn((2, 3), weight=mr.tensor(np.ones(2))), r"weight has shape \(2,\).*3 channels"),
    (lambda: _bn((2, 3), bias=np.ones((3, 1))), r"bias has shape \(3, 1\)"),
    (lambda: _bn((6,)), r"expected an input of shape.*got shape \(6,\)"),
    (lambda: _bn((2, 3, 2, 2, 2)), r"got shape \(2, 3, 2, 2, 2\)"),
    (lambda: _bn((2, 3), training=False, running_mean=None, running_var=None), "evaluation mode"),
    (lambda: _bn((2, 3), running_var=None), "both running_mean and running_var"),
    (lambda: _bn((2, 3), impl="no-such-kernel"), "no implementation 'no-such-kernel'"),
])
def test_bad_input_raises_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("training", [True, False])
def test_a_float32_layer_refuses_float64_input_instead_of_mixing_dtypes(training):
    """NumPy would promote: a float64 output, and a float64 gradient for the float32 weight."""
    bn = nn.BatchNorm2d(3).train(training)
    with pytest.raises(TypeError, match=r"BatchNorm2d: batch_norm: input dtype float64 and weight dtype float32 differ"):
        bn(mr.tensor(np.ones((2, 3, 2, 2))))
    with pytest.raises(TypeError, match=r"batch_norm: input dtype float32 and running_var dtype float64 differ"):
        F.batch_norm(mr.tensor(np.ones((2, 3), np.float32)), np.zeros(3, np.float32), np.ones(3), training=training)


def test_integer_input_is_a_type_error():
    with pytest.raises(TypeError, match="batch_norm: the input must be floating point"):
        F.batch_norm(mr.tensor(np.ones((2, 3), dtype=np.int64)), None, None, training=True)
