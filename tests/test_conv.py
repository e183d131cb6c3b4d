"""conv2d: gradcheck on drawn shapes, parity with PyTorch, the implementation registry, bad input."""
import numpy as np
import pytest
from conftest import assert_close
from hypothesis import example, given, settings
from hypothesis import strategies as st

import minires as mr
import minires.functional as F
from minires import backend
from minires.functional.conv import Im2colConv2d


def as_pair(v):
    return (v, v) if isinstance(v, int) else v


@st.composite
def conv_cases(draw):
    """A small conv2d problem whose kernel fits the padded input."""
    kernel = draw(st.sampled_from([(1, 1), (3, 3), (2, 3)]), label="kernel")
    stride = draw(st.sampled_from([1, 2, (2, 1)]), label="stride")
    padding = draw(st.sampled_from([0, 1, 2, (0, 1)]), label="padding")
    pad = as_pair(padding)
    size = [draw(st.integers(max(1, kernel[a] - 2 * pad[a]), 6), label="size") for a in (0, 1)]
    return dict(n=draw(st.integers(1, 2)), c=draw(st.integers(1, 3)), o=draw(st.integers(1, 3)), hw=tuple(size),
                kernel=kernel, stride=stride, padding=padding, bias=draw(st.booleans()),
                non_contiguous=draw(st.booleans()), seed=draw(st.integers(0, 2 ** 16)))


# the cases the issue names, always run on top of the drawn ones
REQUIRED = [
    dict(n=1, c=2, o=3, hw=(5, 7), kernel=(3, 3), stride=2, padding=1, bias=True, non_contiguous=True, seed=1),
    dict(n=2, c=3, o=2, hw=(5, 5), kernel=(1, 1), stride=1, padding=2, bias=False, non_contiguous=False, seed=2),
    dict(n=1, c=1, o=2, hw=(3, 5), kernel=(2, 3), stride=(2, 1), padding=0, bias=True, non_contiguous=True, seed=3),
]


def stored_transposed(a):
    """The same values in a non-contiguous array (the last two axes swapped in memory)."""
    return np.ascontiguousarray(a.swapaxes(-1, -2)).swapaxes(-1, -2)


def make_arrays(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["n"], case["c"]) + case["hw"])
    w = rng.standard_normal((case["o"], case["c"]) + case["kernel"])
    b = rng.standard_normal(case["o"]) if case["bias"] else None
    if case["non_contiguous"]:
        x, w = stored_transposed(x), stored_transposed(w)
    return x, w, b


def leaves(*arrays):
    # mr.Tensor keeps the array as it is (mr.tensor would copy it into contiguous memory)
    return [None if a is None else mr.Tensor(a, requires_grad=True) for a in arrays]


def apply_conv(case):
    return lambda x, w, b: F.conv2d(x, w, b, stride=case["stride"], padding=case["padding"])


@settings(max_examples=20, deadline=None)
@given(case=conv_cases())
@example(case=REQUIRED[0])
@example(case=REQUIRED[1])
@example(case=REQUIRED[2])
def test_gradcheck(case):
    inputs = leaves(*make_arrays(case))
    assert mr.gradcheck(apply_conv(case), inputs)


@settings(max_examples=20, deadline=None)
@given(case=conv_cases())
@example(case=REQUIRED[0])
@example(case=REQUIRED[1])
@example(case=REQUIRED[2])
def test_matches_pytorch(torch_oracle, case):
    torch = torch_oracle
    arrays = make_arrays(case)
    ours = leaves(*arrays)
    theirs = [None if a is None else torch.tensor(a, requires_grad=True) for a in arrays]
    y = apply_conv(case)(*ours)
    t_y = torch.nn.functional.conv2d(*theirs, stride=case["stride"], padding=case["padding"])
    assert_close(y, t_y, 1e-10)
    grad_out = stored_transposed(np.random.default_rng(0).standard_normal(y.shape))  # non-contiguous too
    y.backward(grad_out)
    t_y.backward(torch.tensor(grad_out))
    for mine, torch_leaf in zip(ours, theirs):
        if mine is not None:
            assert_close(mine.grad, torch_leaf.grad, 1e-10)


def test_float32_stays_float32():
    x = mr.tensor(np.ones((1, 2, 4, 4)), dtype="float32", requires_grad=True)
    w = mr.tensor(np.ones((3, 2, 3, 3)), dtype="float32", requires_grad=True)
    y = F.conv2d(x, w, padding=1)
    y.sum().backward()
    assert y.dtype == x.grad.dtype == w.grad.dtype == np.float32
    # a centre pixel is seen by all 9 taps of each of the 3 filters
    assert x.grad.numpy()[0, 0, 1, 1] == 27.0


