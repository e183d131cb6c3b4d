"""Softmax, log-softmax, cross-entropy and NLL: gradcheck, PyTorch parity, stability, bad input."""
import numpy as np
import pytest
from conftest import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st

import minires as mr
import minires.functional as F

sizes = st.integers(1, 5)


@st.composite
def scores(draw, ndim=2):
    """Float64 scores of a random shape (batch 1 included), possibly a non-contiguous view."""
    shape = draw(st.tuples(*[sizes] * ndim), label="shape")
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16), label="seed"))
    z = rng.standard_normal(shape) * 3
    if draw(st.booleans(), label="non-contiguous"):
        z = np.ascontiguousarray(z.swapaxes(0, 1)).swapaxes(0, 1)
    return z


@st.composite
def scores_and_labels(draw):
    z = draw(scores())
    labels = np.array(draw(st.lists(st.integers(0, z.shape[1] - 1), min_size=z.shape[0], max_size=z.shape[0])))
    return z, labels


# name -> (minires loss, the same in torch)
LOSSES = {
    "cross_entropy": (F.cross_entropy, lambda torch: torch.nn.functional.cross_entropy),
    "nll_loss": (F.nll_loss, lambda torch: torch.nn.functional.nll_loss),
}
# name -> (minires op, the same in torch); applied along a drawn axis
SOFTMAXES = {
    "log_softmax": (F.log_softmax, lambda torch: torch.log_softmax),
    "softmax": (F.softmax, lambda torch: torch.softmax),
}


@pytest.mark.parametrize("name", sorted(SOFTMAXES))
@settings(max_examples=15, deadline=None)
@given(z=scores(ndim=3), axis=st.sampled_from([0, 1, -1]))
def test_gradcheck_softmaxes(name, z, axis):
    op = SOFTMAXES[name][0]
    assert mr.gradcheck(lambda t: op(t, axis=axis), [mr.Tensor(z, requires_grad=True)])


@pytest.mark.parametrize("name", sorted(LOSSES))
@settings(max_examples=15, deadline=None)
@given(case=scores_and_labels())
def test_gradcheck_losses(name, case):
    z, labels = case
    loss = LOSSES[name][0]
    assert mr.gradcheck(lambda t: loss(t, labels), [mr.Tensor(z, requires_grad=True)])


@pytest.mark.parametrize("name", sorted(SOFTMAXES))
@settings(max_examples=10, deadline=None)
@given(z=scores(ndim=3), axis=st.sampled_from([0, 1, -1]))
def test_softmaxes_match_pytorch(torch_oracle, name, z, axis):
    ours, theirs = SOFTMAXES[name][0], SOFTMAXES[name][1](torch_oracle)
    weights = np.random.default_rng(0).standard_normal(z.shape)
    x, t_x = mr.Tensor(z, requires_grad=True), torch_oracle.tensor(z, requires_grad=True)
    y, t_y = ours(x, axis=axis), theirs(t_x, axis)
    (y * weights).sum().backward()
    (t_y * torch_oracle.tensor(weights)).sum().backward()
    assert_close(y, t_y, 1e-10)
    assert_close(x.grad, t_x.grad, 1e-10)


@pytest.mark.parametrize("name", sorted(LOSSES))
@settings(max_examples=10, deadline=None)
@given(case=scores_and_labels())
def test_losses_match_pytorch(torch_oracle, name, case):
    z, labels = case
    ours, theirs = LOSSES[name][0], LOSSES[name][1](torch_oracle)
    x, t_x = mr.Tensor(z, requires_grad=True), torch_oracle.tensor(z, requires_grad=True)
    loss, t_loss = ours(x, labels), theirs(t_x, torch_oracle.tensor(labels))
    (loss * 1.7).backward()
    (t_loss * 1.7).backward()
    assert_close(loss, t_loss, 1e-10)
    assert_close(x.grad, t_x.grad, 1e-10)


def test_uniform_logits_give_log_num_classes_and_softmax_minus_onehot_over_n():
    n, classes = 4, 5
    logits = mr.tensor(np.zeros((n, classes)), requires_grad=True)
    labels = np.array([0, 4, 2, 2])
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    assert loss.item() == pytest.approx(np.log(classes), rel=1e-15)
    expected = (np.full((n, classes), 1 / classes) - np.eye(classes)[labels]) / n
    assert_close(logits.grad, expected, 1e-15)


