"""minires.nn: the Module tree, state dicts, hooks, devices/dtypes, layers against PyTorch, init."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minires as mr
from minires import nn
from minires.nn import init

from conftest import assert_close


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))

    def forward(self, x):
        return self.head(nn.functional.relu(self.bn(self.conv(x))))


def small_input(dtype=np.float32, seed=0):
    return mr.tensor(np.random.default_rng(seed).standard_normal((2, 2, 4, 4)).astype(dtype))


# ----------------------------------------------------------------------------- the tree
def test_registration_order_and_names():
    net = TwoLayer()
    assert [n for n, _ in net.named_parameters()] == ["conv.weight", "bn.weight", "bn.bias", "head.1.weight",
                                                      "head.1.bias"]
    assert [n for n, _ in net.named_buffers()] == ["bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    assert [n for n, _ in net.named_modules()] == ["", "conv", "bn", "head", "head.0", "head.1"]
    assert [type(c).__name__ for c in net.children()] == ["Conv2d", "BatchNorm2d", "Sequential"]
    assert len(list(net.modules())) == 6 and len(net.head) == 2 and isinstance(net.head[1], nn.Linear)
    assert isinstance(net.head[-1:], nn.Sequential) and net.head[-1:][0] is net.head[1]


def test_shared_module_and_parameter_are_listed_once():
    layer = nn.Linear(2, 2)
    net = nn.Sequential(layer, nn.ReLU(), layer)
    assert len(list(net.parameters())) == 2
    assert [n for n, _ in net.named_modules()] == ["", "0", "1"]


def test_state_dict_keys_and_order_match_pytorch(torch_oracle):
    tnn = torch_oracle.nn
    reference = tnn.Sequential(tnn.Conv2d(2, 3, 3, padding=1, bias=False), tnn.BatchNorm2d(3), tnn.ReLU(),
                               tnn.Flatten(), tnn.Linear(48, 5))
    ours = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(48, 5))
    assert list(ours.state_dict()) == list(reference.state_dict())
    for key, value in reference.state_dict().items():
        assert ours.state_dict()[key].shape == tuple(value.shape)
        assert ours.state_dict()[key].dtype == value.numpy().dtype, key


def test_repr_matches_pytorch(torch_oracle):
    tnn = torch_oracle.nn
    reference = tnn.Sequential(tnn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False), tnn.ReLU(),
                               tnn.Sequential(tnn.Linear(3, 4)))
    ours = nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False), nn.ReLU(),
                         nn.Sequential(nn.Linear(3, 4)))
    assert repr(ours) == repr(reference)
    assert repr(nn.BatchNorm2d(3)).startswith("BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True")


def test_train_eval_and_zero_grad():
    net = TwoLayer()
    assert net.eval() is net and not any(m.training for m in net.modules())
    assert all(m.training for m in net.train().modules())
    mr.functional.cross_entropy(net(small_input()), [0, 4]).backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_double_and_float_cast_in_place():
    net = TwoLayer()
    weight = net.conv.weight
    net.double()
    assert net.conv.weight is weight and weight.dtype == np.float64
    assert net.bn.running_var.dtype == np.float64 and net.bn.num_batches_tracked.dtype == np.int64
    assert net(small_input(np.float64)).dtype == np.float64
    assert net.float().conv.weight.dtype == np.float32 and net.to("float64").bn.weight.dtype == np.float64


def test_to_cuda_without_a_gpu_says_so():
    if mr.backend.cuda_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="cuda"):
        TwoLayer().to("cuda")


def test_apply_visits_children_first():
    seen = []
    TwoLayer().apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Conv2d", "BatchNorm2d", "Flatten", "Linear", "Sequential", "TwoLayer"]


def test_assigning_before_init_is_explained():
    class Broken(nn.Module):
        def __init__(self):
            self.conv = nn.Conv2d(1, 1, 1)

    with pytest.raises(AttributeError, match="super\\(\\).__init__\\(\\)"):
        Broken()


# ----------------------------------------------------------------------------- state dicts
def test_state_dict_round_trip_reproduces_outputs_and_is_a_copy():
    a, b = TwoLayer(), TwoLayer()
    a.train()(small_input())  # moves the running statistics away from their initial values
    state = a.state_dict()
    assert int(state["bn.num_batches_tracked"]) == 1
    b.load_state_dict(state)
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(small_input()).numpy(), b(small_input()).numpy())
    state["conv.weight"][...] = 0
    assert np.any(a.conv.weight.numpy() != 0)


def test_load_state_dict_reports_missing_unexpected_and_mismatched_keys():
    net = TwoLayer()
    state = net.state_dict()
    del state["bn.bias"]
    state["extra.weight"] = np.zeros(3)
    with pytest.raises(ValueError, match="missing 1 key.*bn.bias.*1 unexpected key.*extra.weight"):
        net.load_state_dict(state)
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert missing == ["bn.bias"] and unexpected == ["extra.weight"]

    state = net.state_dict()
    state["conv.weight"] = np.ones((3, 1, 3, 3))
    state["bn.weight"] = np.full(3, 5.0)
    with pytest.raises(ValueError, match=r"conv.weight: model \(3, 2, 3, 3\), given \(3, 1, 3, 3\)"):
        net.load_state_dict(state, strict=False)
    assert not np.any(net.bn.weight.numpy() == 5.0)  # nothing copied when anything is wrong


def test_load_state_dict_casts_to_the_model_dtype():
    net = TwoLayer()
    net.load_state_dict({k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in net.state_dict().items()})
    assert net.conv.weight.dtype == np.float32


# ----------------------------------------------------------------------------- hooks
def test_forward_hook_sees_inputs_and_output_and_can_be_removed():
    net = TwoLayer()
    calls = []
    handle = net.bn.register_forward_hook(lambda m, inputs, out: calls.append((m, inputs[0].shape, out.shape)))
    net(small_input())
    assert calls == [(net.bn, (2, 3, 4, 4), (2, 3, 4, 4))]
    handle.remove()
    net(small_input())
    assert len(calls) == 1


def test_hooks_can_replace_inputs_and_outputs():
    layer = nn.Identity()
    layer.register_forward_pre_hook(lambda m, inputs: (inputs[0] * 2,))
    layer.register_forward_hook(lambda m, inputs, out: out + 1)
    assert layer(mr.tensor([1.0])).item() == 3.0


# ----------------------------------------------------------------------------- layers vs PyTorch
def _load_from_torch(ours, reference):
    ours.load_state_dict(reference.state_dict())


def _compare_layer(torch, ours, reference, x, rtol=1e-10):
    """Same weights (moved from torch), float64: output and input/parameter gradients agree."""
    ours.double(), reference.double()
    _load_from_torch(ours, reference)
    ours_x, ref_x = mr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ours_y, ref_y = ours(ours_x), reference(ref_x)
    assert_close(ours_y, ref_y, rtol)
    weights = np.random.default_rng(1).standard_normal(ref_y.shape)
    (ours_y * mr.tensor(weights)).sum().backward()
    (ref_y * torch.tensor(weights)).sum().backward()
    assert_close(ours_x.grad, ref_x.grad, rtol)
    ref_params = dict(reference.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad, ref_params[name].grad, rtol)
    for key, value in reference.state_dict().items():
        assert_close(ours.state_dict()[key], value, rtol)


@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 3), c_in=st.integers(1, 4), c_out=st.integers(1, 4), size=st.integers(3, 7),
       kernel=st.integers(1, 3), stride=st.integers(1, 2), padding=st.integers(0, 1), bias=st.booleans())
def test_conv2d_layer_matches_pytorch(torch_oracle, n, c_in, c_out, size, kernel, stride, padding, bias):
    torch = torch_oracle
    x = np.random.default_rng(size).standard_normal((n, c_in, size, size))
    _compare_layer(torch, nn.Conv2d(c_in, c_out, kernel, stride, padding, bias),
                   torch.nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=bias), x)


def test_linear_layer_matches_pytorch(torch_oracle):
    x = np.random.default_rng(0).standard_normal((4, 6))
    _compare_layer(torch_oracle, nn.Linear(6, 3), torch_oracle.nn.Linear(6, 3), x)


@pytest.mark.parametrize("layer, args", [("Linear", (0, 10)), ("Linear", (10, 0)), ("Conv2d", (0, 3, 3)),
                                         ("Conv2d", (3, 0, 3))])
def test_layers_with_no_weights_are_built_as_pytorch_builds_them(torch_oracle, layer, args):
    """PyTorch skips initialising a zero-element weight (with a warning), and a bias with no fan-in is 0."""
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
        theirs = getattr(torch_oracle.nn, layer)(*args)
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
        ours = getattr(nn, layer)(*args)
    for (name, p), (their_name, q) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        assert name == their_name
        np.testing.assert_array_equal(p.numpy(), q.detach().numpy())      # empty, or a bias of zeros


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("layer, shape", [("BatchNorm2d", (3, 4, 2, 3)), ("BatchNorm1d", (5, 4)),
                                          ("BatchNorm1d", (3, 4, 6))])
def test_batch_norm_layers_match_pytorch_over_several_steps(torch_oracle, layer, shape, momentum):
    """Training steps update running_mean/var/num_batches_tracked exactly as torch; eval uses them."""
    torch = torch_oracle
    ours, reference = getattr(nn, layer)(4, momentum=momentum), getattr(torch.nn, layer)(4, momentum=momentum)
    rng = np.random.default_rng(0)
    for _ in range(3):
        _compare_layer(torch, ours, reference, rng.normal(1.0, 2.0, shape))
    ours.eval(), reference.eval()
    _compare_layer(torch, ours, reference, rng.normal(1.0, 2.0, shape))
    assert int(ours.num_batches_tracked.item()) == 3


def test_batch_norm_without_running_stats_matches_pytorch(torch_oracle):
    ours = nn.BatchNorm2d(3, affine=False, track_running_stats=False).eval()
    reference = torch_oracle.nn.BatchNorm2d(3, affine=False, track_running_stats=False).eval()
    assert list(ours.state_dict()) == []
    _compare_layer(torch_oracle, ours, reference, np.random.default_rng(0).standard_normal((2, 3, 2, 2)))


@pytest.mark.parametrize("ours, theirs", [
    (lambda: nn.MaxPool2d(3, stride=2, padding=1), lambda t: t.nn.MaxPool2d(3, stride=2, padding=1)),
    (lambda: nn.AvgPool2d(2), lambda t: t.nn.AvgPool2d(2)),
    (lambda: nn.AdaptiveAvgPool2d(1), lambda t: t.nn.AdaptiveAvgPool2d(1)),
    (lambda: nn.AdaptiveAvgPool2d((2, 3)), lambda t: t.nn.AdaptiveAvgPool2d((2, 3))),
    (lambda: nn.Flatten(), lambda t: t.nn.Flatten()),
    (lambda: nn.ReLU(), lambda t: t.nn.ReLU()),
    (lambda: nn.Identity(), lambda t: t.nn.Identity()),
], ids=["maxpool", "avgpool", "global", "adaptive", "flatten", "relu", "identity"])
def test_parameter_free_layers_match_pytorch(torch_oracle, ours, theirs):
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    _compare_layer(torch_oracle, ours(), theirs(torch_oracle), x)


def test_dropout_scales_survivors_and_is_off_in_eval():
    mr.manual_seed(0)
    layer = nn.Dropout(0.25)
    y = layer(mr.tensor(np.ones((200, 200)))).numpy()
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01 and np.allclose(y[kept], 1 / 0.75)
    np.testing.assert_array_equal(layer.eval()(mr.tensor(np.ones(5))).numpy(), np.ones(5))


# ----------------------------------------------------------------------------- errors naming the layer
@pytest.mark.parametrize("layer, shape, message", [
    (nn.Conv2d(3, 4, 3), (2, 1, 5, 5), "Conv2d: expected input of shape \\(N, C, H, W\\) with 3"),
    (nn.Conv2d(3, 4, 5), (2, 3, 4, 4), "Conv2d: input of spatial size 4x4 .* smaller than the 5x5 window"),
    (nn.BatchNorm2d(4), (2, 3, 5, 5), "BatchNorm2d: expected input of shape \\(N, C, H, W\\) with 4"),
    (nn.Linear(6, 2), (2, 5), "Linear: expected input of shape \\(N, in_features\\) with 6"),
    (nn.MaxPool2d(2), (1, 1, 1, 1), "MaxPool2d: input of spatial size 1x1"),
])
def test_layer_errors_are_actionable(layer, shape, message):
    with pytest.raises(nn.LayerError, match=message):
        layer(mr.tensor(np.zeros(shape, np.float32)))


@pytest.mark.parametrize("make_layer, message", [
    (lambda: nn.Conv2d(3, 4, 3, stride=0), "Conv2d: stride must be >= 1, got 0"),
    (lambda: nn.Conv2d(3, 4, 0), "Conv2d: kernel_size must be >= 1, got 0"),
    (lambda: nn.Conv2d(3, 4, 3, padding=(1, -1)), r"Conv2d: padding must be >= 0, got \(1, -1\)"),
    (lambda: nn.MaxPool2d(2, stride=0), "MaxPool2d: stride must be >= 1, got 0"),
    (lambda: nn.AvgPool2d((0, 2)), r"AvgPool2d: kernel_size must be >= 1, got \(0, 2\)"),
    (lambda: nn.AdaptiveAvgPool2d(0), "AdaptiveAvgPool2d: output_size must be >= 1, got 0"),
])
def test_impossible_layer_geometry_is_refused_when_the_layer_is_built(make_layer, message):
    """Such a layer used to be built and then die in its first forward with a bare ZeroDivisionError."""
    with pytest.raises(ValueError, match=f"^{message}"):
        make_layer()


@pytest.mark.parametrize("make_layer", [lambda: nn.Conv2d(3, 4, 3), lambda: nn.BatchNorm2d(3), lambda: nn.MaxPool2d(2),
                                        lambda: nn.AvgPool2d(2), lambda: nn.AdaptiveAvgPool2d(1)],
                         ids=["Conv2d", "BatchNorm2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"])
def test_a_single_image_without_batch_axis_is_told_to_be_4d(make_layer):
    layer = make_layer()
    name = type(layer).__name__
    with pytest.raises(ValueError, match=f"^{name}: .*must be 4-D \\(N, C, H, W\\), got shape \\(3, 8, 8\\) \\(3-D\\)"):
        layer(mr.tensor(np.zeros((3, 8, 8), np.float32)))


@pytest.mark.parametrize("op", [
    lambda x: mr.functional.conv2d(x, mr.tensor(np.zeros((4, 3, 3, 3), np.float32))),
    lambda x: mr.functional.max_pool2d(x, 2), lambda x: mr.functional.avg_pool2d(x, 2),
    lambda x: mr.functional.global_avg_pool2d(x), lambda x: mr.functional.adaptive_avg_pool2d(x, 1)],
    ids=["conv2d", "max_pool2d", "avg_pool2d", "global_avg_pool2d", "adaptive_avg_pool2d"])
def test_functional_ops_ask_for_4d_input(op):
    with pytest.raises(ValueError, match="must be 4-D \\(N, C, H, W\\), got shape \\(3, 8, 8\\)"):
        op(mr.tensor(np.zeros((3, 8, 8), np.float32)))


def test_nested_error_names_the_path_and_op_errors_are_attributed():
    net = nn.Sequential(nn.Sequential(nn.Identity(), nn.Linear(4, 2)))
    with pytest.raises(nn.LayerError, match="^0.1 \\(Linear\\): expected input"):
        net(mr.tensor(np.zeros((1, 3), np.float32)))

    class AddsMismatched(nn.Module):
        def forward(self, x):
            return x + x[:, :1, :2]

    with pytest.raises(nn.LayerError, match="^0 \\(AddsMismatched\\): "):
        nn.Sequential(AddsMismatched())(mr.tensor(np.zeros((1, 2, 3), np.float32)))


# ----------------------------------------------------------------------------- init
def test_kaiming_normal_and_uniform_have_he_variance():
    w = nn.Parameter(np.empty((256, 128, 3, 3), np.float32))
    gen = np.random.default_rng(0)
    init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu", generator=gen)
    assert abs(w.numpy().std() / math.sqrt(2 / (128 * 9)) - 1) < 0.01
    init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu", generator=gen)
    assert abs(w.numpy().std() / math.sqrt(2 / (256 * 9)) - 1) < 0.01
    init.kaiming_uniform_(w, mode="fan_in", nonlinearity="relu", generator=gen)
    bound = math.sqrt(3) * math.sqrt(2 / (128 * 9))
    assert w.numpy().max() <= bound and w.numpy().min() >= -bound
    assert abs(w.numpy().std() / (bound / math.sqrt(3)) - 1) < 0.01


def test_init_is_reproducible_from_a_seed_or_a_generator():
    w = nn.Parameter(np.empty((4, 3)))
    first = init.kaiming_normal_(w, generator=np.random.default_rng(5)).numpy().copy()
    np.testing.assert_array_equal(init.kaiming_normal_(w, generator=np.random.default_rng(5)).numpy(), first)
    mr.manual_seed(1)
    a = nn.Conv2d(3, 4, 3).weight.numpy()
    mr.manual_seed(1)
    np.testing.assert_array_equal(nn.Conv2d(3, 4, 3).weight.numpy(), a)


def test_default_layer_init_matches_pytorchs_bounds():
    """PyTorch's Conv2d/Linear default: weight and bias in +-1/sqrt(fan_in)."""
    layer = nn.Conv2d(16, 8, 3)
    bound = 1 / math.sqrt(16 * 9)
    assert np.abs(layer.weight.numpy()).max() <= bound and np.abs(layer.bias.numpy()).max() <= bound
    assert np.abs(layer.weight.numpy()).max() > 0.9 * bound


