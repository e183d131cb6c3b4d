"""The engine: graph walk order, accumulation, freeing, hooks, modes, dtypes."""
import numpy as np
import pytest

import minires as mr
from minires.autograd import Function


def test_reused_node_gets_both_contributions():
    a = mr.tensor([3.0], requires_grad=True)
    b = a + a           # b = 2a
    c = b * b           # c = 4a^2, dc/da = 8a = 24
    c.backward()
    assert a.grad.numpy().tolist() == [24.0]


def test_diamond_visits_each_node_once_after_all_contributions():
    calls = []

    class Spy(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1

        @staticmethod
        def backward(ctx, g):
            calls.append(g.copy())
            return g

    x = mr.tensor([1.0, 2.0], requires_grad=True)
    s = Spy.apply(x)
    y = (s * 2 + s * 3).sum()   # s reached by two paths: its backward must run once with 2 + 3
    y.backward()
    assert len(calls) == 1
    np.testing.assert_array_equal(calls[0], [5.0, 5.0])
    np.testing.assert_array_equal(x.grad.numpy(), [5.0, 5.0])


def test_gradients_accumulate_across_calls_and_zero_grad_clears():
    w = mr.tensor([1.0, -2.0], requires_grad=True)
    (w * w).sum().backward()
    (w * w).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [4.0, -8.0])
    w.zero_grad()
    assert w.grad is None


def test_second_backward_through_freed_graph_raises_and_retain_graph_allows_it():
    x = mr.tensor([2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [8.0])
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_no_grad_records_nothing():
    x = mr.tensor([1.0], requires_grad=True)
    with mr.no_grad():
        y = x * 2
        with mr.enable_grad():
            z = x * 3
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn is not None
    assert mr.is_grad_enabled()


def test_hook_sees_and_replaces_gradient_and_can_be_removed():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    y = x * 3
    handle = y.register_hook(lambda g: seen.append(g.numpy().copy()) or g * 10)
    y.sum().backward()
    np.testing.assert_array_equal(seen[0], [1.0, 1.0])
    np.testing.assert_array_equal(x.grad.numpy(), [30.0, 30.0])
    handle.remove()
    x.zero_grad()
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])



def halve_rows(g):
    return g[0]                                           # a student's slip: one row instead of the whole gradient


@pytest.mark.parametrize("make", [lambda x: x * 3, lambda x: x], ids=["intermediate", "leaf"])
def test_a_hook_that_returns_the_wrong_shape_is_named_not_the_op(make):
    x = mr.tensor(np.ones((2, 3)), requires_grad=True)
    y = make(x)
    y.register_hook(halve_rows)
    with pytest.raises(RuntimeError, match=r"hook halve_rows on a tensor of shape \(2, 3\) returned a gradient of "
                                           r"shape \(3,\); a hook must return None .* or a gradient of shape \(2, 3\)"):
        (y * x).sum().backward()
    z = mr.tensor(np.ones(2), requires_grad=True)
    z.register_hook(lambda g: 5.0)
    with pytest.raises(RuntimeError, match=r"returned a float; a hook must return None"):
        (z * 2.0).sum().backward()

def test_retain_grad_keeps_intermediate_gradient():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    h = x * x
    h.retain_grad()
    (h * 5).sum().backward()
    np.testing.assert_array_equal(h.grad.numpy(), [5.0, 5.0])
    assert (x * x).grad is None


def test_backward_of_non_scalar_needs_grad():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"scalar outputs.*shape \(2,\)"):
        (x * 2).backward()
    (x * 2).backward(np.array([1.0, -1.0], dtype=np.float32))
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, -2.0])
    with pytest.raises(ValueError, match="shape"):
        (x * 2).backward(np.ones(3, dtype=np.float32))


def test_backward_without_requires_grad_raises():
    with pytest.raises(RuntimeError, match="requires_grad=True"):
        mr.tensor([1.0]).sum().backward()


def test_deep_chain_has_no_recursion_limit():
    x = mr.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.sum().backward()
    assert np.isclose(x.grad.item(), 1.0001 ** 5000, rtol=1e-3)


def test_broadcast_gradients_are_summed_back_to_each_shape():
    a = mr.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    b = mr.tensor([[10.0], [20.0]], requires_grad=True)  # (2, 1) broadcast over columns
    c = mr.tensor(2.0, requires_grad=True)               # scalar broadcast everywhere
    ((a + b) * c).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), np.full((2, 3), 2.0))
    np.testing.assert_array_equal(b.grad.numpy(), [[6.0], [6.0]])
    assert c.grad.item() == pytest.approx(np.arange(6.0).sum() + 3 * 10 + 3 * 20)