# ----------------------------------------------------------------------------- the registry
def small_problem():
    rng = np.random.default_rng(0)
    return leaves(rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3)))


def test_numpy_reference_is_registered():
    assert "numpy" in backend.available("conv2d")
    name, impl = backend.lookup("conv2d", np.zeros((1, 1, 3, 3)), "numpy")
    assert (name, impl) == ("numpy", Im2colConv2d)


def test_impl_by_name_and_by_context_agree_and_backward_uses_the_same_one():
    x, w = small_problem()
    y_default = F.conv2d(x, w, stride=2, padding=1)
    y_named = F.conv2d(x, w, stride=2, padding=1, impl="numpy")
    with backend.using("conv2d", "numpy"):
        y_context = F.conv2d(x, w, stride=2, padding=1)
    assert y_named.grad_fn.ctx.impl_name == "numpy"
    assert y_context.grad_fn.ctx.impl is Im2colConv2d
    np.testing.assert_allclose(y_named.numpy(), y_context.numpy(), rtol=1e-12)
    assert y_default.shape == y_named.shape == (2, 4, 3, 3)


def test_unknown_impl_is_refused():
    x, w = small_problem()
    with pytest.raises(ValueError, match="conv2d: no implementation 'no-such'"):
        F.conv2d(x, w, impl="no-such")


@pytest.mark.parametrize("frozen, unused", [(0, "backward_data"), (1, "backward_weight")])
def test_backward_skips_gradients_nobody_needs(monkeypatch, frozen, unused):
    inputs = small_problem()
    inputs[frozen].requires_grad = False

    def must_not_run(*args):
        raise AssertionError(f"{unused} ran although its input needs no gradient")

    monkeypatch.setattr(Im2colConv2d, unused, staticmethod(must_not_run))
    F.conv2d(*inputs, padding=1, impl="numpy").sum().backward()
    assert inputs[1 - frozen].grad is not None


# ----------------------------------------------------------------------------- bad input
def conv_on(x_shape, w_shape, b_shape=None, x_dtype="float64", w_dtype="float64", **kwargs):
    x = mr.tensor(np.zeros(x_shape), dtype=x_dtype)
    w = mr.tensor(np.zeros(w_shape), dtype=w_dtype)
    b = None if b_shape is None else mr.tensor(np.zeros(b_shape), dtype=w_dtype)
    return lambda: F.conv2d(x, w, b, **kwargs)


@pytest.mark.parametrize("call, error, message", [
    (conv_on((3, 8, 8), (4, 3, 3, 3)), ValueError, r"conv2d: input must be 4-D .*\(3, 8, 8\).*batch axis"),
    (conv_on((1, 3, 8, 8), (4, 3, 3)), ValueError, r"conv2d: weight must be 4-D.*\(4, 3, 3\)"),
    (conv_on((1, 3, 8, 8), (4, 5, 3, 3)), ValueError,
     r"conv2d: input shape \(1, 3, 8, 8\) has 3 channels but weight shape \(4, 5, 3, 3\) expects 5: dimension 1"),
    (conv_on((1, 3, 2, 8), (4, 3, 5, 3), padding=1), ValueError,
     r"conv2d: kernel 5x3 is larger than the padded input 4x10 \(input shape \(1, 3, 2, 8\), padding \(1, 1\)\)"),
    (conv_on((1, 3, 8, 8), (4, 3, 3, 3), stride=0), ValueError, "conv2d: stride must be >= 1, got 0"),
    (conv_on((1, 3, 8, 8), (4, 3, 3, 3), stride=(1, -2)), ValueError, r"conv2d: stride must be >= 1"),
    (conv_on((1, 3, 8, 8), (4, 3, 3, 3), padding=-1), ValueError, "conv2d: padding must be >= 0"),
    (conv_on((1, 3, 8, 8), (4, 3, 3, 3), stride=(1, 2, 3)), TypeError, "conv2d: stride must be an int or a pair"),
    (conv_on((1, 3, 8, 8), (4, 3, 3, 3), stride=1.5), TypeError, "conv2d: stride must be an int or a pair"),
    (conv_on((1, 3, 8, 8), (4, 3, 3, 3), (3,)), ValueError, r"conv2d: bias shape \(3,\) .* shape \(4,\)"),
    (conv_on((1, 3, 8, 8), (4, 3, 3, 3), w_dtype="float32"), TypeError,
     "conv2d: input dtype float64 and weight dtype float32 differ; cast one"),
    (conv_on((2, 0, 8, 8), (4, 0, 3, 3), (4,), padding=1), ValueError,          # was a ZeroDivisionError
     r"conv2d: input shape \(2, 0, 8, 8\) has no channels, so there is nothing to convolve"),
])
def test_bad_input_raises_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()