def test_init_errors():
    with pytest.raises(ValueError, match="mode must be"):
        init.kaiming_normal_(nn.Parameter(np.empty((2, 2))), mode="fan")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.kaiming_uniform_(nn.Parameter(np.empty(3)))
    assert init.calculate_gain("relu") == math.sqrt(2)
    np.testing.assert_array_equal(init.ones_(nn.Parameter(np.empty(3))).numpy(), np.ones(3))


def test_nn_functional_reexports_functional():
    assert nn.functional.conv2d is mr.functional.conv2d
    assert nn.functional.batch_norm is mr.functional.batch_norm
    assert nn.functional.cross_entropy is mr.functional.cross_entropy


def test_adaptive_pooling_layer_takes_sizes_its_output_does_not_divide():
    """As PyTorch's: VGG-19's 7x7 pooling after five max pools of a 32x32 image (a 1x1 map, repeated) or
    of a 100x100 one (3x3, overlapping windows); shape inference gives what the forward pass gives."""
    layer = mr.nn.AdaptiveAvgPool2d(7)
    for size in (1, 3):
        x = mr.tensor(np.random.default_rng(size).standard_normal((2, 4, size, size)))
        y = layer(x)
        assert y.shape == layer.output_shape(x.shape) == (2, 4, 7, 7)
        np.testing.assert_array_equal(y.numpy(), mr.functional.adaptive_avg_pool2d(x, 7).numpy())
    np.testing.assert_allclose(layer(mr.tensor(np.ones((1, 1, 1, 1)))).numpy(), np.ones((1, 1, 7, 7)))
