"""Batch norm fused with the ReLU after it: F.batch_norm_relu, its kernels, and nn.fuse_bn_relu.

The claim everywhere is "the same numbers as the two ops": checked bit for bit against the two ops'
kernels run one after the other, against finite differences (gradcheck, float64) and against PyTorch.
"""
import copy

import numpy as np
import pytest
from conftest import assert_close, channels_last

import minires as mr
import minires.functional as F
import minires.nn as nn
from minires import backend, models, optim
from minires.functional.norm import BatchNormThenReLU, NumpyBatchNorm
from minires.functional.elementwise import NumpyReLU


def problem(shape, dtype, seed=0):
    """x with each channel's own mean and spread, gy, weight (some negative), bias: float arrays of ``dtype``."""
    rng = np.random.default_rng(seed)
    per_channel = (1, shape[1]) + (1,) * (len(shape) - 2)
    x = rng.standard_normal(shape) * rng.uniform(0.5, 3, per_channel) + rng.uniform(-2, 2, per_channel)
    weight = rng.uniform(0.5, 1.5, shape[1]) * rng.choice([-1, 1], shape[1])
    return [a.astype(dtype) for a in (x, rng.standard_normal(shape), weight, rng.standard_normal(shape[1]))]


def results(kernels, x, gy, weight, bias):
    """Every output of one forward and one backward: y, mean, var, invstd, gx, gweight, gbias."""
    y, mean, var, invstd = kernels.forward_train(x, weight, bias, 1e-5)
    return (y, mean, var, invstd, *kernels.backward(gy, x, y, weight, bias, mean, invstd))


def bits(arrays):
    return [np.ascontiguousarray(a).tobytes() for a in arrays]


# ----------------------------------------------------------------------------- the Numba kernels
numba_only = pytest.mark.skipif("numba" not in backend.available("batch_norm_relu"), reason="needs the numba extra")