def test_huge_logits_stay_finite():
    logits = mr.tensor([[1000.0, 0.0], [-1000.0, 0.0]], dtype="float64", requires_grad=True)
    loss = F.cross_entropy(logits, [1, 1])
    loss.backward()
    # row 0: lse = 1000 + log(1 + e^-1000) = 1000 in float64, loss 1000; row 1: loss log(1 + e^-1000) = 0
    assert loss.item() == 500.0
    np.testing.assert_array_equal(logits.grad.numpy(), [[0.5, -0.5], [0.0, 0.0]])
    np.testing.assert_array_equal(F.softmax(mr.tensor([[1000.0, 1000.0]])).numpy(), [[0.5, 0.5]])
    np.testing.assert_array_equal(F.log_softmax(mr.tensor([[0.0, -1000.0]], dtype="float64")).numpy(), [[0.0, -1000.0]])


@pytest.mark.parametrize("labels", [[2, 0, 1], np.array([2, 0, 1], dtype=np.int32), np.array([2, 0, 1], dtype=np.uint8),
                                    mr.tensor(np.array([2, 0, 1]))], ids=["list", "int32", "uint8", "tensor"])
def test_labels_may_be_any_integer_container(labels):
    z = np.random.default_rng(0).standard_normal((3, 4))
    expected = -np.mean([F.log_softmax(mr.tensor(z)).numpy()[i, t] for i, t in enumerate([2, 0, 1])])
    assert F.cross_entropy(mr.tensor(z), labels).item() == pytest.approx(expected, rel=1e-12)


def test_cross_entropy_is_nll_of_log_softmax():
    z, labels = np.random.default_rng(1).standard_normal((6, 3)), np.array([0, 1, 2, 2, 1, 0])
    a, b = mr.tensor(z, requires_grad=True), mr.tensor(z, requires_grad=True)
    fused, composed = F.cross_entropy(a, labels), F.nll_loss(F.log_softmax(b, axis=1), labels)
    fused.backward()
    composed.backward()
    assert_close(fused, composed.numpy(), 1e-14)
    assert_close(a.grad, b.grad.numpy(), 1e-14)


def test_float32_stays_float32():
    logits = mr.tensor(np.random.default_rng(2).standard_normal((3, 4)), dtype="float32", requires_grad=True)
    loss = F.cross_entropy(logits, [0, 1, 3])
    loss.backward()
    assert loss.dtype == np.float32 and logits.grad.dtype == np.float32


LOGITS = mr.tensor(np.zeros((3, 4)))


@pytest.mark.parametrize("loss", [F.cross_entropy, F.nll_loss], ids=["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("call, error, message", [
    (lambda f: f(LOGITS, [0, 4, 1]), ValueError, r"label 4 is out of range for 4 classes"),
    (lambda f: f(LOGITS, [0, -1, 1]), ValueError, r"label -1 is out of range for 4 classes"),
    (lambda f: f(LOGITS, [0, -100, 1]), ValueError, r"label -100 is out of range .*there is no ignore_index"),
    (lambda f: f(LOGITS, [0, 1]), ValueError, r"\(3, 4\) need 3 labels.*shape \(2,\)"),
    (lambda f: f(LOGITS, [[0, 1, 2]]), ValueError, r"shape \(1, 3\)"),
    (lambda f: f(LOGITS, np.array([0.0, 1.0, 2.0])), TypeError, r"integer class ids, got dtype float64"),
    (lambda f: f(mr.tensor(np.zeros((3, 4, 2))), [0, 1, 2]), ValueError,
     r"shape \(N, num_classes\), got shape \(3, 4, 2\)"),
    (lambda f: f(mr.tensor(np.zeros(4)), [0]), ValueError, r"got shape \(4,\)"),
    (lambda f: f(mr.tensor(np.zeros((3, 4), dtype=np.int64)), [0, 1, 2]), TypeError, r"must be floating point"),
])
def test_bad_input_raises_clear_error(loss, call, error, message):
    with pytest.raises(error, match=f"{loss.__name__}: .*{message}"):
        call(loss)
