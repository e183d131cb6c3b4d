"""Pooling: gradcheck on drawn shapes, parity with PyTorch, max-pool ties, bad input."""
import numpy as np
import pytest
from conftest import assert_close
from hypothesis import example, given, settings
from hypothesis import strategies as st

import minires as mr
import minires.functional as F


def as_pair(v):
    return (v, v) if isinstance(v, int) else v


@st.composite
def pool_cases(draw):
    """A small pooling problem: padding at most half the kernel, kernel within the padded input."""
    kernel_size = draw(st.sampled_from([1, 2, 3, (2, 3)]), label="kernel_size")
    kernel = as_pair(kernel_size)
    padding = draw(st.integers(0, min(kernel) // 2), label="padding")
    size = tuple(draw(st.integers(max(1, k - 2 * padding), 7), label="size") for k in kernel)
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3))) + size, kernel_size=kernel_size,
                stride=draw(st.sampled_from([None, 1, 2])), padding=padding,
                non_contiguous=draw(st.booleans()), seed=draw(st.integers(0, 2 ** 16)))


REQUIRED = [  # batch 1, odd sizes, stride 2, padding, non-square kernel, non-contiguous storage
    dict(shape=(1, 2, 5, 7), kernel_size=3, stride=2, padding=1, non_contiguous=True, seed=1),
    dict(shape=(2, 1, 4, 5), kernel_size=(2, 3), stride=1, padding=1, non_contiguous=False, seed=2),
]


def distinct_values(case):
    """Values at least 0.1 apart, so no finite-difference step can change a window's maximum."""
    rng = np.random.default_rng(case["seed"])
    shape = case["shape"]
    x = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 1.0
    return np.ascontiguousarray(x.swapaxes(2, 3)).swapaxes(2, 3) if case["non_contiguous"] else x


def pool_with(op, case):
    return lambda x: op(x, case["kernel_size"], case["stride"], case["padding"])


POOLS = {"max_pool2d": F.max_pool2d, "avg_pool2d": F.avg_pool2d}


@pytest.mark.parametrize("name", sorted(POOLS))
@settings(max_examples=15, deadline=None)
@given(case=pool_cases())
@example(case=REQUIRED[0])
@example(case=REQUIRED[1])
def test_gradcheck(name, case):
    x = mr.Tensor(distinct_values(case), requires_grad=True)  # Tensor keeps the non-contiguous view
    assert mr.gradcheck(pool_with(POOLS[name], case), [x])


@pytest.mark.parametrize("name", sorted(POOLS))
@settings(max_examples=15, deadline=None)
@given(case=pool_cases())
@example(case=REQUIRED[0])
@example(case=REQUIRED[1])
def test_matches_pytorch(torch_oracle, name, case):
    torch = torch_oracle
    values = distinct_values(case)
    x, t_x = mr.Tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
    y = pool_with(POOLS[name], case)(x)
    t_y = pool_with(getattr(torch.nn.functional, name), case)(t_x)
    # An average of values that cancel can be ~1e-17 while its terms are ~1: judge it on their scale.
    assert_close(y, t_y, 1e-10, scale=float(np.abs(values).max()))
    grad_out = np.random.default_rng(0).standard_normal(y.shape)
    y.backward(grad_out)
    t_y.backward(torch.tensor(grad_out))
    assert_close(x.grad, t_x.grad, 1e-10, scale=float(np.abs(grad_out).max()))


GLOBAL_POOLS = {  # name -> (minires, torch, input shape)
    "adaptive_1": (lambda x: F.adaptive_avg_pool2d(x, 1),
                   lambda t, x: t.nn.functional.adaptive_avg_pool2d(x, 1), (2, 3, 5, 3)),
    "adaptive_2x3": (lambda x: F.adaptive_avg_pool2d(x, (2, 3)),
                     lambda t, x: t.nn.functional.adaptive_avg_pool2d(x, (2, 3)), (1, 2, 4, 6)),
    "global": (F.global_avg_pool2d, lambda t, x: x.mean((2, 3)), (2, 3, 3, 5)),
    # sizes that do not divide: PyTorch's overlapping windows [floor(i H/o), ceil((i+1) H/o)), and repeats
    "adaptive_7x4_of_10x9": (lambda x: F.adaptive_avg_pool2d(x, (7, 4)),
                             lambda t, x: t.nn.functional.adaptive_avg_pool2d(x, (7, 4)), (2, 3, 10, 9)),
    "adaptive_2_of_5x4": (lambda x: F.adaptive_avg_pool2d(x, 2),
                          lambda t, x: t.nn.functional.adaptive_avg_pool2d(x, 2), (1, 2, 5, 4)),
    "adaptive_5x4_of_3x3": (lambda x: F.adaptive_avg_pool2d(x, (5, 4)),
                            lambda t, x: t.nn.functional.adaptive_avg_pool2d(x, (5, 4)), (1, 1, 3, 3)),
}


