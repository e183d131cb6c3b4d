"""Double backward (``create_graph=True``), ``autograd.grad`` and ``gradgradcheck``.

Every op of a ResNet is checked to second order by finite differences in float64 (gradgradcheck),
and whole-network Hessian-vector products and a gradient penalty are compared with PyTorch's double
backward when PyTorch is installed.
"""
import re
from pathlib import Path

import numpy as np
import pytest

import minires as mr
import minires.functional as F
from minires import models
from minires.autograd import Function
from minires.functional.elementwise import Exp

from conftest import assert_close
from test_models import randomise_bn, torch_resnet

RNG = np.random.default_rng(0)


def leaf(*shape, low=None, high=None):
    """A float64 leaf that requires grad: standard normal, or uniform in [low, high]."""
    data = RNG.standard_normal(shape) if low is None else RNG.uniform(low, high, shape)
    return mr.tensor(data, dtype="float64", requires_grad=True)


def away_from_zero(*shape):
    """Normal values with |x| >= 0.2: ReLU-like kinks stay farther than the finite-difference step."""
    data = RNG.standard_normal(shape)
    return mr.tensor(np.where(np.abs(data) < 0.2, np.sign(data) * 0.2 + data, data), requires_grad=True)


def distinct(*shape):
    """A permutation of well-separated values: max pooling has a unique winner in every window."""
    return mr.tensor(RNG.permutation(np.prod(shape)).reshape(shape) * 0.1, dtype="float64", requires_grad=True)


LABELS = np.array([0, 2, 1, 2])

