"""The GPU path on a real GPU: every kernel against the NumPy reference, gradchecks in float64, and
a ResNet on the GPU against the same ResNet on the CPU. Marked ``gpu``; skipped without CuPy and a
GPU. ``python -m minires.bench gpu`` runs this file first (``pytest -m gpu tests/test_gpu.py``).
"""
import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minires as mr
from minires import backend
from minires import functional as F
from minires.functional.conv import Im2colConv2d
from minires.functional.norm import NumpyBatchNorm

from conftest import assert_close

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not backend.cuda_available(), reason="needs CuPy and a CUDA GPU")]

CONV_IMPLS = ["cupy", "cupy-tiled", "numba-cuda", "numba-cuda-tiled"]
TOLERANCE = {"float64": 1e-11, "float32": 2e-5}  # relative to the largest expected magnitude


def _gpu(a):
    return backend.to_device(a, "cuda")


def _host(a):
    return backend.to_device(a, "cpu")


def assert_matches(actual, expected, dtype, what=""):
    actual = _host(actual)
    assert actual.dtype == np.dtype(dtype) and actual.shape == expected.shape, what
    scale = max(float(np.abs(expected).max(initial=0.0)), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE[dtype] * scale, err_msg=what)


def _conv_impl(name):
    if name not in backend.available("conv2d"):
        pytest.skip(f"{name} is not available here (numba-cuda not installed?)")
    return backend.lookup("conv2d", _gpu(np.zeros(1)), name)[1]


@st.composite
def convolutions(draw):
    """Random conv problems big enough for several tiles: batch 1..4, odd sizes, stride 1-2, padding 0-2."""
    k = draw(st.sampled_from([1, 3, 5]))
    padding, stride = draw(st.integers(0, 2)), draw(st.integers(1, 2))
    h = draw(st.integers(max(1, k - 2 * padding), 19))
    w = draw(st.integers(max(1, k - 2 * padding), 19))
    n, c_in, c_out = draw(st.integers(1, 4)), draw(st.integers(1, 20)), draw(st.integers(1, 70))
    return (n, c_in, h, w), (c_out, c_in, k, k), (stride, stride), (padding, padding)


