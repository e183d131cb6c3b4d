"""Version counters: an array saved for backward that changed in place makes backward raise.

Each test plants the fault (a change between forward and backward) and checks for PyTorch's error;
without the counters, backward would quietly use the changed values.
"""
import numpy as np
import pytest

import minires as mr
from minires import nn, optim

MESSAGE = "one of the variables needed for gradient computation has been modified by an inplace operation"


def _leaf(values):
    return mr.tensor(np.array(values, np.float64), requires_grad=True)


def test_the_issues_case_optimizer_step_between_forward_and_backward_raises():
    X, W = _leaf([[1.0, 2.0]]), _leaf([[3.0], [4.0]])
    opt = optim.SGD([W], lr=0.1)
    ((X @ W) ** 2).sum().backward()      # W.grad exists, so step() really changes W
    X.grad = None
    y = ((X @ W) ** 2).sum()
    opt.step()
    with pytest.raises(RuntimeError, match=MESSAGE) as error:
        y.backward()
    assert "MatMul's input 1, float64 of shape (2, 1)] is at version 1; expected version 0 instead" in str(error.value)
    assert X.grad is None   # no wrong gradient was written


def test_without_the_change_the_same_graph_gives_the_right_gradient():
    X, W = _leaf([[1.0, 2.0]]), _leaf([[3.0], [4.0]])
    ((X @ W) ** 2).sum().backward()
    np.testing.assert_allclose(X.grad.numpy(), [[2 * 11 * 3, 2 * 11 * 4]])   # d/dX (XW)^2 = 2 (XW) W^T


def _change_with(kind, t):
    """Change ``t`` in place the way ``kind`` names."""
    with mr.no_grad():
        if kind == "zero_":
            t.zero_()
        elif kind == "fill_":
            t.fill_(2.0)
        elif kind == "copy_":
            t.copy_(np.ones(t.shape))
        elif kind == "setitem":
            t[0] = 5.0
        elif kind == "data assignment":
            t.data = t.data * 2
        elif kind == "data -=":
            t.data -= 1.0
        elif kind == "zero_grad(set_to_none=False)":
            holder = _leaf(np.zeros(t.shape))
            holder.grad = t
            optim.SGD([holder], lr=0.1).zero_grad(set_to_none=False)


CHANGES = ["zero_", "fill_", "copy_", "setitem", "data assignment", "data -=", "zero_grad(set_to_none=False)"]


@pytest.mark.parametrize("kind", CHANGES)
def test_every_in_place_change_bumps_the_version_and_trips_backward(kind):
    x = _leaf([1.0, 2.0, 3.0])
    w = mr.tensor(np.array([0.5, 0.25, 2.0]))   # saved by Mul for x's gradient
    y = (x * w).sum()
    before = w._version
    _change_with(kind, w)
    assert w._version == before + 1
    with pytest.raises(RuntimeError, match=MESSAGE):
        y.backward()


def test_a_saved_output_that_changed_trips_backward():
    x = _leaf([0.0, 1.0])
    e = x.exp()                       # Exp saves its output
    y = e.sum()
    with mr.no_grad():
        e.zero_()
    with pytest.raises(RuntimeError, match="Exp's output"):
        y.backward()


def test_views_share_their_base_counter():
    x = _leaf([[1.0, 2.0]])
    w = mr.tensor(np.arange(4.0).reshape(2, 2))
    y = (x @ w.T).sum()               # MatMul saves a view of w
    with mr.no_grad():
        w.detach().zero_()            # detach is a view too
    assert w._version == 1 and w.T._version == 1 and w.reshape(4)._version == 1
    with pytest.raises(RuntimeError, match=MESSAGE):
        y.backward()


def test_a_change_to_an_unsaved_input_does_not_trip_backward():
    x, c = _leaf([1.0, 2.0]), mr.tensor(np.array([5.0, 5.0]))
    y = ((x + c) * x).sum()           # Add saves nothing; Mul saves x + c and x
    with mr.no_grad():
        c.zero_()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [2 * 1.0 + 5, 2 * 2.0 + 5])   # d/dx (x + 5) x = 2x + 5