# name -> (function, inputs): every op a ResNet uses, and the elementwise/shape ops around them
OPS = {
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, padding=1), lambda: [leaf(2, 3, 5, 5), leaf(4, 3, 3, 3), leaf(4)]),
    "conv2d_stride2": (lambda x, w: F.conv2d(x, w, stride=2, padding=1), lambda: [leaf(2, 2, 6, 6), leaf(3, 2, 3, 3)]),
    "conv2d_1x1_stride2": (lambda x, w: F.conv2d(x, w, stride=2), lambda: [leaf(2, 2, 5, 5), leaf(3, 2, 1, 1)]),
    "batch_norm_train": (lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True),
                         lambda: [leaf(4, 3, 2, 2), leaf(3, low=0.5, high=1.5), leaf(3)]),
    "batch_norm_train_2d": (lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True),
                            lambda: [leaf(5, 3), leaf(3, low=0.5, high=1.5), leaf(3)]),
    "batch_norm_eval": (lambda x, g, b: F.batch_norm(x, np.array([0.1, -0.2, 0.3]), np.array([0.5, 1.5, 2.0]), g, b),
                        lambda: [leaf(2, 3, 2, 2), leaf(3), leaf(3)]),
    "relu": (lambda x: F.relu(x) * x, lambda: [away_from_zero(3, 4)]),
    "add": (lambda a, b: (a + b) * a, lambda: [leaf(2, 3), leaf(3)]),
    "add_relu": (lambda a, b: F.add_relu(a, b) * a, lambda: [away_from_zero(2, 3), leaf(2, 3, low=0, high=0.05)]),
    "max_pool2d": (lambda x: F.max_pool2d(x, 3, 2, 1) ** 2, lambda: [distinct(2, 2, 5, 5)]),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, 2, 1) ** 2, lambda: [leaf(2, 2, 5, 5)]),
    "global_avg_pool2d": (lambda x: F.global_avg_pool2d(x) ** 2, lambda: [leaf(2, 3, 3, 3)]),
    "adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, 2) ** 2, lambda: [leaf(2, 2, 4, 4)]),
    "linear": (lambda x, w, b: F.linear(x, w, b) ** 2, lambda: [leaf(3, 4), leaf(2, 4), leaf(2)]),
    "matmul_batched": (lambda a, b: a @ b, lambda: [leaf(2, 3, 4), leaf(4, 2)]),
    "matmul_vector": (lambda a, b: a @ b, lambda: [leaf(3, 4), leaf(4)]),
    "cross_entropy": (lambda z: F.cross_entropy(z, LABELS), lambda: [leaf(4, 3)]),
    "nll_loss": (lambda z: F.nll_loss(z * z, LABELS), lambda: [leaf(4, 3)]),
    "log_softmax": (lambda z: F.log_softmax(z, axis=1), lambda: [leaf(3, 4)]),
    "softmax": (lambda z: F.softmax(z, axis=0), lambda: [leaf(3, 4)]),
    "mul": (lambda a, b: a * b, lambda: [leaf(2, 3), leaf(2, 1)]),
    "div": (lambda a, b: a / b, lambda: [leaf(2, 3), leaf(3, low=0.5, high=2)]),
    "pow": (lambda a, b: a ** b, lambda: [leaf(2, 3, low=0.5, high=2), leaf(3, low=-1, high=2)]),
    "pow_scalar": (lambda a: a ** 3, lambda: [leaf(2, 3)]),
    "exp": (lambda x: x.exp(), lambda: [leaf(2, 3)]),
    "log": (lambda x: x.log(), lambda: [leaf(2, 3, low=0.5, high=2)]),
    "sqrt": (lambda x: x.sqrt(), lambda: [leaf(2, 3, low=0.5, high=2)]),
    "abs": (lambda x: x.abs() * x, lambda: [away_from_zero(2, 3)]),
    "maximum": (lambda a, b: F.maximum(a, b) * a, lambda: [leaf(2, 3), leaf(2, 3)]),
    "neg_sub": (lambda a, b: (-a - b) * a, lambda: [leaf(2, 3), leaf(2, 3)]),
    "sum_mean": (lambda x: x.sum(axis=1) ** 2 + x.mean(axis=(0, 1), keepdims=True) ** 2, lambda: [leaf(2, 3, 2)]),
    "max": (lambda x: x.max(axis=1) ** 2, lambda: [distinct(3, 4)]),
    "var": (lambda x: x.var(axis=0, unbiased=True), lambda: [leaf(4, 3)]),
    "reshape_flatten_transpose": (lambda x: (x.flatten(1).T.reshape(2, 3, 4) * x.transpose(1, 0, 2)).permute(2, 0, 1),
                                  lambda: [leaf(3, 2, 4)]),
    "pad_getitem": (lambda x: F.pad(x, ((0, 0), (1, 2)))[:, 1:4] ** 2, lambda: [leaf(2, 3)]),
    "getitem_advanced": (lambda x: x[np.array([0, 2, 0])] ** 2, lambda: [leaf(3, 2)]),
    "concatenate": (lambda a, b: F.concatenate([a * b, b], axis=1) ** 2, lambda: [leaf(2, 3), leaf(2, 3)]),
    "clone": (lambda x: F.clone(x) ** 2, lambda: [leaf(2, 3)]),
}


@pytest.mark.parametrize("name", OPS)
def test_second_derivatives_match_finite_differences(name):
    fn, make_inputs = OPS[name]
    assert mr.gradgradcheck(fn, make_inputs())


@pytest.mark.parametrize("name", OPS)
def test_first_derivatives_match_finite_differences(name):
    """gradgradcheck compares the double backward with the *first* backward, so a wrong first backward
    can pass it: the first derivatives of the same ops, checked on their own."""
    fn, make_inputs = OPS[name]
    state = RNG.bit_generator.state                 # the tests below draw the inputs they always drew
    try:
        assert mr.gradcheck(fn, make_inputs())
    finally:
        RNG.bit_generator.state = state