@pytest.mark.parametrize("impl", CONV_IMPLS)
@settings(max_examples=15, deadline=None)
@given(conv=convolutions(), dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
def test_conv_kernels_match_the_numpy_reference(impl, conv, dtype, seed):
    kernels = _conv_impl(impl)
    x_shape, w_shape, stride, padding = conv
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    expected = Im2colConv2d.forward(x.astype(np.float64), w.astype(np.float64), stride, padding)
    gy = rng.standard_normal(expected.shape)
    assert_matches(kernels.forward(_gpu(x), _gpu(w), stride, padding), expected, dtype)
    assert_matches(kernels.backward_data(_gpu(gy.astype(dtype)), _gpu(w), x_shape, stride, padding),
                   Im2colConv2d.backward_data(gy, w.astype(np.float64), x_shape, stride, padding), dtype)
    assert_matches(kernels.backward_weight(_gpu(gy.astype(dtype)), _gpu(x), w_shape, stride, padding),
                   Im2colConv2d.backward_weight(gy, x.astype(np.float64), w_shape, stride, padding), dtype)


RESNET20_SHAPES = [  # (x_shape, w_shape, stride) of the paper's CIFAR net, at batch 8
    ((8, 3, 32, 32), (16, 3, 3, 3), 1), ((8, 16, 32, 32), (16, 16, 3, 3), 1),
    ((8, 16, 32, 32), (32, 16, 3, 3), 2), ((8, 32, 16, 16), (32, 32, 3, 3), 1),
    ((8, 32, 16, 16), (64, 32, 3, 3), 2), ((8, 64, 8, 8), (64, 64, 3, 3), 1)]


@pytest.mark.parametrize("impl", CONV_IMPLS)
@pytest.mark.parametrize("x_shape,w_shape,stride", RESNET20_SHAPES)
def test_conv_kernels_on_resnet20_layer_shapes(impl, x_shape, w_shape, stride):
    kernels = _conv_impl(impl)
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    args = ((stride, stride), (1, 1))
    expected = Im2colConv2d.forward(x, w, *args)
    gy = rng.standard_normal(expected.shape)
    assert_matches(kernels.forward(_gpu(x), _gpu(w), *args), expected, "float64")
    assert_matches(kernels.backward_data(_gpu(gy), _gpu(w), x_shape, *args),
                   Im2colConv2d.backward_data(gy, w, x_shape, *args), "float64")
    assert_matches(kernels.backward_weight(_gpu(gy), _gpu(x), w_shape, *args),
                   Im2colConv2d.backward_weight(gy, x, w_shape, *args), "float64")


@settings(max_examples=20, deadline=None)
@given(shape=st.sampled_from([(5, 3), (4, 7, 9), (3, 16, 5, 7), (1, 2, 33, 33), (128, 4, 2, 2)]),
       affine=st.booleans(), dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
def test_batch_norm_kernels_match_the_numpy_reference(shape, affine, dtype, seed):
    kernels = backend.lookup("batch_norm", _gpu(np.zeros(1)), "cupy")[1]
    rng = np.random.default_rng(seed)
    x = (3 + 2 * rng.standard_normal(shape)).astype(dtype)  # a mean far from 0 tests the two-pass variance
    gy = rng.standard_normal(shape).astype(dtype)
    weight, bias = (rng.standard_normal(shape[1]).astype(dtype) for _ in range(2)) if affine else (None, None)
    as64 = [None if a is None else a.astype(np.float64) for a in (x, weight, bias, gy)]
    expected = NumpyBatchNorm.forward_train(*as64[:3], 1e-5)
    actual = kernels.forward_train(*[None if a is None else _gpu(a) for a in (x, weight, bias)], 1e-5)
    for got, want in zip(actual, expected):
        assert_matches(got, want, dtype)
    mean, invstd = expected[1], expected[3]
    expected_grads = NumpyBatchNorm.backward(as64[3], as64[0], as64[1], mean, invstd)
    grads = kernels.backward(_gpu(gy), _gpu(x), None if weight is None else _gpu(weight),
                             _gpu(mean.astype(dtype)), _gpu(invstd.astype(dtype)))
    for got, want in zip(grads, expected_grads):
        assert_matches(got, want, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("size", [1, 255, 256, 257, 100_003])
def test_relu_and_add_relu_kernels_match_numpy(dtype, size):
    rng = np.random.default_rng(size)
    a, b, gy = (rng.standard_normal(size).astype(dtype) for _ in range(3))
    if size > 1:
        a[0] = np.nan  # NaN passes through ReLU, as in NumPy
    relu = backend.lookup("relu", _gpu(a), "cupy")[1]
    add_relu = backend.lookup("add_relu", _gpu(a), "cupy")[1]
    y = np.maximum(a, 0)
    np.testing.assert_array_equal(_host(relu.forward(_gpu(a))), y)
    np.testing.assert_array_equal(_host(relu.backward(_gpu(gy), _gpu(y))), gy * (y > 0))
    np.testing.assert_array_equal(_host(add_relu.forward(_gpu(a), _gpu(b))), np.maximum(a + b, 0))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("settings", [(0.1, 0.9, 1e-4, 0.0, False), (0.05, 0.9, 0.0, 0.0, True),
                                      (0.1, 0.0, 1e-3, 0.0, False), (0.2, 0.5, 1e-2, 0.3, False)])
def test_sgd_kernel_matches_the_readable_update(settings, dtype):
    """Two SGD steps through optim.SGD on the GPU (the fused ``cupy`` kernel) against the same
    steps on the CPU (``optim.sgd_update``, the definition)."""
    from minires.optim import SGD
    rng = np.random.default_rng(1)
    start, grads = rng.standard_normal(1000).astype(dtype), rng.standard_normal((2, 1000)).astype(dtype)
    lr, momentum, weight_decay, dampening, nesterov = settings
    params = [mr.tensor(start, device=device, requires_grad=True) for device in ("cpu", "cuda")]
    optimizers = [SGD([p], lr=lr, momentum=momentum, weight_decay=weight_decay, dampening=dampening,
                      nesterov=nesterov) for p in params]
    assert backend.lookup("sgd", params[1].data)[0] == "cupy"
    for grad in grads:
        for p, opt in zip(params, optimizers):
            p.grad = mr.tensor(grad, device=p.device)
            opt.step()
        # relative to the largest value: p - lr * d cancels for some entries, and the GPU may fuse a
        # multiply-add (one rounding instead of two), so elementwise relative errors can be large there
        assert_close(params[1].numpy(), params[0].numpy(), 8 * np.finfo(dtype).eps)
    assert params[1]._version == params[0]._version == 2


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batch_norm_running_statistics_on_the_gpu_match_the_cpu(dtype):
    """BatchNorm2d's buffers after three training batches (the one-launch update on the GPU)."""
    rng = np.random.default_rng(2)
    layers = [mr.nn.BatchNorm2d(5).to(dtype=dtype), mr.nn.BatchNorm2d(5).to("cuda", dtype)]
    for _ in range(3):
        x = 1 + 2 * rng.standard_normal((4, 5, 3, 3))
        for layer in layers:
            layer(mr.tensor(x, dtype=dtype, device=layer.running_mean.device))
    for name in ("running_mean", "running_var"):
        gpu, cpu = (getattr(layer, name).numpy() for layer in layers)
        assert_close(gpu, cpu, 32 * np.finfo(dtype).eps)  # the batch statistics are summed in another order
    assert int(layers[1].num_batches_tracked.item()) == 3


# ----------------------------------------------------------------------------- the whole GPU path
@pytest.mark.parametrize("impl", CONV_IMPLS)
def test_gradcheck_of_a_residual_unit_on_the_gpu(impl):
    """conv -> BN -> add shortcut -> ReLU, every op on GPU kernels, against finite differences."""
    _conv_impl(impl)
    rng = np.random.default_rng(0)

    def unit(x, w, gamma, beta):
        h = F.conv2d(x, w, stride=1, padding=1, impl=impl)
        return F.add_relu(F.batch_norm(h, None, None, gamma, beta, training=True), x)

    inputs = [mr.tensor(rng.standard_normal(s), dtype="float64", device="cuda", requires_grad=True)
              for s in [(2, 3, 5, 5), (3, 3, 3, 3), (3,), (3,)]]
    assert mr.gradcheck(unit, inputs, mode="directional", n_directions=4)


def test_tensors_and_indexing_on_the_gpu():
    x = mr.tensor(np.arange(6.0).reshape(2, 3), dtype="float64", device="cuda", requires_grad=True)
    assert x.device == "cuda:0" and x.to("cpu").device == "cpu"
    x[_gpu(np.array([0, 0, 1]))].sum().backward()  # repeated rows: their gradients must add up
    np.testing.assert_array_equal(x.grad.numpy(), [[2, 2, 2], [1, 1, 1]])


@pytest.mark.parametrize("impl", CONV_IMPLS)
def test_resnet20_step_on_the_gpu_matches_the_cpu(impl):
    """Loss and every parameter gradient of ResNet-20 (float64) agree between CPU and GPU."""
    _conv_impl(impl)
    from minires.models import resnet20
    cpu_model = resnet20().to(dtype="float64")
    gpu_model = copy.deepcopy(cpu_model).to("cuda")
    rng = np.random.default_rng(0)
    images, labels = rng.standard_normal((4, 3, 32, 32)), rng.integers(0, 10, 4)
    losses = []
    for model, device in ((cpu_model, "cpu"), (gpu_model, "cuda")):
        with backend.using("conv2d", impl):
            loss = F.cross_entropy(model(mr.tensor(images, device=device)), labels)
            loss.backward()
        losses.append(loss.item())
    assert losses[1] == pytest.approx(losses[0], rel=1e-10)
    for (name, p_cpu), (_, p_gpu) in zip(cpu_model.named_parameters(), gpu_model.named_parameters()):
        assert_matches(p_gpu.grad.data, p_cpu.grad.numpy(), "float64", what=name)