def random_input(shape):
    return np.ascontiguousarray(np.random.default_rng(7).standard_normal(shape).swapaxes(2, 3)).swapaxes(2, 3)


@pytest.mark.parametrize("name", sorted(GLOBAL_POOLS))
def test_global_and_adaptive_gradcheck(name):
    ours, _, shape = GLOBAL_POOLS[name]
    assert mr.gradcheck(ours, [mr.Tensor(random_input(shape), requires_grad=True)])


@pytest.mark.parametrize("name", sorted(GLOBAL_POOLS))
def test_global_and_adaptive_match_pytorch(torch_oracle, name):
    ours, theirs, shape = GLOBAL_POOLS[name]
    values = random_input(shape)
    x, t_x = mr.Tensor(values, requires_grad=True), torch_oracle.tensor(values, requires_grad=True)
    y, t_y = ours(x), theirs(torch_oracle, t_x)
    assert y.shape == tuple(t_y.shape)
    assert_close(y, t_y, 1e-10)
    grad_out = np.random.default_rng(0).standard_normal(y.shape)
    y.backward(grad_out)
    t_y.backward(torch_oracle.tensor(grad_out))
    assert_close(x.grad, t_x.grad, 1e-10)


def test_max_pool_tie_sends_the_gradient_to_the_first_maximum():
    x = mr.tensor(np.ones((1, 1, 4, 4)), dtype="float64", requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    expected = np.zeros((4, 4))
    expected[::2, ::2] = 1.0  # the top-left pixel of each 2x2 window
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], expected)


def test_max_pool_ties_in_overlapping_windows_match_pytorch(torch_oracle):
    values = np.round(np.random.default_rng(3).uniform(0, 2, (2, 2, 6, 5)))  # many equal values
    x, t_x = mr.Tensor(values, requires_grad=True), torch_oracle.tensor(values, requires_grad=True)
    F.max_pool2d(x, 3, 1, 1).sum().backward()
    torch_oracle.nn.functional.max_pool2d(t_x, 3, 1, 1).sum().backward()
    assert_close(x.grad, t_x.grad, 1e-12)


@pytest.mark.parametrize("name", sorted(POOLS))
def test_float32_stays_float32(name):
    x = mr.tensor(np.arange(16.0).reshape(1, 1, 4, 4), dtype="float32", requires_grad=True)
    y = POOLS[name](x, 2)
    y.sum().backward()
    assert y.dtype == x.grad.dtype == np.float32


def zeros(*shape):
    return mr.tensor(np.zeros(shape))


@pytest.mark.parametrize("call, error, message", [
    (lambda: F.max_pool2d(zeros(3, 4, 4), 2), ValueError, r"max_pool2d: input must be 4-D .*\(3, 4, 4\)"),
    (lambda: F.avg_pool2d(zeros(1, 1, 2, 4), 3, padding=0), ValueError,
     r"avg_pool2d: kernel 3x3 is larger than the padded input 2x4"),
    (lambda: F.max_pool2d(zeros(1, 1, 4, 4), 2, padding=2), ValueError,
     r"max_pool2d: padding \(2, 2\) is more than half of the kernel \(2, 2\)"),
    (lambda: F.avg_pool2d(zeros(1, 1, 4, 4), 2, stride=0), ValueError, "avg_pool2d: stride must be >= 1"),
    (lambda: F.max_pool2d(zeros(1, 1, 4, 4), (2, 2, 2)), TypeError, "max_pool2d: kernel_size must be an int or a pair"),
    (lambda: F.adaptive_avg_pool2d(zeros(1, 1, 0, 4), 2), ValueError,
     r"adaptive_avg_pool2d: input of shape \(1, 1, 0, 4\) has no pixels to average"),
    (lambda: F.global_avg_pool2d(zeros(2, 3)), ValueError, r"global_avg_pool2d: input must be 4-D"),
])
def test_bad_input_raises_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()