def test_every_op_of_minires_functional_is_checked_by_finite_differences(monkeypatch):
    """Tutorial 02 says so, all but the cast ``to`` (float64 differences cannot check a cast to another
    dtype). Every other ``Function`` of ``minires.functional`` is applied by a case of ``OPS`` (checked to
    first order above), or by the double backward of one (so its first derivative is that case's second,
    which gradgradcheck checks)."""
    from minires.functional import conv, elementwise, linear, loss, norm, pool, reduce, shape
    modules = (conv, elementwise, linear, loss, norm, pool, reduce, shape)
    defined = {cls for module in modules for cls in vars(module).values()
               if isinstance(cls, type) and issubclass(cls, Function) and cls.__module__ == module.__name__}
    applied, apply = set(), Function.apply.__func__
    monkeypatch.setattr(Function, "apply", classmethod(lambda cls, *args, **kwargs: (applied.add(cls),
                                                                                   apply(cls, *args, **kwargs))[1]))
    state = RNG.bit_generator.state
    try:
        for fn, make_inputs in OPS.values():
            inputs = make_inputs()
            outputs = fn(*inputs)
            grads = mr.autograd.grad(outputs, inputs, mr.tensor(np.ones(outputs.shape)), create_graph=True)
            sum(g.sum() for g in grads).backward()
    finally:
        RNG.bit_generator.state = state
    assert {cls.__name__ for cls in defined - applied} == {"To"}


def test_gradgradcheck_catches_a_wrong_double_backward(monkeypatch):
    """Exp's double backward with the saved output cut from the graph is first-order right, second-order wrong."""
    monkeypatch.setattr(Exp, "backward_graph", staticmethod(lambda ctx, g: g * ctx.saved_tensors[0].detach()))
    x = leaf(2, 3)
    assert mr.gradcheck(lambda t: t.exp(), [x])
    with pytest.raises(mr.GradcheckError, match="gradcheck failed"):
        mr.gradgradcheck(lambda t: t.exp(), [x])


class Cube(Function):
    """y = x^3 with an array-only backward: double backward must refuse it, by name."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x * x * g


def test_an_op_without_double_backward_raises_naming_it():
    x = leaf(3)
    with pytest.raises(RuntimeError, match="create_graph=True .* cannot go through the op Cube"):
        Cube.apply(x).sum().backward(create_graph=True)
    y = Cube.apply(x).sum()
    y.backward()                                    # first order still works
    assert_close(x.grad, 3 * x.numpy() ** 2, 1e-12)


# ----------------------------------------------------------------------------- autograd.grad semantics
def test_grad_returns_gradients_without_touching_dot_grad():
    x, w = leaf(3), leaf(3)
    (gx, gw) = mr.autograd.grad((x * w).sum(), [x, w])
    assert_close(gx, w.numpy(), 1e-15)
    assert_close(gw, x.numpy(), 1e-15)
    assert x.grad is None and w.grad is None
    assert gx.grad_fn is None                       # no create_graph: plain values


def test_grad_of_several_outputs_sums_their_products():
    x = leaf(3)
    y1, y2 = x * 2, x * x
    (g,) = mr.autograd.grad([y1, y2], x, grad_outputs=[mr.tensor(np.ones(3)), mr.tensor(np.full(3, 0.5))])
    assert_close(g, 2 + x.numpy(), 1e-15)
    (g,) = mr.autograd.grad(x * x, [x], grad_outputs=[mr.tensor(np.ones(3))])   # one output, in a list
    assert_close(g, 2 * x.numpy(), 1e-15)


def test_grad_with_respect_to_an_intermediate_tensor():
    x = leaf(2, 3)
    h = x * 3
    (gh,) = mr.autograd.grad((h * h).sum(), h)
    assert_close(gh, 2 * h.numpy(), 1e-15)


def test_grad_unused_input_raises_unless_allowed():
    x, unused = leaf(3), leaf(2)
    with pytest.raises(RuntimeError, match="input 1 .* was not used .* allow_unused=True"):
        mr.autograd.grad(x.sum(), [x, unused])
    gx, gu = mr.autograd.grad(x.sum(), [x, unused], allow_unused=True)
    assert gu is None and np.all(gx.numpy() == 1)


def test_grad_needs_grad_outputs_for_non_scalars_and_inputs_that_require_grad():
    x = leaf(3)
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar outputs"):
        mr.autograd.grad(x * 2, x)
    with pytest.raises(RuntimeError, match="input 0 does not require grad"):
        mr.autograd.grad((x * 2).sum(), mr.tensor([1.0, 2.0]))


def test_retain_graph_defaults_to_create_graph():
    x = leaf(3)
    y = (x * x.exp()).sum()
    mr.autograd.grad(y, x)
    with pytest.raises(RuntimeError, match="already freed"):
        mr.autograd.grad(y, x)
    y = (x * x.exp()).sum()
    mr.autograd.grad(y, x, create_graph=True)
    (again,) = mr.autograd.grad(y, x)             # the graph was kept
    assert_close(again, (1 + x.numpy()) * np.exp(x.numpy()), 1e-12)


def test_backward_create_graph_gives_differentiable_grads_and_accumulates():
    x = leaf(4)
    (x ** 3).sum().backward(create_graph=True)
    assert x.grad.grad_fn is not None
    assert_close(x.grad, 3 * x.numpy() ** 2, 1e-12)
    first = x.grad
    x.grad = None
    first.sum().backward()                          # d/dx sum(3 x^2) = 6 x
    assert_close(x.grad, 6 * x.numpy(), 1e-12)


def test_hessian_of_a_quadratic_form_is_the_symmetrised_matrix():
    a = RNG.standard_normal((4, 4))
    x = leaf(4)
    (g,) = mr.autograd.grad(x @ mr.tensor(a) @ x, x, create_graph=True)
    rows = [mr.autograd.grad(g[i], x, retain_graph=True)[0].numpy() for i in range(4)]
    assert_close(np.stack(rows), a + a.T, 1e-12)


# ----------------------------------------------------------------------------- against PyTorch
class SmallNet(mr.nn.Module):
    """conv-BN-ReLU, a residual conv-BN branch, add + ReLU, max pool, global average pool, linear."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = mr.nn.Conv2d(2, 3, 3, padding=1, bias=False), mr.nn.BatchNorm2d(3)
        self.conv2, self.bn2 = mr.nn.Conv2d(3, 3, 3, padding=1), mr.nn.BatchNorm2d(3)
        self.fc = mr.nn.Linear(3, 4)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)) + h)
        h = F.max_pool2d(h, 2)
        return self.fc(F.global_avg_pool2d(F.avg_pool2d(h, 3, 1, 1)))