def test_in_place_change_of_a_tensor_that_requires_grad_is_refused_outside_no_grad():
    x = _leaf([1.0])
    for change in (lambda: x.zero_(), lambda: x.copy_(np.ones(1)), lambda: x.__setitem__(0, 1.0)):
        with pytest.raises(RuntimeError, match="in-place changes are not recorded in the graph"):
            change()
    assert x._version == 0 and x.numpy().tolist() == [1.0]


def test_batchnorm_running_statistics_bump_and_trip_an_eval_graph():
    bn = nn.BatchNorm2d(2).double()
    x = mr.tensor(np.random.default_rng(0).normal(size=(4, 2, 3, 3)), requires_grad=True)
    bn.eval()
    y = bn(x).sum()                   # eval mode saves running_mean for backward
    buffers = (bn.running_mean, bn.running_var, bn.num_batches_tracked)
    before = [b._version for b in buffers]
    bn.train()
    bn(x)                             # training forward updates the running statistics in place
    assert [b._version for b in buffers] == [v + 1 for v in before]
    with pytest.raises(RuntimeError, match=MESSAGE):
        y.backward()


def test_load_state_dict_bumps_the_versions():
    layer = nn.Linear(2, 2)
    before = layer.weight._version, layer.bias._version
    layer.load_state_dict(nn.Linear(2, 2).state_dict())
    assert (layer.weight._version, layer.bias._version) == (before[0] + 1, before[1] + 1)


def test_normal_training_never_trips_the_check():
    mr.manual_seed(0)
    model = mr.models.cifar_resnet(8, width=4)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    versions = []
    for _ in range(3):
        x = mr.tensor(rng.normal(size=(4, 3, 8, 8)).astype(np.float32))
        loss = mr.functional.cross_entropy(model(x), rng.integers(0, 10, 4))
        opt.zero_grad()
        loss.backward()
        opt.step()
        versions.append(model.fc.weight._version)
    assert np.diff(versions).tolist() == [1, 1]   # one optimizer step each, and backward never raised


def test_augmented_assignment_is_out_of_place_so_saved_values_stay():
    x, w = _leaf([1.0, 2.0]), mr.tensor(np.array([3.0, 4.0]))
    saved = w
    y = (x * w).sum()
    w += 10                           # a new tensor bound to the name w; the saved one is unchanged
    assert w is not saved and saved._version == 0 and saved.numpy().tolist() == [3.0, 4.0]
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 4.0])


def test_functional_batch_norm_bumps_running_statistics_it_updates():
    """The op that updates the statistics counts the change, so a direct F.batch_norm call is covered
    too (not only the BatchNorm2d module), and an empty batch, which leaves them alone, is not counted."""
    rng = np.random.default_rng(1)
    mean, var = mr.tensor(np.zeros(2)), mr.tensor(np.ones(2))
    x = mr.tensor(rng.normal(size=(4, 2, 3, 3)), requires_grad=True)
    y = mr.functional.batch_norm(x, mean, var, training=False).sum()
    mr.functional.batch_norm(mr.tensor(np.zeros((0, 2, 3, 3))), mean, var, training=True)
    assert (mean._version, var._version) == (0, 0)
    mr.functional.batch_norm(mr.tensor(rng.normal(size=(4, 2, 3, 3))), mean, var, training=True)
    assert (mean._version, var._version) == (1, 1)
    with pytest.raises(RuntimeError, match=MESSAGE):
        y.backward()


def test_the_readmes_share_of_a_step_spent_in_the_checks_is_its_two_times_ratio():
    """The README: "1.2 ms of 493 ms (0.24%) spent inside the checks" of a ResNet-20 step at batch 32 (a dated
    measurement by ``tests/perf_versions.py``; timings are not asserted in tests): the quoted share is the ratio
    of its two times."""
    import re

    from conftest import one_line
    quoted = re.search(r"ResNet-20 training step at batch 32 \(2 shared cores, 2026-12-03\): ([\d.]+) ms of "
                       r"([\d.]+) ms \(([\d.]+)%\) spent inside the checks", one_line("README.md"))
    inside_ms, step_ms, share = map(float, quoted.groups())
    assert f"{100 * inside_ms / step_ms:.2f}" == f"{share:.2f}"