@numba_only
@pytest.mark.parametrize("split", [1, 3], indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", [channels_last, np.ascontiguousarray], ids=["channels last", "NCHW"])
@pytest.mark.parametrize("shape", [(7, 5, 4, 6), (7, 6), (7, 3, 5)], ids=["NCHW", "NC", "NCL"])
@pytest.mark.parametrize("affine", [True, False])
def test_the_fused_kernels_give_the_two_ops_bits(split, dtype, layout, shape, affine):
    """The fused forward floors the output at 0 as it writes it; the fused backward recomputes the ReLU's
    mask from x with the forward's expression: every output has the bits of batch norm's Numba kernels
    followed by ReLU's, a NaN input and values whose batch-norm output is exactly 0 included."""
    from minires.cpu.batchnorm import NumbaBatchNorm, NumbaBatchNormReLU
    from minires.cpu.relu import NumbaReLU
    x, gy, weight, bias = problem(shape, dtype, seed=len(shape))
    if not affine:
        weight, bias = None, None
    x.flat[5] = np.nan                                      # its channel's statistics become NaN
    if affine:                                               # a value the batch norm maps to (about) 0
        bias[1] = -(x[2, 1].flat[0] - x[:, 1].mean()) * weight[1] / x[:, 1].std()
    x = layout(x)
    fused = results(NumbaBatchNormReLU, x, gy, weight, bias)
    two_ops = results(BatchNormThenReLU(NumbaBatchNorm, NumbaReLU), x, gy, weight, bias)
    assert [a.dtype for a in fused] == [dtype] * 7
    assert bits(fused) == bits(two_ops)
    assert np.isnan(fused[0]).any() and (fused[0] == 0).any() and (fused[0] > 0).any()


@numba_only
@pytest.mark.parametrize("threads", [1, 3])
def test_the_numba_region_and_the_pool_give_the_same_bits(monkeypatch, threads):
    """Where Numba's threads run on TBB the fused passes run as Numba regions (the ``*_split`` kernels with
    the ReLU's gate); elsewhere on minires' pool: the same slices, the same bits."""
    from minires.cpu import numba_layer, threads as cpu_threads
    from minires.cpu.batchnorm import NumbaBatchNormReLU
    before = cpu_threads.get_num_threads()
    cpu_threads.set_num_threads(threads)
    x, gy, weight, bias = problem((7, 5, 4, 3), np.float64, seed=9)
    x, gy = channels_last(x), channels_last(gy)
    outputs = {}
    try:
        for route, layer, min_pass in (("region", "tbb", 1 << 20), ("in turn", "omp", 1 << 20), ("pool", "omp", 0)):
            monkeypatch.setattr(numba_layer, "threading_layer", lambda: layer)
            monkeypatch.setattr(cpu_threads, "MIN_PARALLEL_PASS", min_pass)
            outputs[route] = bits(results(NumbaBatchNormReLU, x, gy, weight, bias))
    finally:
        cpu_threads.set_num_threads(before)
    assert outputs["region"] == outputs["in turn"] == outputs["pool"]


@numba_only
def test_float16_takes_the_threaded_numpy_ops():
    from minires.cpu.batchnorm import NumbaBatchNormReLU
    from minires.cpu.pointwise import ThreadedBatchNormReLU
    x, gy, weight, bias = problem((4, 3, 2, 2), np.float16, seed=6)
    fused = results(NumbaBatchNormReLU, x, gy, weight, bias)
    assert fused[0].dtype == np.float16 and bits(fused) == bits(results(ThreadedBatchNormReLU, x, gy, weight, bias))


# ----------------------------------------------------------------------------- the op
CPU_IMPLS = backend.available("batch_norm_relu", "cpu")


def test_every_cpu_kernel_is_registered_and_numpy_is_the_two_references():
    assert {"numpy", "numpy-threads"} <= set(CPU_IMPLS)
    numpy_impl = dict(backend._entry("batch_norm_relu").impls)["numpy"][0]
    x, gy, weight, bias = problem((4, 3, 5, 5), np.float64, seed=2)
    expected_y, mean, var, invstd = NumpyBatchNorm.forward_train(x, weight, bias, 1e-5)
    expected_y = np.maximum(expected_y, 0)
    expected = (expected_y, mean, var, invstd,
                *NumpyBatchNorm.backward(NumpyReLU.backward(gy, expected_y), x, weight, mean, invstd))
    assert bits(results(numpy_impl, x, gy, weight, bias)) == bits(expected)


@pytest.mark.parametrize("impl", CPU_IMPLS)
@pytest.mark.parametrize("shape", [(4, 3, 3, 2), (5, 2), (3, 2, 4)], ids=["NCHW", "NC", "NCL"])
@pytest.mark.parametrize("affine", [True, False])
def test_gradcheck(impl, shape, affine):
    """Finite differences in float64 (no value sits within gradcheck's step of the ReLU's kink)."""
    x, _, weight, bias = problem(shape, np.float64, seed=sum(shape))
    inputs = [mr.Tensor(a, requires_grad=True) for a in ((x, weight, bias) if affine else (x,))]

    def fn(x, weight=None, bias=None):
        return F.batch_norm_relu(x, None, None, weight, bias, training=True, impl=impl)

    assert mr.gradcheck(fn, inputs)


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_the_op_gives_the_two_ops_numbers_and_running_statistics(impl):
    """Forward, every gradient and the running statistics as ``relu(batch_norm(...))`` with the
    registry's defaults (bit for bit where the impl is the defaults' fusion, else to rounding)."""
    x, gy, weight, bias = problem((6, 4, 5, 3), np.float32, seed=3)
    got, want = {}, {}
    for out, fn in ((got, lambda *a: F.batch_norm_relu(*a, training=True, impl=impl)),
                    (want, lambda *a: F.relu(F.batch_norm(*a, training=True)))):
        leaves = [mr.Tensor(a.copy(), requires_grad=True) for a in (x, weight, bias)]
        running = [np.zeros(4, np.float32), np.ones(4, np.float32)]
        y = fn(leaves[0], *running, leaves[1], leaves[2])
        y.backward(gy)
        out.update(y=y.numpy(), **{f"g{k}": t.grad.numpy() for k, t in zip("xwb", leaves)},
                   mean=running[0], var=running[1])
    exact = impl == backend.defaults()["batch_norm_relu"]    # the fusion of the defaults of batch_norm and relu
    for key in want:
        if exact:
            assert got[key].tobytes() == want[key].tobytes(), key
        else:
            np.testing.assert_allclose(got[key], want[key], rtol=2e-5, atol=2e-5, err_msg=key)


def test_matches_pytorch(torch_oracle):
    torch = torch_oracle
    x, gy, weight, bias = problem((5, 3, 4, 4), np.float64, seed=11)
    leaves = [mr.Tensor(a, requires_grad=True) for a in (x, weight, bias)]
    running = [np.zeros(3), np.ones(3)]
    y = F.batch_norm_relu(leaves[0], *running, leaves[1], leaves[2], training=True)
    y.backward(gy)
    t_leaves = [torch.tensor(a, requires_grad=True) for a in (x, weight, bias)]
    t_running = [torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)]
    t_y = torch.relu(torch.nn.functional.batch_norm(t_leaves[0], *t_running, t_leaves[1], t_leaves[2], training=True))
    t_y.backward(torch.tensor(gy))
    assert_close(y, t_y, 1e-10)
    for ours, theirs in zip(leaves, t_leaves):
        assert_close(ours.grad, theirs.grad, 1e-9)
    for ours, theirs in zip(running, t_running):
        assert_close(ours, theirs, 1e-10)