def torch_small_net(torch):
    nn, tF = torch.nn, torch.nn.functional

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3)
            self.conv2, self.bn2 = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)
            self.fc = nn.Linear(3, 4)

        def forward(self, x):
            h = tF.relu(self.bn1(self.conv1(x)))
            h = tF.relu(self.bn2(self.conv2(h)) + h)
            h = tF.max_pool2d(h, 2)
            return self.fc(tF.avg_pool2d(h, 3, 1, 1).mean(dim=(2, 3)))

    return Net().double()


def paired_models(torch, ours, theirs, seed=0):
    """The same float64 weights (random BN affine and running statistics) in both."""
    ours.double()
    randomise_bn(ours, np.random.default_rng(seed))
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return ours, theirs


def assert_all_close(ours, theirs, rtol):
    """Each pair close, relative to the largest entry of them all: a bias before a training-mode BN has
    an exactly zero gradient, which both libraries give only up to rounding."""
    scale = max(float(np.abs(t.detach().numpy()).max()) for t in theirs)
    for ours_t, their_t in zip(ours, theirs):
        assert_close(ours_t, their_t.detach().numpy(), rtol, scale=scale)


def hessian_vector_products(loss, params, vectors, grad):
    """H v for the loss's Hessian in the parameters: differentiate <grad loss, v> once more."""
    grads = grad(loss, params, create_graph=True)
    dot = sum((g * v).sum() for g, v in zip(grads, vectors))
    return grad(dot, params)


