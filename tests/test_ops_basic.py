"""Elementwise, reduction, shape and matmul ops: gradcheck on random shapes, and parity with PyTorch.

One table drives both checks (tinygrad's habit): each row is an op applied the same way with minires
and with torch, and a strategy that draws its input shapes.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minires as mr
import minires.functional as F

try:
    import torch
except ImportError:  # the oracle is optional
    torch = None

dims = st.integers(1, 4)
shape2 = st.tuples(dims, dims)
shape3 = st.tuples(dims, dims, dims)


def positive(rng, shape):
    return rng.uniform(0.5, 2.0, shape)


def signed(rng, shape):
    # keep values away from 0 so kinks (abs, relu, max ties) are not straddled by finite differences
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 2.0, shape)


# name -> (minires fn, torch fn, shapes strategy, value generator)
OPS = {
    "add_broadcast": (lambda a, b: a + b, lambda a, b: a + b, st.just([(3, 4), (1, 4)]), signed),
    "sub_broadcast": (lambda a, b: a - b, lambda a, b: a - b, st.just([(2, 3, 4), (3, 1)]), signed),
    "mul": (lambda a, b: a * b, lambda a, b: a * b, shape2.map(lambda s: [s, s]), signed),
    "div": (lambda a, b: a / b, lambda a, b: a / b, shape2.map(lambda s: [s, (1, s[1])]), positive),
    "pow": (lambda a, b: a ** b, lambda a, b: a ** b, shape2.map(lambda s: [s, s]), positive),
    "pow_scalar": (lambda a: a ** 3, lambda a: a ** 3, shape2.map(lambda s: [s]), signed),
    "neg": (lambda a: -a, lambda a: -a, shape3.map(lambda s: [s]), signed),
    "exp": (F.exp, torch and torch.exp, shape2.map(lambda s: [s]), signed),
    "log": (F.log, torch and torch.log, shape2.map(lambda s: [s]), positive),
    "sqrt": (F.sqrt, torch and torch.sqrt, shape2.map(lambda s: [s]), positive),
    "abs": (F.abs, torch and torch.abs, shape2.map(lambda s: [s]), signed),
    "relu": (F.relu, torch and torch.relu, shape3.map(lambda s: [s]), signed),
    "maximum": (F.maximum, torch and torch.maximum, shape2.map(lambda s: [s, s]), signed),
    "sum_all": (lambda a: a.sum(), lambda a: a.sum(), shape3.map(lambda s: [s]), signed),
    "sum_axis": (lambda a: F.sum(a, axis=1, keepdims=True), lambda a: a.sum(1, keepdim=True),
                 shape3.map(lambda s: [s]), signed),
    "mean_axes": (lambda a: F.mean(a, axis=(0, 2)), lambda a: a.mean((0, 2)), shape3.map(lambda s: [s]), signed),
    "max_axis": (lambda a: F.max(a, axis=-1), lambda a: a.amax(-1), shape3.map(lambda s: [s]), signed),
    "var_biased": (lambda a: F.var(a, axis=0), lambda a: a.var(0, unbiased=False),
                   shape2.map(lambda s: [s]), signed),
    "var_unbiased": (lambda a: F.var(a, axis=1, unbiased=True), lambda a: a.var(1, unbiased=True),
                     st.tuples(dims, st.integers(2, 4)).map(lambda s: [s]), signed),
    "reshape": (lambda a: a.reshape(-1, 2), lambda a: a.reshape(-1, 2),
                st.tuples(dims, dims).map(lambda s: [(s[0], 2 * s[1])]), signed),
    "permute": (lambda a: a.permute(2, 0, 1), lambda a: a.permute(2, 0, 1), shape3.map(lambda s: [s]), signed),
    "transpose": (lambda a: a.transpose(0, 2), lambda a: a.transpose(0, 2), shape3.map(lambda s: [s]), signed),
    "transpose_2d": (lambda a: a.transpose(0, 1), lambda a: a.transpose(0, 1), shape2.map(lambda s: [s]), signed),
    "slice": (lambda a: a[1:, ::2], lambda a: a[1:, ::2], st.tuples(st.integers(2, 4), dims).map(lambda s: [s]),
              signed),
    "index_repeated": (lambda a: a[[0, 1, 0], 1:], lambda a: a[[0, 1, 0], 1:],
                       st.tuples(st.integers(2, 4), st.integers(2, 4)).map(lambda s: [s]), signed),
    "pad": (lambda a: F.pad(a, ((1, 0), (2, 1))), lambda a: torch.nn.functional.pad(a, (2, 1, 1, 0)),
            shape2.map(lambda s: [s]), signed),
    "concatenate": (lambda a, b: F.concatenate([a, b], axis=1), lambda a, b: torch.cat([a, b], 1),
                    st.tuples(dims, dims, dims).map(lambda s: [(s[0], s[1]), (s[0], s[2])]), signed),
    "flatten": (lambda a: F.flatten(a, 1), lambda a: torch.flatten(a, 1), shape3.map(lambda s: [s]), signed),
    "matmul": (F.matmul, torch and torch.matmul, st.tuples(dims, dims, dims).map(lambda s: [s[:2], s[1:]]),
               signed),
    "matmul_batched": (F.matmul, torch and torch.matmul,
                       st.tuples(dims, dims, dims).map(lambda s: [(2,) + s[:2], s[1:]]), signed),
    "matvec": (F.matmul, torch and torch.matmul, st.tuples(dims, dims).map(lambda s: [s, s[1:]]), signed),
    "dot": (F.matmul, torch and torch.matmul, dims.map(lambda n: [(n,), (n,)]), signed),
    "linear": (lambda x, w, b: F.linear(x, w, b), torch and torch.nn.functional.linear,
               st.tuples(dims, dims, dims).map(lambda s: [s[:2], (s[2], s[1]), (s[2],)]), signed),
}


def draw_inputs(data, name):
    _, _, shapes, values = OPS[name]
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16), label="seed"))
    arrays = [values(rng, s) for s in data.draw(shapes, label="shapes")]
    if data.draw(st.booleans(), label="non-contiguous") and arrays[0].ndim >= 2:
        # the same values, stored transposed: a non-contiguous view
        arrays[0] = np.ascontiguousarray(arrays[0].swapaxes(0, 1)).swapaxes(0, 1)
    return arrays


@pytest.mark.parametrize("name", sorted(OPS))
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_gradcheck(name, data):
    arrays = draw_inputs(data, name)
    inputs = [mr.Tensor(a, requires_grad=True) for a in arrays]  # keeps non-contiguous views
    assert mr.gradcheck(OPS[name][0], inputs)


@pytest.mark.skipif(torch is None, reason="PyTorch (the optional oracle) is not installed")
@pytest.mark.parametrize("name", sorted(OPS))
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_matches_pytorch(name, data):
    ours, theirs = OPS[name][:2]
    arrays = draw_inputs(data, name)
    inputs = [mr.Tensor(a, requires_grad=True) for a in arrays]  # keeps non-contiguous views
    t_inputs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    y, t_y = ours(*inputs), theirs(*t_inputs)
    np.testing.assert_allclose(y.numpy(), t_y.detach().numpy(), rtol=1e-10, atol=1e-12)
    weights = np.random.default_rng(0).standard_normal(y.shape)
    (y * weights).sum().backward()
    (t_y * torch.tensor(weights)).sum().backward()
    for x, t_x in zip(inputs, t_inputs):
        np.testing.assert_allclose(x.grad.numpy(), t_x.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda: F.matmul(mr.tensor(np.ones((2, 3))), mr.tensor(np.ones((4, 2)))), r"matmul: inner dimensions.*\(2, 3\) @ \(4, 2\)"),
    (lambda: F.linear(mr.tensor(np.ones((2, 3))), mr.tensor(np.ones((4, 5)))), r"linear: input \(2, 3\) and weight \(4, 5\)"),
    (lambda: mr.tensor(np.ones(6)).reshape(4, 2), r"reshape: cannot reshape.*\(6,\).*\(4, 2\)"),
    (lambda: F.concatenate([mr.tensor(np.ones((2, 3))), mr.tensor(np.ones((3, 3)))], axis=1), "concatenate: shapes"),
    (lambda: F.sum(mr.tensor(np.ones((2, 3))), axis=2), "axis 2 is out of range"),
    (lambda: F.mean(mr.tensor(np.ones((2, 3))), axis=(1, -1)), r"reduction: axis=\(1, -1\) names an axis twice"),
    (lambda: F.var(mr.tensor(np.ones((1, 3))), axis=0, unbiased=True), "more than one value"),
    (lambda: F.var(mr.tensor(np.ones((0, 3))), axis=0), r"var: need a value to reduce, got 0 .*\(0, 3\)"),
    (lambda: F.max(mr.tensor(np.ones((0, 3))), axis=0), r"max: axes \(0,\) of shape \(0, 3\) hold no values"),
    (lambda: F.permute(mr.tensor(np.ones((2, 3))), 0, 0), "not a permutation"),
    (lambda: F.permute(mr.tensor(np.ones((2, 3))), 0, 3), r"permute: axis 3 is out of range for shape \(2, 3\)"),
    (lambda: F.transpose(mr.tensor(np.ones((2, 3, 4))), 0, 5), r"transpose: axis 5 is out of range"),
    (lambda: F.pad(mr.tensor(np.ones((2, 3))), ((1, 1),)), "one \\(before, after\\) pair per axis"),
    (lambda: F.pad(mr.tensor(np.ones((2, 3))), ((0, 0), (-1, 1))), r"pad: pad widths must be >= 0.*\(2, 3\)"),
])
def test_bad_input_raises_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_pad_with_torchs_flat_widths_is_told_numpys_pairs():
    with pytest.raises(TypeError, match=r"pad: pad_width must be one \(before, after\) pair per axis.*\(1, 1, 2, 2\)"):
        F.pad(mr.tensor(np.ones((1, 1, 2, 2))), (1, 1, 2, 2))


def test_linear_bias_of_the_wrong_size_or_dtype_is_refused():
    """NumPy would broadcast a (1,) bias over 4 outputs, or promote float32 to float64, without a word."""
    x, w = mr.tensor(np.ones((2, 3), np.float32)), mr.tensor(np.ones((4, 3), np.float32))
    for bias in (np.ones(5, np.float32), np.ones(1, np.float32)):
        with pytest.raises(ValueError, match=r"linear: bias shape \((5|1),\) does not match weight shape \(4, 3\).*\(4,\)"):
            F.linear(x, w, mr.tensor(bias))
    with pytest.raises(TypeError, match="linear: input dtype float64 and weight dtype float32 differ"):
        F.linear(x.double(), w)
    with pytest.raises(TypeError, match="linear: input dtype float32 and bias dtype float64 differ"):
        F.linear(x, w, mr.tensor(np.ones(4)))


def test_max_ties_share_the_gradient():
    x = mr.tensor([1.0, 3.0, 3.0], requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.5, 0.5])


def test_to_casts_and_gradient_returns_in_the_input_dtype():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    y = x.double()
    assert y.dtype == np.float64
    (y * y).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])


def test_pad_and_slice_keep_the_memory_layout():
    """Padding an NHWC-memory array (the CPU conv's output) gives NHWC memory, and a slice's gradient
    takes the incoming gradient's layout, so a residual stream stays in one layout."""
    x = mr.Tensor(np.ones((2, 4, 4, 3)).transpose(0, 3, 1, 2), requires_grad=True)   # NHWC memory
    inner, seen = x * 1.0, []
    inner.register_hook(seen.append)
    y = F.pad(inner[:, :, ::2, ::2], ((0, 0), (1, 1), (0, 0), (0, 0)))
    assert y.shape == (2, 5, 2, 2) and y.data.transpose(0, 2, 3, 1).flags.c_contiguous
    y.backward(np.ones((2, 2, 2, 5)).transpose(0, 3, 1, 2))
    grad = seen[0].data
    assert grad.transpose(0, 2, 3, 1).flags.c_contiguous
    expected = np.zeros((2, 3, 4, 4))
    expected[:, :, ::2, ::2] = 1
    np.testing.assert_array_equal(grad, expected)