def test_indexing_with_repeated_indices_adds_gradients():
    x = mr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[np.array([0, 0, 2])].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 0.0, 1.0])


def test_dtype_rules_follow_pytorch():
    assert mr.tensor([1.0, 2.0]).dtype == np.float32
    assert mr.tensor(3.5).dtype == np.float32
    assert mr.tensor([1, 2]).dtype == np.int64
    assert mr.tensor(np.zeros(2, dtype=np.float64)).dtype == np.float64
    assert mr.tensor(np.zeros(2, dtype=np.float64), dtype="float32").dtype == np.float32
    assert mr.tensor([1, 2], dtype="double").dtype == np.float64
    with pytest.raises(TypeError, match="floating-point"):
        mr.tensor([1, 2], requires_grad=True)
    with pytest.raises(TypeError, match="not a dtype"):
        mr.tensor([1.0], dtype="floaty")


@pytest.mark.parametrize("create_graph", [False, True])
def test_a_gradient_takes_its_inputs_dtype_as_in_pytorch(create_graph):
    """A float32 leaf multiplied by float64 values: NumPy promotes the product and its gradient to float64,
    but the leaf's .grad is float32 (PyTorch's engine casts it back), with the values d(sum a*b)/da = b."""
    a = mr.tensor([1.0, 2.0, 3.0], requires_grad=True)                      # float32
    b = mr.tensor(np.array([0.5, 0.25, 4.0]), requires_grad=True)           # float64
    (a * b).sum().backward(create_graph=create_graph)
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    np.testing.assert_array_equal(a.grad.numpy(), np.float32([0.5, 0.25, 4.0]))
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 2.0, 3.0])


def test_tensor_copies_its_data():
    data = np.ones(3, dtype=np.float32)
    t = mr.tensor(data)
    data[0] = 5
    assert t.numpy()[0] == 1


def test_comparisons_give_boolean_tensors_outside_the_graph():
    x = mr.tensor([1.0, 3.0], requires_grad=True)
    m = x > 2
    assert m.dtype == np.bool_ and not m.requires_grad
    np.testing.assert_array_equal(m.numpy(), [False, True])


def test_item_detach_numpy_and_repr():
    x = mr.tensor([[2.5]], requires_grad=True)
    assert x.item() == 2.5
    d = (x * 2).detach()
    assert not d.requires_grad and d.grad_fn is None
    assert isinstance(d.numpy(), np.ndarray)
    assert "grad_fn=<Mul>" in repr(x * 2)
    with pytest.raises(ValueError, match="one-element"):
        mr.tensor([1.0, 2.0]).item()


def test_python_operators_match_numpy():
    a_np, b_np = np.array([1.5, 2.0, 4.0]), np.array([0.5, 3.0, 2.0])
    a, b = mr.tensor(a_np), mr.tensor(b_np)
    for got, want in [(a + b, a_np + b_np), (a - b, a_np - b_np), (a * b, a_np * b_np), (a / b, a_np / b_np),
                      (a ** 2, a_np ** 2), (a ** b, a_np ** b_np), (-a, -a_np), (2 - a, 2 - a_np),
                      (1 / a, 1 / a_np), (a @ b, a_np @ b_np)]:
        np.testing.assert_allclose(got.numpy(), want.astype(np.float32), rtol=1e-6)


@pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")  # the planted log of -1 and sqrt at 0
def test_anomaly_mode_names_the_op_forward_and_backward():
    x = mr.tensor([-1.0, 1.0], requires_grad=True)
    with mr.detect_anomaly():
        with pytest.raises(FloatingPointError, match=r"Log\.forward"):
            x.log()
        y = mr.tensor([0.0, 1.0], requires_grad=True)
        with pytest.raises(FloatingPointError, match=r"Sqrt\.backward"):
            y.sqrt().sum().backward()


def test_custom_function_from_the_readme():
    class Square(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return 2 * x * grad

    x = mr.tensor([1.0, 2.0, 3.0], dtype="float64", requires_grad=True)
    assert mr.gradcheck(Square.apply, [x])


def test_wrong_gradient_shape_from_a_function_is_reported():
    class Broken(Function):
        @staticmethod
        def forward(ctx, x):
            return x.sum()

        @staticmethod
        def backward(ctx, g):
            return g  # should be broadcast to x's shape

    x = mr.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"Broken\.backward returned a gradient of shape"):
        Broken.apply(x).backward()