def assert_same_hvp(torch, ours, theirs, x, labels, rng, rtol):
    """The cross-entropy's Hessian times a random vector, in the parameters, in both libraries."""
    params, ref_params = list(ours.parameters()), list(theirs.parameters())
    vectors = [rng.standard_normal(p.shape) for p in params]
    loss = F.cross_entropy(ours(mr.tensor(x)), labels)
    hv = hessian_vector_products(loss, params, [mr.tensor(v) for v in vectors], mr.autograd.grad)
    ref_loss = torch.nn.functional.cross_entropy(theirs(torch.tensor(x)), torch.from_numpy(labels))
    ref_hv = hessian_vector_products(ref_loss, ref_params, [torch.tensor(v) for v in vectors], torch.autograd.grad)
    assert_all_close(hv, ref_hv, rtol)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_small_net_hvp_matches_pytorch(torch_oracle, training):
    torch = torch_oracle
    ours, theirs = paired_models(torch, SmallNet(), torch_small_net(torch))
    ours.train(training)
    theirs.train(training)
    rng = np.random.default_rng(1)
    x, labels = rng.standard_normal((4, 2, 6, 6)), np.array([0, 3, 1, 2])
    assert_same_hvp(torch, ours, theirs, x, labels, rng, 1e-9)


def test_gradient_penalty_matches_pytorch(torch_oracle):
    """WGAN-GP style: loss = mean output + ||d output / d input||^2; gradients of it for the weights."""
    torch = torch_oracle
    ours, theirs = paired_models(torch, SmallNet(), torch_small_net(torch), seed=2)
    x = np.random.default_rng(3).standard_normal((3, 2, 6, 6))

    ours_x = mr.tensor(x, requires_grad=True)
    out = ours(ours_x).sum()
    (gx,) = mr.autograd.grad(out, ours_x, create_graph=True)
    (out + (gx * gx).sum()).backward()
    ref_x = torch.tensor(x, requires_grad=True)
    ref_out = theirs(ref_x).sum()
    (ref_gx,) = torch.autograd.grad(ref_out, ref_x, create_graph=True)
    (ref_out + (ref_gx * ref_gx).sum()).backward()

    assert_close(gx, ref_gx.detach().numpy(), 1e-10)
    assert_all_close([p.grad for p in ours.parameters()], [p.grad for p in theirs.parameters()], 1e-9)


def test_tiny_resnet_hvp_matches_pytorch(torch_oracle):
    """ResNet-8 (one basic block per stage, option-A shortcuts), same weights by state-dict name."""
    torch = torch_oracle
    ours, theirs = paired_models(torch, models.cifar_resnet(8), torch_resnet(torch, "basic", (1, 1, 1), (16, 32, 64)))
    rng = np.random.default_rng(4)
    x, labels = rng.standard_normal((2, 3, 8, 8)), np.array([3, 7])
    assert_same_hvp(torch, ours, theirs, x, labels, rng, 1e-8)


# ----------------------------------------------------------------------------- module backward hooks
def record_hook(calls, scale=None):
    """A full backward hook that records its arguments (and, with ``scale``, scales grad_input)."""
    def hook(module, grad_input, grad_output):
        calls.append((module, [None if g is None else g.numpy().copy() for g in grad_input],
                      [g.numpy().copy() for g in grad_output]))
        if scale is not None:
            return tuple(None if g is None else g * scale for g in grad_input)
    return hook


def test_full_backward_hook_matches_pytorch_on_a_residual_block(torch_oracle):
    """grad_input of a block counts only the paths inside it; grad_output is the gradient at its output."""
    torch = torch_oracle
    block = models.BasicBlock(3, 3, stride=1)
    reference = torch_resnet(torch, "basic", (1,), (3,), in_channels=3).layer1[0]
    block, reference = paired_models(torch, block, reference)
    x = np.random.default_rng(5).standard_normal((2, 3, 5, 5))
    calls, ref_calls = [], []
    handle = block.register_full_backward_hook(record_hook(calls))
    reference.register_full_backward_hook(record_hook(ref_calls))

    ours_x = mr.tensor(x, requires_grad=True)
    (block(ours_x) ** 2).sum().backward()
    ref_x = torch.tensor(x, requires_grad=True)
    (reference(ref_x) ** 2).sum().backward()

    assert len(calls) == len(ref_calls) == 1 and calls[0][0] is block
    assert_close(calls[0][1][0], ref_calls[0][1][0], 1e-10)
    assert_close(calls[0][2][0], ref_calls[0][2][0], 1e-10)
    handle.remove()
    block(ours_x).sum().backward()
    assert len(calls) == 1