def test_second_derivatives_are_the_two_ops():
    """``create_graph``: the fused op's gradient is differentiable, with the two ops' second derivatives."""
    x, gy, weight, bias = problem((4, 2, 3, 3), np.float64, seed=5)
    grads = []
    for fn in (lambda *a: F.batch_norm_relu(*a, training=True), lambda *a: F.relu(F.batch_norm(*a, training=True))):
        leaves = [mr.Tensor(a, requires_grad=True) for a in (x, weight, bias)]
        y = fn(leaves[0], None, None, leaves[1], leaves[2])
        gx, gw = mr.autograd.grad((y * mr.Tensor(gy)).sum(), leaves[:2], create_graph=True)
        (gx * gx).sum().backward()
        grads.append([None if t.grad is None else t.grad.numpy() for t in leaves])
    assert grads[0][2] is None and grads[1][2] is None       # bias moves only the mask, whose derivative is 0
    for ours, theirs in zip(grads[0][:2], grads[1][:2]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_evaluation_and_an_empty_batch_are_the_two_ops():
    x, _, weight, bias = problem((3, 2, 2, 2), np.float32, seed=4)
    running = [np.array([0.5, -1], np.float32), np.array([2, 0.5], np.float32)]
    got = F.batch_norm_relu(mr.Tensor(x), *running, mr.Tensor(weight), mr.Tensor(bias), training=False)
    want = F.relu(F.batch_norm(mr.Tensor(x), *running, mr.Tensor(weight), mr.Tensor(bias), training=False))
    assert got.numpy().tobytes() == want.numpy().tobytes()
    empty = F.batch_norm_relu(mr.Tensor(x[:0]), *running, mr.Tensor(weight), mr.Tensor(bias), training=True)
    assert empty.shape == (0, 2, 2, 2)


def test_bad_input_is_refused_as_batch_norm_refuses_it():
    with pytest.raises(ValueError, match="weight has shape"):
        F.batch_norm_relu(mr.Tensor(np.ones((2, 3, 2, 2), np.float32)), None, None,
                          mr.Tensor(np.ones(4, np.float32)), None, training=True)


# ----------------------------------------------------------------------------- nn.fuse_bn_relu
def _model(name):
    if name == "preact":
        return models.cifar_resnet(8, preact=True)
    if name == "bottleneck":
        return models.get_model("resnet50", num_classes=10)
    return models.get_model(name)


def _train(model, steps=2, batch=4):
    """The loss after ``steps`` SGD steps on fixed data, and the state dict's arrays."""
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    images = mr.Tensor(np.random.default_rng(1).standard_normal((batch, 3, 32, 32)).astype(np.float32))
    labels = np.arange(batch) % 10
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
    return loss.numpy(), {k: np.asarray(getattr(v, "data", v)) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name, fused", [("resnet20", 10), ("plain20", 10), ("preact", 7), ("bottleneck", 33)])
def test_a_fused_net_trains_to_the_same_bits(name, fused):
    """Every batch norm a block (or the stem) follows with its ReLU becomes a BatchNormReLU2d; two
    training steps give the unfused net's loss, parameters and running statistics bit for bit, under
    the same state-dict names; evaluation too."""
    net = _model(name)
    twin = nn.fuse_bn_relu(copy.deepcopy(net))
    assert sum(isinstance(m, nn.BatchNormReLU2d) for m in twin.modules()) == fused
    loss, state = _train(net, batch=2 if name == "bottleneck" else 4)
    fused_loss, fused_state = _train(twin, batch=2 if name == "bottleneck" else 4)
    assert loss.tobytes() == fused_loss.tobytes()
    assert list(state) == list(fused_state) and all(state[k].tobytes() == fused_state[k].tobytes() for k in state)
    net.eval(), twin.eval()
    x = mr.Tensor(np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype(np.float32))
    assert net(x).numpy().tobytes() == twin(x).numpy().tobytes()


def test_fusing_keeps_the_parameters_an_optimizer_holds():
    net = models.get_model("resnet20")
    optimizer = optim.SGD(net.parameters(), lr=0.1)
    bn1, weight = net.layer1[0].bn1, net.layer1[0].bn1.weight
    nn.fuse_bn_relu(net)
    fused = net.layer1[0].bn1
    assert isinstance(fused, nn.BatchNormReLU2d) and fused.weight is weight and fused.running_mean is bn1.running_mean
    assert any(p is weight for group in optimizer.param_groups for p in group["params"])
    assert nn.fuse_bn_relu(net).layer1[0].bn1 is fused            # a second call changes nothing


def test_a_hook_on_the_fused_module_sees_the_relus_output():
    net = nn.fuse_bn_relu(models.get_model("resnet20"))
    seen = []
    net.layer2[0].bn1.register_forward_hook(lambda module, inputs, output: seen.append(output.numpy().min()))
    net(mr.Tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)))
    assert seen and seen[0] >= 0


def test_a_batch_norm_with_hooks_or_of_another_kind_is_refused_by_name():
    net = models.get_model("resnet20")
    net.layer2[1].bn1.register_forward_hook(lambda *args: None)
    with pytest.raises(ValueError, match=r"layer2\.1\.bn1 has hooks"):
        nn.fuse_bn_relu(net)

    class OtherNorm(nn.BatchNorm2d):
        pass

    net = models.get_model("resnet20")
    net.layer3[2].bn1 = OtherNorm(64)
    with pytest.raises(TypeError, match=r"layer3\.2\.bn1 is a OtherNorm"):
        nn.fuse_bn_relu(net)