def test_full_backward_hook_inside_a_block_sees_only_its_branch():
    """conv1's grad_input is the branch's share of the block input gradient; the shortcut adds the rest."""
    block = models.BasicBlock(2, 2, stride=1).double()
    calls = []
    block.conv1.register_full_backward_hook(record_hook(calls))
    x = leaf(2, 2, 4, 4)
    y = block(x)
    y.backward(mr.tensor(np.ones(y.shape)))
    relu_mask = (y.numpy() > 0).astype(float)     # what the identity shortcut carries back
    assert len(calls) == 1
    assert_close(calls[0][1][0] + relu_mask, x.grad.numpy(), 1e-12)
    assert np.abs(calls[0][1][0]).max() > 0.1     # the branch's share is not nothing


def test_full_backward_hook_can_replace_grad_input_and_sees_none_for_data():
    conv = mr.nn.Conv2d(2, 3, 3).double()
    calls = []
    conv.register_full_backward_hook(record_hook(calls, scale=0.5))
    x = leaf(1, 2, 4, 4)
    conv(x).sum().backward()
    assert_close(x.grad, 0.5 * calls[0][1][0], 1e-15)
    data = mr.tensor(np.ones((1, 2, 4, 4)))       # no gradient wanted: the hook still runs, grad_input (None,)
    conv(data).sum().backward()
    assert calls[1][1] == [None] and calls[1][2][0].shape == (1, 3, 2, 2)


class TwiceDifferentiableCube(Cube):
    """The README's one line: Cube's backward uses only ``*``, so it serves Tensors as well."""

    backward_graph = Cube.backward


def test_one_line_makes_an_op_twice_differentiable():
    x = leaf(3)
    assert mr.gradgradcheck(TwiceDifferentiableCube.apply, [x])
    (g,) = mr.autograd.grad(TwiceDifferentiableCube.apply(x).sum(), x, create_graph=True)
    (h,) = mr.autograd.grad(g.sum(), x)
    assert_close(h, 6 * x.numpy(), 1e-14)


def test_subpackages_are_attributes_of_a_fresh_import():
    """``import minires as mr`` alone makes ``mr.inspect`` and ``mr.autograd.grad`` reachable."""
    import subprocess
    import sys
    code = "import minires as mr; print(mr.inspect.BackwardStepper.__name__, mr.autograd.grad.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["BackwardStepper", "grad"]


def test_create_graph_records_inside_no_grad_and_through_a_cast():
    """The whole backward pass records under create_graph (PyTorch's rule), here through a float32 cast:
    values exactly representable in float32, so the second derivative 6x is exact."""
    x = mr.tensor([0.5, 1.5, -2.0], dtype="float64", requires_grad=True)
    y = (x.float() ** 3).sum()
    with mr.no_grad():
        y.backward(create_graph=True)
    assert x.grad.dtype == np.float64 and x.grad.grad_fn is not None
    (second,) = mr.autograd.grad(x.grad.sum(), x)
    np.testing.assert_array_equal(second.numpy(), 6 * x.numpy())


def test_the_readmes_adding_an_op_example_runs_and_its_one_line_makes_it_twice_differentiable():
    """The README's "Adding an op" block, run as it stands (its gradcheck included); then what the README
    says of it: without ``backward_graph`` a double backward raises naming the op, with the one line
    ``backward_graph = backward`` it passes gradgradcheck."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Adding an op", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {}
    exec(compile(code, "README.md (Adding an op)", "exec"), namespace)
    square, x = namespace["square"], namespace["x"]
    with pytest.raises(RuntimeError, match="cannot go through the op Square"):
        mr.gradgradcheck(square, [x])
    namespace["Square"].backward_graph = namespace["Square"].backward
    assert mr.gradgradcheck(square, [x])
